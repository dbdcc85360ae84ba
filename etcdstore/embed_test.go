package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func TestEmbeddedEndpointFileAndLock(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, EmbedConfig{DataDir: dir})
	info, err := ReadEndpointFile(dir)
	if err != nil {
		t.Fatalf("read endpoint file: %v", err)
	}
	if info.PID != os.Getpid() || !reflect.DeepEqual(info.Endpoints, e.Endpoints()) || info.Limits != e.Limits() {
		t.Fatalf("endpoint file %+v, server %v %+v", info, e.Endpoints(), e.Limits())
	}
	// Another command reaches the running server through the file.
	s := openStore(t, Config{Endpoints: info.Endpoints, Limits: info.Limits})
	mustTxn(t, s, nil, OpPut("/k", []byte("v")))

	// A second server on the same directory is refused, clearly.
	_, err = StartEmbedded(context.Background(), EmbedConfig{DataDir: dir})
	if !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second server on %s: %v, want ErrDataDirInUse", dir, err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := ReadEndpointFile(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("endpoint file after close: %v, want ErrNotRunning", err)
	}

	// Restart on the same directory: the data is still there.
	e2 := startEmbedded(t, EmbedConfig{DataDir: dir})
	s2 := openStore(t, e2.Config())
	if got := mustGet(t, s2, "/k", 0); string(got) != "v" {
		t.Fatalf("after restart: %q", got)
	}
}

func TestEndpointFileStale(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	b, _ := json.Marshal(EndpointInfo{Endpoints: []string{"http://127.0.0.1:1"}, PID: cmd.Process.Pid})
	if err := os.WriteFile(filepath.Join(dir, EndpointFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEndpointFile(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale endpoint file: %v, want ErrNotRunning", err)
	}
	if _, err := ReadEndpointFile(t.TempDir()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no endpoint file: %v, want ErrNotRunning", err)
	}
	// A server started on the directory replaces the stale file.
	e := startEmbedded(t, EmbedConfig{DataDir: dir})
	info, err := ReadEndpointFile(dir)
	if err != nil || info.PID != os.Getpid() || info.Endpoints[0] != e.Endpoints()[0] {
		t.Fatalf("endpoint file after start: %+v %v", info, err)
	}
}

func TestEmbeddedRaisedLimits(t *testing.T) {
	e := startEmbedded(t, EmbedConfig{Limits: Limits{MaxRequestBytes: 8 << 20, MaxTxnOps: 1024}})
	s := openStore(t, e.Config())
	if s.Limits() != (Limits{MaxRequestBytes: 8 << 20, MaxTxnOps: 1024}) {
		t.Fatalf("limits %+v", s.Limits())
	}
	// 4 MiB in one request and 1000 ops in one txn: beyond etcd's defaults.
	var ops []Op
	for i := 0; i < 1000; i++ {
		ops = append(ops, OpPut("/k/"+string(rune('a'+i%26))+string(rune(0x100+i)), nil))
	}
	ops = append(ops, OpPut("/big", make([]byte, 4<<20)))
	mustTxn(t, s, nil, ops...)
	if n, _ := s.Count(ctxT(t), "/k/", 0); n != 1000 {
		t.Fatalf("count %d", n)
	}
}

// TestEmbeddedSnapshotsOften: the embedded server snapshots every
// DefaultSnapshotCount entries (etcd's own default is 10,000), so a restart
// reads back at most that many entries, however large they were.
func TestEmbeddedSnapshotsOften(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, EmbedConfig{DataDir: dir})
	s := openStore(t, e.Config())
	for i := range 3 * DefaultSnapshotCount {
		mustTxn(t, s, nil, OpPut(fmt.Sprintf("/k/%d", i), make([]byte, 1024)))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, err := filepath.Glob(filepath.Join(dir, etcdDir, "member", "snap", "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 {
		t.Fatalf("no raft snapshot after %d entries: a restart reads them all back", 3*DefaultSnapshotCount)
	}
	e2 := startEmbedded(t, EmbedConfig{DataDir: dir})
	s2 := openStore(t, e2.Config())
	if n, _ := s2.Count(ctxT(t), "/k/", 0); n != 3*DefaultSnapshotCount {
		t.Fatalf("after restart: %d keys, want %d", n, 3*DefaultSnapshotCount)
	}
}
