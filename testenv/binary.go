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
// a build. The zero value finds the sources next to this package in a
// checkout of the Skiff repository and reports nothing.
type BuildOptions struct {
	// SourceDir is the controlplane module directory. Default: ../controlplane
	// relative to this package's source file, which exists in a checkout of
	// the Skiff repository (not in the module cache).
	SourceDir string
	// Progress receives one line when a build starts and one when it ends.
	// Default: discarded.
	Progress io.Writer
}

// Binary returns the path of a skiff-controlplane binary: $SKIFF_CONTROLPLANE
// if set, else a cached build of the sources, building them first if needed.
//
// Builds are cached by a hash of the controlplane module's files and the Go
// version, and guarded by a file lock, so parallel test processes build once
// and the rest wait. A cold build takes several minutes (it compiles
// kube-apiserver and etcd).
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
	src := o.SourceDir
	if src == "" {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			return "", errors.New("cannot locate the controlplane sources; set " + EnvBinary)
		}
		src = filepath.Join(filepath.Dir(file), "..", "controlplane")
	}
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("no skiff-controlplane binary: %s is unset and the sources are not at %s (%v); "+
			"build one from a checkout of the Skiff repository (cd controlplane && go build -o skiff-controlplane .) and set %s to its path",
			EnvBinary, src, err, EnvBinary)
	}
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("find the go command to build skiff-controlplane: %w", err)
	}
	key, err := sourceHash(src, strings.TrimSpace(string(goVersion))+" "+buildRecipe)
	if err != nil {
		return "", err
	}
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
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "testenv: building skiff-controlplane from %s into %s (first use; takes a few minutes)\n", src, dir)
	tmp := bin + ".tmp"
	ldflags, err := versionLDFlags(src)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build skiff-controlplane in %s: %w\n%s", src, err, out.Bytes())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install skiff-controlplane: %w", err)
	}
	fmt.Fprintf(progress, "testenv: built %s\n", bin)
	return bin, nil
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
