package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
)

func TestLs(t *testing.T) {
	s := newTestStore(t)
	out, _ := s.kvfs(0, "ls")
	if strings.TrimSpace(out) != "NAME  KIND  SIZE  PAGE  TXID  GEN  LEASE HOLDER  USED  QUOTA" {
		t.Fatalf("empty ls: %q", out)
	}
	src := makeDB(t, 300)
	s.kvfs(0, "import", src, "a.db")
	s.kvfs(0, "import", src, "b.db")

	// A lease held by a "mount" shows with its generation.
	st := s.open()
	fm := fence.NewManager(st, etcdstore.NewKeys(s.prefix), fence.Options{Owner: "host-x"})
	defer fm.Close(context.Background())
	if _, err := fm.Acquire(context.Background(), s.id("b.db")); err != nil {
		t.Fatal(err)
	}

	out, _ = s.kvfs(0, "ls", "--quota-bytes", "1MiB")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "a.db ") || !strings.HasPrefix(lines[2], "b.db ") {
		t.Fatalf("ls: %q", out)
	}
	if !strings.Contains(lines[2], "host-x (gen 2)") || !strings.Contains(lines[1], " - ") || !strings.Contains(lines[1], "1.0 MiB (") {
		t.Fatalf("ls holder/quota columns: %q", out)
	}

	out, _ = s.kvfs(0, "ls", "--json")
	var entries []lsEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if len(entries) != 2 || entries[0].Name != "a.db" || entries[0].TXID != 1 || entries[0].Generation != 1 ||
		entries[0].PageSize != 4096 || entries[0].SizeBytes != int64(entries[0].Pages)*4096 || entries[0].UsedBytes <= 0 ||
		entries[1].Holder != "host-x" || entries[1].HolderGen != 2 || entries[0].Holder != "" {
		t.Fatalf("ls --json: %+v", entries)
	}
}

// TestLsDataDir finds the store through --data-dir: with no kvfs running
// it starts the embedded etcd itself; with one running (its data dir
// locked) it goes through the endpoint file.
func TestLsDataDir(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	code, out, errOut := runCmd(ctx, "ls", "--data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("ls on an idle data dir: %d %q %q", code, out, errOut)
	}
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: dir, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	src := makeDB(t, 10)
	if code, _, errOut := runCmd(ctx, "import", "--data-dir", dir, src, "x.db"); code != 0 {
		t.Fatalf("import through the endpoint file: %q", errOut)
	}
	code, out, errOut = runCmd(ctx, "ls", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "x.db") {
		t.Fatalf("ls through the endpoint file: %d %q %q", code, out, errOut)
	}
}
