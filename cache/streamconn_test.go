package cache

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestStreamConfig(t *testing.T) {
	userDial := func(ctx context.Context, network, addr string) (net.Conn, error) { return nil, nil }
	proxy := func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.example:3128") }
	for _, tc := range []struct {
		name      string
		cfg       rest.Config
		wantProto []string
		wantDial  string // "ours", "user", "none"
	}{
		{"defaults", rest.Config{Host: "https://10.0.0.1:6443", Timeout: 5 * time.Second}, []string{"http/1.1"}, "ours"},
		{"host without scheme", rest.Config{Host: "10.0.0.1:6443"}, []string{"http/1.1"}, "ours"},
		{"own dialer kept", rest.Config{Host: "https://10.0.0.1:6443", Dial: userDial}, []string{"http/1.1"}, "user"},
		{"NextProtos kept", rest.Config{Host: "https://10.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{NextProtos: []string{"h2", "http/1.1"}}}, []string{"h2", "http/1.1"}, "none"},
		{"Transport kept", rest.Config{Host: "https://10.0.0.1:6443", Transport: http.DefaultTransport}, nil, "none"},
		{"proxy: HTTP/2 kept", rest.Config{Host: "https://10.0.0.1:6443", Proxy: proxy}, nil, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.cfg
			got := streamConfig(&in)
			if !reflect.DeepEqual(got.TLSClientConfig.NextProtos, tc.wantProto) {
				t.Errorf("NextProtos %q, want %q", got.TLSClientConfig.NextProtos, tc.wantProto)
			}
			if got.Timeout != 0 {
				t.Errorf("Timeout %v, want 0 (it would cut watches)", got.Timeout)
			}
			switch tc.wantDial {
			case "ours":
				if got.Dial == nil {
					t.Error("no keepalive dialer installed")
				}
			case "user":
				if reflect.ValueOf(got.Dial).Pointer() != reflect.ValueOf(userDial).Pointer() {
					t.Error("the config's own dialer was replaced")
				}
			case "none":
				if got.Dial != nil {
					t.Error("a dialer was installed on a config used as given")
				}
			}
			if in.Timeout != tc.cfg.Timeout || len(in.TLSClientConfig.NextProtos) != len(tc.cfg.TLSClientConfig.NextProtos) {
				t.Error("the caller's config was modified")
			}
		})
	}
}

func TestWithStreamDeadline(t *testing.T) {
	for _, tc := range []struct {
		timeout *int64
		want    time.Duration // 0: no deadline
	}{
		{nil, 0},
		{new(int64(0)), 0},
		{new(int64(2)), 4 * time.Second},
		{new(int64(300)), 330 * time.Second},
	} {
		ctx, cancel := withStreamDeadline(context.Background(), tc.timeout)
		d, ok := ctx.Deadline()
		cancel()
		if tc.want == 0 {
			if ok {
				t.Errorf("timeout %v: deadline set", tc.timeout)
			}
			continue
		}
		if left := time.Until(d); !ok || left > tc.want || left < tc.want-5*time.Second {
			t.Errorf("timeout %d s: deadline in %v, want about %v", *tc.timeout, left, tc.want)
		}
		if ctx.Err() == nil {
			t.Error("cancel did not end the context")
		}
	}
}
