package main

import (
	"context"
	"strings"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
)

func TestRm(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 100)
	s.kvfs(0, "import", src, "a.db")
	s.kvfs(0, "import", src, "b.db")
	aID := s.id("a.db")
	out, _ := s.kvfs(0, "rm", "a.db")
	if strings.TrimSpace(out) != "removed a.db" {
		t.Fatalf("rm: %q", out)
	}
	out, _ = s.kvfs(0, "ls")
	if strings.Contains(out, "a.db") || !strings.Contains(out, "b.db") {
		t.Fatalf("ls after rm: %q", out)
	}
	st := s.open()
	if n, err := st.Count(context.Background(), etcdstore.NewKeys(s.prefix).DB(aID), 0); err != nil || n != 0 {
		t.Fatalf("keys left after rm: %d %v", n, err)
	}
	_, errOut := s.kvfs(1, "rm", "a.db")
	if !strings.Contains(errOut, "a.db: database not found") {
		t.Fatalf("rm of a missing database: %q", errOut)
	}

	// A holder that does not hand the lease over keeps its database.
	fm := fence.NewManager(st, etcdstore.NewKeys(s.prefix), fence.Options{Owner: "stubborn"})
	defer fm.Close(context.Background())
	if _, err := fm.Acquire(context.Background(), s.id("b.db")); err != nil {
		t.Fatal(err)
	}
	_, errOut = s.kvfs(1, "rm", "--wait", "100ms", "b.db")
	if !strings.Contains(errOut, "held by stubborn (generation 2) and was not handed over within 100ms") {
		t.Fatalf("rm of a held database: %q", errOut)
	}
	s.kvfs(0, "verify", "b.db")
}
