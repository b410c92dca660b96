package testenv_test

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
)

// TestUserModuleBuildsControlPlaneFromModuleProxy plays a user migrating
// from envtest: a module of their own (no Skiff checkout anywhere in it)
// requires Skiff from a module proxy and its test calls testenv.Start with
// no SKIFF_CONTROLPLANE. testenv must fetch the matching controlplane module
// through the proxy, build it and run it.
//
// The proxy is a file:// directory holding this tree as a fresh
// pseudo-version of both modules; other modules come from the real proxy
// (or, usually, the module cache). The built binary goes to a temp
// SKIFF_CACHE_DIR, so this always builds; with a warm Go build cache that
// is mostly a link.
func TestUserModuleBuildsControlPlaneFromModuleProxy(t *testing.T) {
	ctx := ctxFor(t, 20*time.Minute)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	version := newPseudoVersion(t)
	proxy := t.TempDir()
	writeProxyModule(t, proxy, "github.com/skiffkit/skiff", version, root)
	writeProxyModule(t, proxy, "github.com/skiffkit/skiff/controlplane", version, filepath.Join(root, "controlplane"))
	forgetModuleVersion(t, version, "github.com/skiffkit/skiff", "github.com/skiffkit/skiff/controlplane")

	cacheDir := t.TempDir()
	start := time.Now()
	out, err := runUserModule(ctx, t, root, proxy, version, cacheDir, userModuleTest)
	t.Logf("go test in the user's module took %v:\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("go test in the user's module: %v", err)
	}
	want := "building skiff-controlplane from github.com/skiffkit/skiff/controlplane@" + version
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q: the binary did not come from the module proxy", want)
	}
	bins, _ := filepath.Glob(filepath.Join(cacheDir, "controlplane-*", "skiff-controlplane"))
	if len(bins) != 1 {
		t.Errorf("SKIFF_CACHE_DIR holds binaries %q, want exactly one", bins)
	}
}

// TestUserModuleWithoutControlPlaneSaysWhatWasTried: when the proxy has the
// library but no controlplane module, the error names every source tried.
func TestUserModuleWithoutControlPlaneSaysWhatWasTried(t *testing.T) {
	ctx := ctxFor(t, 10*time.Minute)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	version := newPseudoVersion(t)
	proxy := t.TempDir()
	writeProxyModule(t, proxy, "github.com/skiffkit/skiff", version, root)
	forgetModuleVersion(t, version, "github.com/skiffkit/skiff")
	out, err := runUserModule(ctx, t, root, proxy, version, t.TempDir(), userModuleNoBinaryTest)
	t.Logf("go test in the user's module:\n%s", out)
	if err != nil {
		t.Fatalf("go test in the user's module: %v", err)
	}
}

// runUserModule writes a module requiring Skiff at version, with test as its
// only test file, and runs its tests as a user would, with proxy first in
// GOPROXY and no SKIFF_CONTROLPLANE.
func runUserModule(ctx context.Context, t *testing.T, root, proxy, version, cacheDir, test string) (string, error) {
	user := t.TempDir()
	rootMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	// The same requirements as Skiff's own, so the build cache is shared.
	_, requires, ok := strings.Cut(string(rootMod), "\nrequire")
	if !ok {
		t.Fatalf("no require block in %s/go.mod", root)
	}
	goMod := "module example.com/skiffuser\n\ngo 1.26.0\n\nrequire github.com/skiffkit/skiff " + version + "\n\nrequire" + requires
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(user, "go.mod"), goMod)
	writeFile(t, filepath.Join(user, "go.sum"), string(sum))
	writeFile(t, filepath.Join(user, "user_test.go"), test)

	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-timeout=20m", ".")
	cmd.Dir = user
	cmd.Env = append(withoutEnv(os.Environ(), "SKIFF_CONTROLPLANE", "GOFLAGS", "GOWORK", "GOPROXY", "GONOSUMDB", "GOPRIVATE", "GONOPROXY"),
		"GOWORK=off",
		"GOFLAGS=-mod=mod",
		"GOPROXY=file://"+filepath.ToSlash(proxy)+",https://proxy.golang.org",
		"GONOSUMDB=github.com/skiffkit/skiff",
		"SKIFF_CACHE_DIR="+cacheDir,
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// userModuleTest is the user's test: start, create a ConfigMap, stop.
const userModuleTest = `package skiffuser

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/testenv"
)

func TestStart(t *testing.T) {
	if os.Getenv("SKIFF_CONTROLPLANE") != "" {
		t.Fatal("SKIFF_CONTROLPLANE is set; this test is about building without it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{Controllers: "none", Build: testenv.BuildOptions{Progress: os.Stdout}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "from-a-user-module"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("get = %v, %v; want the created configmap", got, err)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
`

// userModuleNoBinaryTest expects Binary to fail naming each source.
const userModuleNoBinaryTest = `package skiffuser

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffkit/skiff/testenv"
)

func TestBinaryError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := testenv.Binary(ctx, testenv.BuildOptions{})
	if err == nil {
		t.Fatalf("Binary = %s, want an error: the proxy has no controlplane module", bin)
	}
	t.Log(err)
	for _, want := range []string{
		"1. $SKIFF_CONTROLPLANE: unset",
		"2. a Skiff checkout: no controlplane module at ",
		"3. the Go module proxy: github.com/skiffkit/skiff v0.0.0-",
		"go mod download github.com/skiffkit/skiff/controlplane@v0.0.0-",
		"set SKIFF_CONTROLPLANE",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
}
`

// writeProxyModule lays out module path at version, from the module in dir,
// in a GOPROXY directory: list, .info, .mod and .zip under <escaped path>/@v.
func writeProxyModule(t *testing.T, proxy, path, version, dir string) {
	t.Helper()
	at := filepath.Join(proxy, filepath.FromSlash(escapeModulePath(path)), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": time.Now().UTC().Format(time.RFC3339)})
	writeFile(t, filepath.Join(at, "list"), version+"\n")
	writeFile(t, filepath.Join(at, version+".info"), string(info))
	writeFile(t, filepath.Join(at, version+".mod"), string(goMod))

	f, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	// A module's zip holds its files under "path@version/", without
	// nested modules, VCS directories or anything but regular files.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == dir {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, err := zw.Create(path + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		t.Fatalf("zip %s: %v", dir, err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// forgetModuleVersion removes version of the modules from the shared
// module cache when the test ends, so test versions do not pile up there.
func forgetModuleVersion(t *testing.T, version string, paths ...string) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	modCache := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		for _, p := range paths {
			esc := filepath.FromSlash(escapeModulePath(p))
			extracted := filepath.Join(modCache, esc+"@"+version)
			filepath.WalkDir(extracted, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					os.Chmod(p, 0o755) // the module cache is read-only
				}
				return nil
			})
			if err := os.RemoveAll(extracted); err != nil {
				t.Errorf("clean the module cache: %v", err)
			}
			at := filepath.Join(modCache, "cache", "download", esc, "@v")
			files, _ := filepath.Glob(filepath.Join(at, version+".*"))
			for _, f := range files {
				os.Remove(f)
			}
			if list, err := os.ReadFile(filepath.Join(at, "list")); err == nil {
				kept := strings.ReplaceAll(string(list), version+"\n", "")
				if kept == "" {
					os.Remove(filepath.Join(at, "list"))
				} else {
					os.WriteFile(filepath.Join(at, "list"), []byte(kept), 0o644)
				}
			}
		}
	})
}

// escapeModulePath applies the module cache's case encoding ("!" + lower
// for each upper-case letter).
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			if name == n {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newPseudoVersion is a fresh, never-seen pseudo-version: the module
// cache never holds stale contents for it.
func newPseudoVersion(t *testing.T) string {
	return "v0.0.0-" + time.Now().UTC().Format("20060102150405") + "-" + randomHex(t, 6)
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
