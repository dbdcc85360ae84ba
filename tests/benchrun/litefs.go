package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// LiteFS (github.com/superfly/litefs) is measured side by side with kvfs:
// a single node with a static lease, its databases in a local data dir. It
// commits to local disk and would replicate asynchronously; kvfs commits to
// etcd synchronously (see the report's notes).
const (
	liteFSPkg     = "github.com/superfly/litefs/cmd/litefs"
	liteFSVersion = "v0.5.14"
)

// ensureLiteFS returns the path of a litefs binary: path when it exists
// (and not rebuild), else one built there with go install. A build that
// fails is not fatal: the run goes on without the LiteFS column, and err
// says why.
func ensureLiteFS(ctx context.Context, path string, rebuild bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err == nil && !rebuild {
		return abs, nil
	}
	if filepath.Base(abs) != "litefs" {
		return "", fmt.Errorf("%s is missing, and go install can only build it as .../litefs", abs)
	}
	progress("build", "%s with go install %s@%s", abs, liteFSPkg, liteFSVersion)
	cmd := exec.CommandContext(ctx, "go", "install", liteFSPkg+"@"+liteFSVersion)
	// GOFLAGS could carry -mod settings of this module that go install
	// of another module refuses.
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Dir(abs), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w: %s", liteFSPkg, liteFSVersion, err, lastLine(string(out)))
	}
	return abs, nil
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// liteFSTarget returns the LiteFS target under base: its config (static
// lease, this node the primary, its HTTP API on a free loopback port) and
// the `litefs mount` that serves base/mnt.
func liteFSTarget(bin, base string) (*target, error) {
	t := &target{key: liteFS, dir: filepath.Join(base, "mnt"), dataDir: filepath.Join(base, "data")}
	for _, d := range []string{t.dir, t.dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	t.api = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	cfg := fmt.Sprintf(`# LiteFS for kvfs's benchmarks: one node, static lease.
fuse:
  dir: %q
data:
  dir: %q
lease:
  type: static
  candidate: true
  advertise-url: %q
http:
  addr: %q
`, t.dir, t.dataDir, t.api, strings.TrimPrefix(t.api, "http://"))
	cfgPath := filepath.Join(base, "litefs.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	t.mount = &mountProc{name: "litefs mount", bin: bin, args: []string{"mount", "-config", cfgPath},
		ready: "connected to cluster, ready", mnt: t.dir, logPath: filepath.Join(base, "litefs.log")}
	return t, nil
}

// liteFSImport loads the SQLite database at src into LiteFS as name with
// `litefs import` (a plain cp into a LiteFS mount is not a transaction
// LiteFS can replicate, so it refuses it).
func liteFSImport(ctx context.Context, t *target, src, name string) error {
	out, err := exec.CommandContext(ctx, t.mount.bin, "import", "-url", t.api, "-name", name, src).CombinedOutput()
	if err != nil {
		return fmt.Errorf("litefs import %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
