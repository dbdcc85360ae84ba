package etcdtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// BinaryEnv names the environment variable that, when set, holds the path of
// the etcd server binary ServerBinary returns.
const BinaryEnv = "KVFS_ETCD_BIN"

// serverPackage is the import path of the etcd server wrapper.
const serverPackage = "github.com/kvfs/kvfs/tests/etcd-server"

// buildHint says how to provide the binary by hand; every skip and failure
// about the binary includes it.
const buildHint = "build it with `go build -o bin/etcd-server ./tests/etcd-server` " +
	"in the module root and set " + BinaryEnv + "=$PWD/bin/etcd-server"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildSkip bool // no go command: skip rather than fail
)

// ServerBinary returns the path of an etcd server binary: $KVFS_ETCD_BIN when
// set, otherwise the wrapper github.com/kvfs/kvfs/tests/etcd-server built once
// per test process with `go build` in the module root (found with
// `go env GOMOD`).
//
// The build goes to a fresh directory under the user cache directory and is
// then renamed to a path keyed by the module root, so nothing accumulates in
// /tmp and concurrent test processes (go test ./...) never see a half-written
// file. With the Go build cache warm it costs about a second.
//
// It skips the test when $KVFS_ETCD_BIN is unset and no go command is on
// PATH, and fails it when $KVFS_ETCD_BIN is not executable or the build
// fails; each message says how to build the binary by hand.
func ServerBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			tb.Fatalf("etcdtest: %s=%q is not an executable file (%v); %s", BinaryEnv, p, err, buildHint)
		}
		return p
	}
	buildOnce.Do(func() { buildPath, buildErr = buildServer() })
	if buildErr != nil {
		if buildSkip {
			tb.Skipf("etcdtest: no etcd server binary: %v; %s", buildErr, buildHint)
		}
		tb.Fatalf("etcdtest: build etcd server: %v; %s", buildErr, buildHint)
	}
	return buildPath
}

// buildServer builds the wrapper and returns its path.
func buildServer() (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		buildSkip = true
		return "", fmt.Errorf("%s is unset and there is no go command on PATH", BinaryEnv)
	}
	return BuildBinary(serverPackage, "etcd-server")
}

// BuildBinary builds package pkg of the kvfs module (e.g.
// "github.com/kvfs/kvfs/cmd/kvfs") and returns the binary's path. It builds
// in a fresh directory under the user cache directory and renames the
// result to a path keyed by the module root and name, so nothing piles up
// in /tmp and concurrent test processes never run a half-written file.
func BuildBinary(pkg, name string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("no go command on PATH")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the kvfs module")
	}
	root := filepath.Dir(gomod)

	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(base, "kvfs-etcdtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	built := filepath.Join(tmp, name)
	cmd := exec.Command(goBin, "build", "-o", built, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, root, err, out)
	}
	final := filepath.Join(dir, name+"-"+hex.EncodeToString(sum[:6]))
	if err := os.Rename(built, final); err != nil {
		return "", err
	}
	return final, nil
}
