package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
)

// skiffModule is the library's module path; the control plane is the
// separate module controlplaneSuffix below it, versioned by tags
// "controlplane/vX.Y.Z" in the same repository.
const (
	skiffModule        = "github.com/skiffkit/skiff"
	controlplaneSuffix = "/controlplane"
)

// buildFromModule fetches the controlplane module matching the Skiff
// version this binary was built with and builds it.
func buildFromModule(ctx context.Context, progress io.Writer) (string, error) {
	path, version, err := locateSkiff(ctx)
	if err != nil {
		return "", err
	}
	mod, err := downloadControlplane(ctx, path, version)
	if err != nil {
		return "", err
	}
	goVersion, err := goVersion(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("module %s@%s %s\ngo=%s %s\n", mod.Path, mod.Version, mod.Sum, goVersion, buildRecipe)))
	from := mod.Path + "@" + mod.Version
	return cachedBuild(ctx, hex.EncodeToString(h[:]), from, progress, func(out string) error {
		// The module cache is read-only and its copy is not a main module;
		// a scratch copy next to the output is both.
		scratch, err := os.MkdirTemp(filepath.Dir(out), "src-")
		if err != nil {
			return fmt.Errorf("build %s: %w", from, err)
		}
		defer os.RemoveAll(scratch)
		if err := copyTree(mod.Dir, scratch); err != nil {
			return fmt.Errorf("build %s: copy %s: %w", from, mod.Dir, err)
		}
		return goBuild(ctx, scratch, out, moduleBuildEnv(os.Environ()))
	})
}

// locateSkiff finds the module path and version of the Skiff module this
// package is compiled from: from the module cache directory of its source
// file (test binaries carry no dependency list in their build info), else
// from the binary's build info.
func locateSkiff(ctx context.Context) (path, version string, err error) {
	var fromFile error
	if _, file, _, ok := runtime.Caller(0); !ok {
		fromFile = errors.New("cannot locate this package's source file")
	} else {
		modCache, _ := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
		dir := filepath.Dir(filepath.Dir(file))
		if path, version, ok := moduleOfDir(dir, strings.TrimSpace(string(modCache))); ok {
			return path, version, nil
		}
		fromFile = fmt.Errorf("%s is not a module cache directory", dir)
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", "", fmt.Errorf("%v, and this binary has no module build info", fromFile)
	}
	path, version, err = skiffVersion(bi)
	if err != nil {
		return "", "", fmt.Errorf("%v, and in the build info: %w", fromFile, err)
	}
	return path, version, nil
}

// moduleOfDir reads the module path and version from a module's root
// directory in the module cache, <modCache>/<escaped path>@<version>, or as
// -trimpath reports it, <path>@<version>.
func moduleOfDir(dir, modCache string) (path, version string, ok bool) {
	dir = filepath.ToSlash(dir)
	i := strings.LastIndex(dir, "@")
	if i < 0 {
		return "", "", false
	}
	escaped, version := dir[:i], dir[i+1:]
	if !strings.HasPrefix(version, "v") || strings.Contains(version, "/") {
		return "", "", false
	}
	if modCache != "" {
		if rel, found := strings.CutPrefix(escaped, filepath.ToSlash(modCache)+"/"); found {
			escaped = rel
		} else if filepath.IsAbs(dir) {
			return "", "", false
		}
	}
	if filepath.IsAbs(escaped) {
		return "", "", false
	}
	var b strings.Builder
	for i := 0; i < len(escaped); i++ {
		if c := escaped[i]; c == '!' && i+1 < len(escaped) {
			i++
			b.WriteString(strings.ToUpper(escaped[i : i+1]))
		} else {
			b.WriteByte(c)
		}
	}
	return b.String(), version, true
}

// skiffVersion finds the module path and version that provide Skiff in bi:
// the main module when the binary is Skiff's own (e.g. `go install
// github.com/skiffkit/skiff/cmd/skiff@v1.2.3`), else the dependency, after
// its replacement if it has one.
func skiffVersion(bi *debug.BuildInfo) (path, version string, err error) {
	if bi.Main.Path == skiffModule {
		if bi.Main.Version == "" || bi.Main.Version == "(devel)" {
			return "", "", fmt.Errorf("this binary is built from the %s module itself at no version (%q), outside a checkout", skiffModule, bi.Main.Version)
		}
		return skiffModule, bi.Main.Version, nil
	}
	for _, d := range bi.Deps {
		if d.Path != skiffModule {
			continue
		}
		if r := d.Replace; r != nil {
			if r.Version == "" {
				return "", "", fmt.Errorf("%s is replaced by the directory %s, which has no controlplane module", skiffModule, r.Path)
			}
			return r.Path, r.Version, nil
		}
		return d.Path, d.Version, nil
	}
	return "", "", fmt.Errorf("%s is not a dependency of this binary (main module %s)", skiffModule, bi.Main.Path)
}

// pseudoRevision matches a pseudo-version and captures its commit.
var pseudoRevision = regexp.MustCompile(`^v\d+\.\d+\.\d+-(?:.*\.)?\d{14}-([0-9a-f]{12})(?:\+incompatible)?$`)

// controlplaneQueries lists the versions of the controlplane module to ask
// for, best first, given the Skiff module's version: the same version, then
// for a pseudo-version its commit (see Binary). The commit of a release is
// asked of the proxy by downloadControlplane.
func controlplaneQueries(version string) []string {
	q := []string{version}
	if m := pseudoRevision.FindStringSubmatch(version); m != nil {
		q = append(q, m[1])
	}
	return q
}

// modDownload is what `go mod download -json` prints for one module.
type modDownload struct {
	Path, Version, Error, Dir, Sum string
	Origin                         *struct{ Hash string }
}

// downloadControlplane runs `go mod download` for the controlplane module
// under skiff (a module path) matching version, trying each query in turn.
func downloadControlplane(ctx context.Context, skiff, version string) (modDownload, error) {
	cp := skiff + controlplaneSuffix
	var tried []string
	try := func(q string) (modDownload, bool) {
		m, err := goModDownload(ctx, cp+"@"+q)
		if err != nil {
			tried = append(tried, err.Error())
		}
		return m, err == nil
	}
	for _, q := range controlplaneQueries(version) {
		if m, ok := try(q); ok {
			return m, nil
		}
	}
	if !pseudoRevision.MatchString(version) {
		// A release whose controlplane tag differs: ask the proxy which
		// commit the release is, then for the controlplane at that commit.
		root, err := goModDownload(ctx, skiff+"@"+version)
		switch {
		case err != nil:
			tried = append(tried, err.Error())
		case root.Origin == nil || root.Origin.Hash == "":
			tried = append(tried, fmt.Sprintf("the proxy does not say which commit %s@%s is", skiff, version))
		default:
			if m, ok := try(root.Origin.Hash); ok {
				return m, nil
			}
		}
	}
	return modDownload{}, fmt.Errorf("%s %s is in use but no matching %s could be fetched:\n    %s",
		skiff, version, cp, strings.Join(tried, "\n    "))
}

// goModDownload downloads one module@query outside any module (so the
// user's go.mod and go.work are neither read nor changed).
func goModDownload(ctx context.Context, arg string) (modDownload, error) {
	dir, err := os.MkdirTemp("", "skiff-testenv-download-")
	if err != nil {
		return modDownload{}, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", arg)
	cmd.Dir = dir
	cmd.Env = append(moduleBuildEnv(os.Environ()), "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var m modDownload
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return m, fmt.Errorf("go mod download %s: %v %s", arg, runErr, strings.TrimSpace(stderr.String()))
	}
	if m.Error != "" {
		return m, fmt.Errorf("go mod download %s: %s", arg, m.Error)
	}
	if runErr != nil || m.Dir == "" {
		return m, fmt.Errorf("go mod download %s: %v %s", arg, runErr, strings.TrimSpace(stderr.String()))
	}
	return m, nil
}

// moduleBuildEnv drops -mod=… from GOFLAGS: the user's setting is for their
// module, while the controlplane builds from its own complete go.sum.
func moduleBuildEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if !strings.HasPrefix(f, "-mod=") && !strings.HasPrefix(f, "--mod=") {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	return out
}

// copyTree copies the regular files under src to dst, writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
