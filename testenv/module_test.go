package testenv

import (
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestControlplaneQueries(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"v1.2.3", []string{"v1.2.3"}},
		{"v1.2.3-rc.1", []string{"v1.2.3-rc.1"}},
		{"v0.0.0-20260101120000-abcdef123456", []string{"v0.0.0-20260101120000-abcdef123456", "abcdef123456"}},
		{"v1.2.4-0.20260101120000-abcdef123456", []string{"v1.2.4-0.20260101120000-abcdef123456", "abcdef123456"}},
		{"v1.2.3-pre.0.20260101120000-abcdef123456", []string{"v1.2.3-pre.0.20260101120000-abcdef123456", "abcdef123456"}},
		// Not pseudo-versions: a 13-digit time, a short hash.
		{"v0.0.0-2026010112000-abcdef123456", []string{"v0.0.0-2026010112000-abcdef123456"}},
		{"v0.0.0-20260101120000-abcdef", []string{"v0.0.0-20260101120000-abcdef"}},
	} {
		if got := controlplaneQueries(tc.version); !slices.Equal(got, tc.want) {
			t.Errorf("controlplaneQueries(%q) = %q, want %q", tc.version, got, tc.want)
		}
	}
}

func TestSkiffVersion(t *testing.T) {
	dep := func(path, version string, replace *debug.Module) *debug.Module {
		return &debug.Module{Path: path, Version: version, Replace: replace}
	}
	for _, tc := range []struct {
		name          string
		bi            debug.BuildInfo
		path, version string
		err           string
	}{
		{name: "dependency",
			bi:   debug.BuildInfo{Main: debug.Module{Path: "example.com/op"}, Deps: []*debug.Module{dep("k8s.io/api", "v0.36.3", nil), dep(skiffModule, "v1.2.3", nil)}},
			path: skiffModule, version: "v1.2.3"},
		{name: "replaced by a fork",
			bi:   debug.BuildInfo{Main: debug.Module{Path: "example.com/op"}, Deps: []*debug.Module{dep(skiffModule, "v1.2.3", dep("example.com/fork/skiff", "v1.2.4", nil))}},
			path: "example.com/fork/skiff", version: "v1.2.4"},
		{name: "replaced by a directory",
			bi:  debug.BuildInfo{Main: debug.Module{Path: "example.com/op"}, Deps: []*debug.Module{dep(skiffModule, "v1.2.3", dep("../skiff", "", nil))}},
			err: "replaced by the directory ../skiff"},
		{name: "installed skiff",
			bi:   debug.BuildInfo{Main: debug.Module{Path: skiffModule, Version: "v1.2.3"}},
			path: skiffModule, version: "v1.2.3"},
		{name: "skiff itself, no version",
			bi:  debug.BuildInfo{Main: debug.Module{Path: skiffModule, Version: "(devel)"}},
			err: `at no version ("(devel)")`},
		{name: "not a dependency",
			bi:  debug.BuildInfo{Main: debug.Module{Path: "example.com/op"}},
			err: "is not a dependency of this binary (main module example.com/op)"},
	} {
		path, version, err := skiffVersion(&tc.bi)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || path != tc.path || version != tc.version {
			t.Errorf("%s: = %q, %q, %v; want %q, %q", tc.name, path, version, err, tc.path, tc.version)
		}
	}
}

func TestModuleBuildEnvDropsModFlag(t *testing.T) {
	got := moduleBuildEnv([]string{"HOME=/h", "GOFLAGS=-mod=vendor -trimpath --mod=mod -tags=x"})
	want := []string{"HOME=/h", "GOFLAGS=-trimpath -tags=x"}
	if !slices.Equal(got, want) {
		t.Errorf("moduleBuildEnv = %q, want %q", got, want)
	}
}

func TestModuleOfDir(t *testing.T) {
	const cache = "/home/u/go/pkg/mod"
	for _, tc := range []struct {
		dir, path, version string
		ok                 bool
	}{
		{cache + "/github.com/skiffkit/skiff@v1.2.3", skiffModule, "v1.2.3", true},
		{cache + "/github.com/skiffkit/skiff@v0.0.0-20260101120000-abcdef123456", skiffModule, "v0.0.0-20260101120000-abcdef123456", true},
		{cache + "/github.com/!my!org/skiff@v1.0.0", "github.com/MyOrg/skiff", "v1.0.0", true},
		// -trimpath reports module files as path@version/...
		{"github.com/skiffkit/skiff@v1.2.3", skiffModule, "v1.2.3", true},
		// A checkout, even one whose path holds an "@".
		{"/home/u/src/skiff", "", "", false},
		{"/home/u/me@work/skiff", "", "", false},
		{"/elsewhere/github.com/skiffkit/skiff@v1.2.3", "", "", false},
	} {
		path, version, ok := moduleOfDir(tc.dir, cache)
		if path != tc.path || version != tc.version || ok != tc.ok {
			t.Errorf("moduleOfDir(%q) = %q, %q, %v; want %q, %q, %v", tc.dir, path, version, ok, tc.path, tc.version, tc.ok)
		}
	}
}
