package bench

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	skiffcache "github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// I5 over CBOR: the same N Foos on a control plane of their own with the
// alpha feature gate CBORServingAndStorage (Kubernetes v1.36 serves custom
// resources as application/cbor, watches as application/cbor-seq, only
// with it; it also stores them as CBOR in etcd). Contenders on that server:
// Skiff's CustomSource as it is (CBOR negotiated) and forced to JSON, so the
// wire format is the only difference. SKIFF_BENCH_CBOR=0 skips them.

var (
	crCBOROnce sync.Once
	crCBORFix  *crFixture
	crCBORErr  error
)

func crCBORFixtureFor(b *testing.B) *crFixture {
	b.Helper()
	crCBOROnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		env, err := testenv.Start(ctx, testenv.Options{
			APIServerArgs: []string{"--max-requests-inflight=800", "--max-mutating-requests-inflight=400",
				"--feature-gates=CBORServingAndStorage=true"},
			Controllers: "none",
		})
		if err != nil {
			crCBORErr = err
			return
		}
		cfg := env.Config()
		cfg.QPS = -1
		crCBORFix, crCBORErr = startCRFixture(ctx, env, cfg, crSize())
	})
	if crCBORErr != nil {
		b.Fatalf("custom resource fixture (CBOR): %v", crCBORErr)
	}
	return crCBORFix
}

// customSourceWith is skiffcache.CustomSourceFor with options.
func customSourceWith[T skiffcache.Object](cfg *rest.Config, ns string, o skiffcache.CustomOptions) (skiffcache.Source[T], error) {
	c := rest.CopyConfig(cfg)
	gv := foosGVR.GroupVersion()
	c.GroupVersion, c.APIPath = &gv, "/apis"
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return skiffcache.Source[T]{}, err
	}
	// Watches on a client of their own, as CustomSourceFor's.
	return skiffcache.WithWatchConfig(skiffcache.CustomSourceWith[T](rc, foosGVR, skiffcache.Scope{Namespace: ns}, o), cfg)
}

func skiffCR[T skiffcache.Object](enc skiffcache.Encoding) func(cfg *rest.Config, ns string) (*runningInformer, error) {
	return skiffCRMode[T](enc, skiffcache.WatchListAuto)
}

func skiffCRMode[T skiffcache.Object](enc skiffcache.Encoding, mode skiffcache.WatchListMode) func(cfg *rest.Config, ns string) (*runningInformer, error) {
	return func(cfg *rest.Config, ns string) (*runningInformer, error) {
		src, err := customSourceWith[T](cfg, ns, skiffcache.CustomOptions{Encoding: enc})
		if err != nil {
			return nil, err
		}
		return runSkiffInformer(skiffcache.New(src, skiffcache.Options[T]{WatchList: mode})), nil
	}
}

var crCBORImpls = []crImpl{
	{"skiff/typed-cbor", skiffCR[*foo.Foo](skiffcache.EncodingAuto)},
	// The same streaming its initial list (the default before 2026-11-26
	// evening).
	{"skiff/typed-cbor-watchlist", skiffCRMode[*foo.Foo](skiffcache.EncodingAuto, skiffcache.WatchListOn)},
	{"skiff/typed-json@cbor-server", skiffCR[*foo.Foo](skiffcache.EncodingJSON)},
	{"skiff/unstructured-cbor", skiffCR[*unstructured.Unstructured](skiffcache.EncodingAuto)},
	{"clientgo/dynamic@cbor-server", startDynamicInformer},
}
