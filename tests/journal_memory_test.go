package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// journalFiles counts this process's open journal files by kind (the
// mounts of these tests serve from this process); see processJournals.
func journalFiles(t *testing.T, spool string) (mem, disk int) {
	return processJournals(t, "self", spool)
}

// processJournals counts the open journal files of process pid ("self",
// or a number) by kind: memfds (kept in memory) and unlinked side files in
// spool.
func processJournals(t *testing.T, pid, spool string) (mem, disk int) {
	t.Helper()
	dir := filepath.Join("/proc", pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, "/memfd:kvfs-journal"):
			mem++
		case strings.HasPrefix(target, spool+"/kvfs-side-") && strings.HasSuffix(target, "(deleted)"):
			disk++
		}
	}
	return mem, disk
}

// TestJournalInMemory: the journal of a database no larger than
// JournalMemMax is a memfd; a PERSIST journal whose database outgrew the
// limit moves to the spool directory at its next open, and commits go on
// (commit points, contents, integrity) across the move; a new journal of
// a database over the limit is a spool file from the start.
func TestJournalInMemory(t *testing.T) {
	const limit = 256 << 10
	m := mountKVFS(t, mountOpts{JournalMemMax: limit})
	spool := m.Spool
	c, closeConn := openConnCloser(t, m.Path("j.db"), "_busy_timeout=5000&_journal_mode=PERSIST")
	defer closeConn()
	execConn(t, c, "create table t(x, pad blob)")

	// A transaction open on a small database: its journal is in memory.
	execConn(t, c, "begin")
	execConn(t, c, "insert into t values (1, randomblob(100))")
	if mem, disk := journalFiles(t, spool); mem != 1 || disk != 0 {
		t.Fatalf("small database: %d journals in memory, %d in the spool; want 1, 0", mem, disk)
	}
	execConn(t, c, "commit")
	base := headWrites(t, m, "j.db")

	// The database grows past the limit; the PERSIST journal (still in
	// memory, closed between transactions) moves out at its next open.
	execConn(t, c, "insert into t select 2, randomblob(1000) from (with recursive n(i) as (select 1 union all select i+1 from n where i < 400) select i from n)")
	if got := headWrites(t, m, "j.db"); got != base+1 {
		t.Fatalf("growing insert: %d commits, want 1", got-base)
	}
	execConn(t, c, "begin")
	execConn(t, c, "update t set x = 3 where rowid = 1")
	if mem, disk := journalFiles(t, spool); mem != 0 || disk != 1 {
		t.Fatalf("database over the limit: %d journals in memory, %d in the spool; want 0, 1", mem, disk)
	}
	execConn(t, c, "commit")
	if got := headWrites(t, m, "j.db"); got != base+2 {
		t.Fatalf("after the move: %d commits, want 2", got-base)
	}
	closeConn()
	if out := mustSQL(t, m.Path("j.db"), "select count(*), sum(x) from t; pragma integrity_check;"); out != "401|803\nok\n" {
		t.Fatalf("read back: %q", out)
	}

	// DELETE mode: a new journal of the big database starts in the spool.
	d, closeD := openConnCloser(t, m.Path("j.db"), "_busy_timeout=5000&_journal_mode=DELETE")
	defer closeD()
	execConn(t, d, "begin")
	execConn(t, d, "delete from t where x = 2")
	if mem, disk := journalFiles(t, spool); mem != 0 || disk != 1 {
		t.Fatalf("new journal of a big database: %d in memory, %d in the spool; want 0, 1", mem, disk)
	}
	execConn(t, d, "commit")
	if n := queryInt(t, d, "select count(*) from t"); n != 1 {
		t.Fatalf("after delete: %d rows, want 1", n)
	}
}
