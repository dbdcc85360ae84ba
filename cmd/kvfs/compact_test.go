package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestCompact(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 300)
	s.kvfs(0, "import", src, "c.db")
	for i := 0; i < 3; i++ {
		sqlite(t, src, fmt.Sprintf("insert into kv values ('more-%d', 'rows');", i))
		s.kvfs(0, "import", "--force", src, "c.db") // one delta each
	}
	out, _ := s.kvfs(0, "status", "c.db")
	if !strings.Contains(out, "deltas outstanding: 4") {
		t.Fatalf("status before compaction: %q", out)
	}
	// History on (the default): the folded deltas stay for past versions.
	out, _ = s.kvfs(0, "compact", "c.db")
	if !strings.Contains(out, "c.db: folded up to txid 4") || !strings.Contains(out, "0 deltas deleted") || strings.Contains(out, "history 0 B") {
		t.Fatalf("compact: %q", out)
	}
	out, _ = s.kvfs(0, "status", "c.db")
	if !strings.Contains(out, "history: ") || strings.Contains(out, "history:            0 B") || !strings.Contains(out, "1 epochs; retention 24h0m0s") {
		t.Fatalf("status with history: %q", out)
	}
	s.kvfs(0, "verify", "c.db")
	// History off: the next pass drops it.
	out, _ = s.kvfs(0, "compact", "--history", "0", "c.db")
	if !strings.Contains(out, "4 deltas deleted") || !strings.Contains(out, "history 0 B") {
		t.Fatalf("compact --history 0: %q", out)
	}
	out, _ = s.kvfs(0, "status", "c.db")
	if !strings.Contains(out, "deltas outstanding: 0") || !strings.Contains(out, "compaction lag 0") {
		t.Fatalf("status after compaction: %q", out)
	}
	// Everything still verifies, and exports to the same database.
	out, _ = s.kvfs(0, "verify", "c.db")
	if !strings.Contains(out, "c.db: ok") {
		t.Fatalf("verify after compaction: %q", out)
	}
	dst := t.TempDir() + "/out.db"
	s.kvfs(0, "export", "c.db", dst)
	if got, want := sqlite(t, dst, "select count(*) from kv; pragma integrity_check;"), sqlite(t, src, "select count(*) from kv; pragma integrity_check;"); got != want {
		t.Fatalf("export after compaction: %q, source %q", got, want)
	}
	// All databases, none to do.
	out, _ = s.kvfs(0, "compact")
	if !strings.Contains(out, "c.db: folded up to txid 4: 0 shards written") {
		t.Fatalf("second compact: %q", out)
	}
	_, errOut := s.kvfs(1, "compact", "none.db")
	if !strings.Contains(errOut, "none.db") || !strings.Contains(errOut, "not found") {
		t.Fatalf("compact of a missing database: %q", errOut)
	}
}
