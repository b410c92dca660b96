package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/testenv"
)

// BenchmarkInformerServerBound measures the server's side of I1 and I5
// alone: one op fetches the informer's initial list the way a contender
// asks for it, but the client only reads the bytes (no decode, no store),
// so sync-s is what the fastest possible client would see on this server
// and server-cpu-s what the server spends producing it. Ways to fetch:
//
//   - watchlist: a watch with sendInitialEvents (what skiff and client-go
//     v0.36 do), read until the initial-events-end bookmark;
//   - watchlist-http1: the same over HTTP/1.1 (skiff's watch streams);
//   - list/page=N: a paginated list, each page requested after the
//     previous one was read in full (what a paginating reflector does);
//   - list/page=N/prefetch: the same, but page k+1 is requested as soon as
//     the continue token was read from the start of page k (ListMeta comes
//     before the items), so the server produces k+1 while k is read;
//   - list/all: one unpaginated list.
//
// Pods are fetched as protobuf (I1), Foos as JSON (I5). idle-300ms fetches
// nothing for 300 ms: the server's background CPU over a span like a sync.
func BenchmarkInformerServerBound(b *testing.B) {
	f := fixtureFor(b)
	cf := crFixtureFor(b)
	pods := boundTarget{env: f.env, cfg: protobufConfig(f.cfg), path: "/api/v1/namespaces/" + f.ns + "/pods", proto: true}
	foos := boundTarget{env: cf.env, cfg: cf.cfg, path: "/apis/demo.skiff.dev/v1/namespaces/" + cf.ns + "/foos"}
	for _, t := range []struct {
		name string
		bt   boundTarget
	}{{"pods-protobuf", pods}, {"foos-json", foos}} {
		for _, w := range []struct {
			name  string
			fetch func(ctx context.Context, rc rest.Interface, bt boundTarget) (int64, error)
		}{
			// The server's background CPU: nothing fetched for 300 ms.
			{"idle-300ms", func(ctx context.Context, _ rest.Interface, _ boundTarget) (int64, error) {
				time.Sleep(300 * time.Millisecond)
				return 0, nil
			}},
			{"watchlist", fetchWatchList},
			// The same over HTTP/1.1 on a connection of its own, as
			// skiff's informers watch (cache/streamconn.go).
			{"watchlist-http1", func(ctx context.Context, _ rest.Interface, bt boundTarget) (int64, error) {
				c := rest.CopyConfig(bt.cfg)
				c.TLSClientConfig.NextProtos = []string{"http/1.1"}
				cs, err := kubernetes.NewForConfig(c)
				if err != nil {
					return 0, err
				}
				return fetchWatchList(ctx, cs.CoreV1().RESTClient(), bt)
			}},
			{"list/page=500", func(ctx context.Context, rc rest.Interface, bt boundTarget) (int64, error) {
				return fetchPages(ctx, rc, bt, 500, false)
			}},
			{"list/page=500/prefetch", func(ctx context.Context, rc rest.Interface, bt boundTarget) (int64, error) {
				return fetchPages(ctx, rc, bt, 500, true)
			}},
			{"list/all", func(ctx context.Context, rc rest.Interface, bt boundTarget) (int64, error) {
				return fetchPages(ctx, rc, bt, 0, false)
			}},
		} {
			b.Run(t.name+"/"+w.name, func(b *testing.B) {
				ctx := context.Background()
				cs, err := kubernetes.NewForConfig(t.bt.cfg)
				if err != nil {
					b.Fatal(err)
				}
				rc := cs.CoreV1().RESTClient()
				if _, err := w.fetch(ctx, rc, t.bt); err != nil { // warm-up
					b.Fatal(err)
				}
				var syncS, cpuS, serverS, mib float64
				for range b.N {
					t0, c0, s0 := time.Now(), cpuSeconds(), serverCPUSeconds(b, t.bt.env)
					n, err := w.fetch(ctx, rc, t.bt)
					if err != nil {
						b.Fatal(err)
					}
					syncS += time.Since(t0).Seconds()
					cpuS += cpuSeconds() - c0
					serverS += serverCPUSeconds(b, t.bt.env) - s0
					mib += float64(n) / (1 << 20)
				}
				b.ReportMetric(syncS/float64(b.N), "sync-s")
				b.ReportMetric(cpuS/float64(b.N), "cpu-s")
				b.ReportMetric(serverS/float64(b.N), "server-cpu-s")
				b.ReportMetric(mib/float64(b.N), "MiB")
			})
		}
	}
}

// boundTarget is a collection to fetch from one control plane.
type boundTarget struct {
	env   *testenv.Env
	cfg   *rest.Config
	path  string
	proto bool // protobuf (else JSON) responses
}

var initialEventsEnd = []byte(metav1.InitialEventsAnnotationKey)

// fetchWatchList opens a watch-list and reads it until the bookmark that
// ends the initial events; it returns the bytes read.
func fetchWatchList(ctx context.Context, rc rest.Interface, bt boundTarget) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := rc.Get().AbsPath(bt.path).
		Param("watch", "true").Param("sendInitialEvents", "true").
		Param("resourceVersionMatch", string(metav1.ResourceVersionMatchNotOlderThan)).
		Param("allowWatchBookmarks", "true").Param("timeoutSeconds", "300").Stream(ctx)
	if err != nil {
		return 0, fmt.Errorf("watch-list %s: %w", bt.path, err)
	}
	defer body.Close()
	buf := make([]byte, 256<<10)
	var n int64
	keep := 0 // bytes at buf's start kept from the previous read (a marker may span reads)
	for {
		m, err := body.Read(buf[keep:])
		n += int64(m)
		have := keep + m
		if bytes.Contains(buf[:have], initialEventsEnd) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("watch-list %s ended before the initial-events-end bookmark: %w", bt.path, err)
		}
		keep = min(have, len(initialEventsEnd)-1)
		copy(buf, buf[have-keep:have])
	}
}

// fetchPages lists bt in pages of limit (0: one unpaginated list), reading
// each response in full; with prefetch, page k+1 is requested as soon as
// the continue token was read from the start of page k. It returns the
// bytes read.
func fetchPages(ctx context.Context, rc rest.Interface, bt boundTarget, limit int, prefetch bool) (int64, error) {
	var (
		mu    sync.Mutex
		total int64
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	// page reads one page; it returns the next page's token once it has
	// it, and the page's size once the page was read in full.
	var page func(token string)
	page = func(token string) {
		defer wg.Done()
		req := rc.Get().AbsPath(bt.path)
		if limit > 0 {
			req = req.Param("limit", strconv.Itoa(limit))
		}
		if token != "" {
			req = req.Param("continue", token)
		}
		body, err := req.Stream(ctx)
		if err != nil {
			fail(fmt.Errorf("list %s: %w", bt.path, err))
			return
		}
		defer body.Close()
		var prefix, tail []byte
		buf := make([]byte, 64<<10)
		var n int64
		next, known := "", false
		for {
			m, rerr := body.Read(buf)
			n += int64(m)
			if !bt.proto {
				tail = append(tail, buf[:m]...)
				if len(tail) > 8<<10 {
					tail = append(tail[:0], tail[len(tail)-4<<10:]...)
				}
			}
			if !known {
				prefix = append(prefix, buf[:m]...)
				var err error
				if next, known, err = listContinue(prefix, bt.proto); err != nil {
					fail(fmt.Errorf("list %s: %w", bt.path, err))
					return
				}
				if known {
					prefix = nil
					if next != "" && prefetch {
						wg.Add(1)
						go page(next)
					}
				}
			}
			if rerr == io.EOF {
				if !known && !bt.proto {
					// The server writes a custom resource list's keys
					// sorted: items, kind, metadata. The token comes last.
					if i := bytes.LastIndex(tail, []byte(`"metadata":{`)); i >= 0 {
						next, known = jsonContinue(tail[i:]), true
					}
					if known && next != "" {
						wg.Add(1)
						go page(next)
						next = ""
					}
				}
				break
			}
			if rerr != nil {
				fail(fmt.Errorf("list %s: %w", bt.path, rerr))
				return
			}
		}
		mu.Lock()
		total += n
		mu.Unlock()
		if !known {
			fail(fmt.Errorf("list %s: no list metadata in a %d-byte response", bt.path, n))
			return
		}
		if next != "" && !prefetch {
			wg.Add(1)
			go page(next)
		}
	}
	wg.Add(1)
	go page("")
	wg.Wait()
	return total, first
}

// listContinue reads the continue token from the start of a list response:
// known is false while prefix is too short to tell.
func listContinue(prefix []byte, proto bool) (token string, known bool, err error) {
	if !proto {
		// {"kind":…,"apiVersion":…,"metadata":{…"continue":"…"…},"items":[…
		items := bytes.Index(prefix, []byte(`"items":`))
		if items < 0 {
			return "", false, nil
		}
		head := prefix[:items]
		if !bytes.Contains(head, []byte(`"metadata":`)) {
			return "", false, nil // metadata after the items: known at the end
		}
		return jsonContinue(head), true, nil
	}
	// "k8s\x00" + Unknown{1: typeMeta, 2: raw = List{1: ListMeta{3: continue}, 2: items}}
	if len(prefix) < 4 {
		return "", false, nil
	}
	if string(prefix[:4]) != "k8s\x00" {
		return "", false, fmt.Errorf("not a protobuf envelope: %q", prefix[:4])
	}
	b := prefix[4:]
	for {
		num, val, rest, ok := nextBytesField(b)
		if !ok {
			return "", false, nil
		}
		if num == 2 { // raw: the list; its ListMeta is its field 1
			num, meta, rest, ok := nextBytesField(val)
			if !ok || rest == nil {
				return "", false, nil // ListMeta not read in full yet
			}
			if num != 1 {
				return "", false, fmt.Errorf("list starts with field %d, want ListMeta (1)", num)
			}
			for len(meta) > 0 {
				num, v, rest, ok := nextBytesField(meta)
				if !ok {
					// remainingItemCount (4) is a varint, not bytes
					if len(meta) > 0 && meta[0] == 4<<3 {
						return "", true, nil
					}
					return "", false, fmt.Errorf("unexpected ListMeta field %x", meta[0])
				}
				if num == 3 {
					return string(v), true, nil
				}
				meta = rest
			}
			return "", true, nil
		}
		b = rest
	}
}

// jsonContinue returns the value of the first "continue" key in b, or "".
func jsonContinue(b []byte) string {
	i := bytes.Index(b, []byte(`"continue":"`))
	if i < 0 {
		return ""
	}
	rest := b[i+len(`"continue":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// nextBytesField parses one length-delimited field at the start of b; ok is
// false if b does not hold all of its header. When b ends inside the
// field, val is the part of it that b holds and rest is nil.
func nextBytesField(b []byte) (num uint64, val, rest []byte, ok bool) {
	tag, n := binary.Uvarint(b)
	if n <= 0 || tag&7 != 2 {
		return 0, nil, nil, false
	}
	l, m := binary.Uvarint(b[n:])
	if m <= 0 {
		return 0, nil, nil, false
	}
	start := n + m
	end := start + int(l)
	if end > len(b) {
		return tag >> 3, b[start:], nil, true
	}
	return tag >> 3, b[start:end], b[end:], true
}
