package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// EnvBinary names the environment variable that points at a prebuilt
// skiff-controlplane binary. When set, nothing is built.
const EnvBinary = "SKIFF_CONTROLPLANE"

// EnvCacheDir overrides where built binaries are cached
// (default: <os.UserCacheDir()>/skiff).
const EnvCacheDir = "SKIFF_CACHE_DIR"

// BuildOptions says where the control plane's sources are and how to report
// a build. The zero value finds them as Binary describes and reports nothing.
type BuildOptions struct {
	// SourceDir is the controlplane module directory to build. Default: the
	// controlplane/ directory of the Skiff checkout this package is
	// compiled from, else the controlplane module fetched through the Go
	// module proxy (see Binary). When set, only SourceDir is tried.
	SourceDir string
	// Progress receives one line when a build starts and one when it ends.
	// Default: discarded.
	Progress io.Writer
}

// Binary returns the path of a skiff-controlplane binary. It tries, in order:
//
//  1. $SKIFF_CONTROLPLANE: a prebuilt binary; nothing is built. If set but
//     not an executable file, that is the error.
//  2. A Skiff checkout: the controlplane/ module next to this package's
//     source file, which exists when this package is compiled from a clone
//     of the Skiff repository (including a module replaced by a local
//     checkout, and BuildOptions.SourceDir). Built binaries are keyed by a
//     hash of the module's files and the Go version.
//  3. The Go module proxy, when this package comes from the module cache (a
//     user's own module requiring Skiff, or a `go install`ed tool): the
//     Skiff version in use — read from the module cache directory this
//     package was compiled from, else from the binary's build info — selects
//     a version of the module github.com/skiffkit/skiff/controlplane, which
//     is tagged controlplane/vX.Y.Z in the same repository. testenv asks
//     for, in order: the same version (a release tags both modules on one
//     commit; an untagged commit has the same pseudo-version in both while
//     neither has an older tag); for a pseudo-version, its commit hash,
//     which the proxy resolves to the controlplane's own pseudo-version of
//     that commit; for a release, the commit the proxy says it came from.
//     `go mod download` fetches it, honouring the user's GOPROXY, GOPRIVATE,
//     GONOSUMDB, GOFLAGS (less -mod) etc., outside the user's module. It is
//     copied to a scratch directory and built there as the main module, so
//     its replace directives apply (they are why `go install
//     …/controlplane@version` cannot build it). Built binaries are keyed by
//     the module's version and checksum and the Go version.
//
// If none works the error names each thing tried and why it failed.
//
// Builds use the go command on $PATH, are cached under $SKIFF_CACHE_DIR
// (default <os.UserCacheDir()>/skiff) and are guarded by a file lock, so
// parallel test processes build once and the rest wait. A cold build takes
// several minutes (it compiles kube-apiserver and etcd); with a warm Go build
// cache it mostly links.
func Binary(ctx context.Context, o BuildOptions) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s is not an executable file", EnvBinary, p)
		}
		return p, nil
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if o.SourceDir != "" {
		if _, err := os.Stat(filepath.Join(o.SourceDir, "go.mod")); err != nil {
			return "", fmt.Errorf("build skiff-controlplane: BuildOptions.SourceDir %s is not a module (%v); "+
				"point it at the controlplane module, or set %s to a prebuilt binary", o.SourceDir, err, EnvBinary)
		}
		return buildCheckout(ctx, o.SourceDir, progress)
	}
	src, checkoutErr := checkoutSource()
	if checkoutErr == nil {
		return buildCheckout(ctx, src, progress)
	}
	bin, moduleErr := buildFromModule(ctx, progress)
	if moduleErr == nil {
		return bin, nil
	}
	return "", fmt.Errorf("no skiff-controlplane binary; tried, in order:\n"+
		"  1. $%s: unset\n  2. a Skiff checkout: %v\n  3. the Go module proxy: %v\n"+
		"Fix one of them, or build the binary in a clone of the Skiff repository "+
		"(cd controlplane && go build -o skiff-controlplane .) and set %s to its path",
		EnvBinary, checkoutErr, moduleErr, EnvBinary)
}

// checkoutSource finds the controlplane module next to this package's
// source file.
func checkoutSource() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate this package's source file")
	}
	src := filepath.Join(filepath.Dir(file), "..", "controlplane")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("no controlplane module at %s (%v)", src, err)
	}
	return src, nil
}

// buildCheckout builds the controlplane module in src in place.
func buildCheckout(ctx context.Context, src string, progress io.Writer) (string, error) {
	goVersion, err := goVersion(ctx)
	if err != nil {
		return "", err
	}
	key, err := sourceHash(src, goVersion+" "+buildRecipe)
	if err != nil {
		return "", err
	}
	return cachedBuild(ctx, key, src, progress, func(out string) error {
		return goBuild(ctx, src, out, os.Environ())
	})
}

func goVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("find the go command to build skiff-controlplane: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// cachedBuild returns <cache root>/controlplane-<key>/skiff-controlplane,
// calling build(path) under the directory's lock first if it is absent.
// build writes the binary to path; it is renamed into place on success.
func cachedBuild(ctx context.Context, key, from string, progress io.Writer, build func(path string) error) (string, error) {
	cacheRoot := os.Getenv(EnvCacheDir)
	if cacheRoot == "" {
		ucd, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("find a cache dir (set %s): %w", EnvCacheDir, err)
		}
		cacheRoot = filepath.Join(ucd, "skiff")
	}
	dir := filepath.Join(cacheRoot, "controlplane-"+key[:16])
	bin := filepath.Join(dir, "skiff-controlplane")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	fmt.Fprintf(progress, "testenv: building skiff-controlplane from %s into %s (first use; takes a few minutes)\n", from, dir)
	tmp := bin + ".tmp"
	if err := build(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install skiff-controlplane: %w", err)
	}
	fmt.Fprintf(progress, "testenv: built %s\n", bin)
	return bin, nil
}

// goBuild builds the main package of the module in src to out, stamping the
// Kubernetes version.
func goBuild(ctx context.Context, src, out string, env []string) error {
	ldflags, err := versionLDFlags(src)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(env, "GOWORK=off")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build skiff-controlplane in %s: %w\n%s", src, err, buf.Bytes())
	}
	return nil
}

// buildRecipe changes whenever the way the binary is built changes, so
// cached binaries from an older recipe are not reused.
const buildRecipe = "recipe-2: version ldflags"

// versionLDFlags stamps the Kubernetes version from the controlplane's
// go.mod into the binary, as release builds do; without it the apiserver
// reports v0.0.0-master and version-aware clients refuse it.
func versionLDFlags(src string) (string, error) {
	mod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return "", err
	}
	var version string
	for _, line := range strings.Split(string(mod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "k8s.io/kubernetes" && strings.HasPrefix(f[1], "v") {
			version = f[1]
		} else if len(f) >= 3 && f[0] == "require" && f[1] == "k8s.io/kubernetes" {
			version = f[2]
		}
	}
	var major, minor int
	if _, err := fmt.Sscanf(version, "v%d.%d.", &major, &minor); err != nil {
		return "", fmt.Errorf("find the k8s.io/kubernetes version in %s/go.mod: got %q", src, version)
	}
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X "+pkg+".gitVersion="+version,
			fmt.Sprintf("-X %s.gitMajor=%d", pkg, major),
			fmt.Sprintf("-X %s.gitMinor=%d", pkg, minor),
			"-X "+pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " "), nil
}

// sourceHash hashes every regular file of the controlplane module except
// build output, plus the Go version.
func sourceHash(src, goVersion string) (string, error) {
	var files []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != src && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if n := d.Name(); strings.HasSuffix(n, ".go") || n == "go.mod" || n == "go.sum" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash controlplane sources: %w", err)
	}
	slices.Sort(files)
	h := sha256.New()
	fmt.Fprintf(h, "go=%s\n", goVersion)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash controlplane sources: %w", err)
		}
		rel, _ := filepath.Rel(src, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive flock, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another process building skiff-controlplane (%s): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
