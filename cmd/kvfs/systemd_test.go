package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// unitFile returns the directives of systemd/kvfs.service (last value wins,
// as for systemd's single-valued settings).
func unitFile(t *testing.T) (string, map[string]string) {
	t.Helper()
	b, err := os.ReadFile("../../systemd/kvfs.service")
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		kv[k] = v
	}
	return string(b), kv
}

// TestSystemdUnit checks that the unit's ExecStart is a valid kvfs mount
// invocation that, with the shipped kvfs.yaml installed at the --config
// path, mounts with the documented defaults; and the unit's service
// settings. systemd-analyze verify runs when installed.
func TestSystemdUnit(t *testing.T) {
	text, kv := unitFile(t)
	exec0 := strings.Fields(kv["ExecStart"])
	if len(exec0) < 2 || exec0[0] != "/usr/local/bin/kvfs" || exec0[1] != "mount" {
		t.Fatalf("ExecStart %q does not run kvfs mount", kv["ExecStart"])
	}
	args := append([]string(nil), exec0[2:]...)
	found := false
	for i, a := range args {
		if a == "/etc/kvfs/kvfs.yaml" && i > 0 && args[i-1] == "--config" {
			args[i], found = "../../systemd/kvfs.yaml", true
		}
	}
	if !found {
		t.Fatalf("ExecStart %q does not read --config /etc/kvfs/kvfs.yaml", kv["ExecStart"])
	}
	cfg, err := parseMount(args, io.Discard)
	if err != nil {
		t.Fatalf("ExecStart arguments %q: %v", args, err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("ExecStart with the shipped config: %+v", cfg)
	}
	for k, want := range map[string]string{
		"Type": "notify", "KillSignal": "SIGTERM", "Restart": "on-failure",
		"After": "network-online.target", "Wants": "network-online.target",
	} {
		if kv[k] != want {
			t.Errorf("%s=%q, want %q", k, kv[k], want)
		}
	}
	stop, err := time.ParseDuration(kv["TimeoutStopSec"] + "s")
	if err != nil || stop <= time.Duration(DefaultConfig().ShutdownTimeout) {
		t.Errorf("TimeoutStopSec=%s: must exceed shutdown_timeout %v", kv["TimeoutStopSec"], DefaultConfig().ShutdownTimeout)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed (apt-get install systemd): skipped its verify")
		return
	}
	// systemd-analyze wants ExecStart's binary to exist: point it at this
	// test binary.
	unit := filepath.Join(t.TempDir(), "kvfs.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(text, "/usr/local/bin/kvfs", os.Args[0])), 0o644)
	if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
