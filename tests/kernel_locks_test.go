package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// openConn opens one go-sqlite3 connection to path with the given DSN
// parameters; it is closed in t.Cleanup.
func openConn(t *testing.T, path, params string) *sql.Conn {
	t.Helper()
	conn, closeConn := openConnCloser(t, path, params)
	t.Cleanup(closeConn)
	return conn
}

// openConnCloser opens one go-sqlite3 connection to path and returns it
// with a function that closes it for good (the connection, then its pool:
// SQLite closes the file only then, and an open file keeps the mount busy).
// Calling that function more than once is harmless.
func openConnCloser(t *testing.T, path, params string) (*sql.Conn, func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?%s", path, params))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return conn, sync.OnceFunc(func() { conn.Close(); db.Close() })
}

func execConn(t *testing.T, c *sql.Conn, q string) {
	t.Helper()
	if _, err := c.ExecContext(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func queryInt(t *testing.T, c *sql.Conn, q string) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// eventually polls f (a read through a fresh sqlite3 CLI, say) until it
// returns want or 5 s pass.
func eventually(t *testing.T, what string, want string, f func() string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = f(); got == want {
			return
		}
	}
	t.Fatalf("%s: got %q, want %q", what, got, want)
}

// eventuallySQL polls sql on path through the sqlite3 CLI until it prints
// want or 5 s pass. A failed run counts as a miss, not an error: a new
// reader gets SQLITE_BUSY while kvfs applies another host's commit.
func eventuallySQL(t *testing.T, what, path, sql, want string) {
	t.Helper()
	eventually(t, what, want, func() string {
		out, err := runSQL(path, sql)
		if err != nil {
			return "error: " + out
		}
		return out
	})
}

// bigTable is 4,000 rows of v = 1 with 500-byte pads: larger than the page
// cache beginReadPass gives SQLite, so passes re-read the file.
const bigTable = `create table t(id integer primary key, v integer, pad blob);
with recursive n(i) as (select 1 union all select i+1 from n where i < 4000)
insert into t select i, 1, randomblob(500) from n;`

// sum is the read pass over bigTable.
const sum = "select sum(v) from t"

// beginReadPass opens a connection to path with a 10-page cache, begins a
// read transaction and makes a first pass over bigTable.
func beginReadPass(t *testing.T, path string) *sql.Conn {
	t.Helper()
	c := openConn(t, path, "_busy_timeout=5000&cache=private")
	execConn(t, c, "pragma cache_size=10")
	execConn(t, c, "begin")
	if got := queryInt(t, c, sum); got != 4000 {
		t.Fatalf("first pass: sum %d, want 4000", got)
	}
	return c
}

// TestRemoteCommitWaitsForReadTransaction: with locks left to the kernel,
// another host's commit becomes this host's view only between read
// transactions. A read transaction on B re-reads a table larger than
// SQLite's page cache (so the pages come from the file again) while A
// rewrites every row: both passes see A's old rows; B's next transaction
// sees the new ones.
func TestRemoteCommitWaitsForReadTransaction(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("r.db"), bigTable)
	rb := beginReadPass(t, b.Path("r.db"))
	// A commits while B's read transaction is open.
	mustSQL(t, a.Path("r.db"), "pragma busy_timeout=10000; update t set v = 2;")
	time.Sleep(300 * time.Millisecond) // B's mount has long seen the commit
	if got := queryInt(t, rb, sum); got != 4000 {
		t.Fatalf("B's second pass in the same read transaction: sum %d, want 4000 (A's commit landed mid-transaction)", got)
	}
	execConn(t, rb, "commit")
	var got int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = queryInt(t, rb, sum); got == 8000 {
			break
		}
	}
	if got != 8000 {
		t.Fatalf("B after its read transaction: sum %d, want 8000", got)
	}
	eventuallySQL(t, "B's CLI", b.Path("r.db"), sum+";", "8000\n")
}

// TestStaleWriterGetsBusy: a writer on B that took its RESERVED lock before
// A committed has read stale pages. Its journal shows up after A's commit,
// so kvfs keeps it from EXCLUSIVE: COMMIT fails with SQLITE_BUSY, not a
// lost update; after ROLLBACK its retry sees A's row and both rows land.
func TestStaleWriterGetsBusy(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("w.db"), "create table t(host text);")
	eventuallySQL(t, "B sees the table", b.Path("w.db"), "select count(*) from t;", "0\n")

	// B waits (busy timeout) until A, idle, releases the write lease.
	wb := openConn(t, b.Path("w.db"), "_busy_timeout=10000")
	execConn(t, wb, "begin immediate") // RESERVED on B, no journal yet
	if got := queryInt(t, wb, "select count(*) from t"); got != 0 {
		t.Fatalf("B reads %d rows", got)
	}
	execConn(t, wb, "pragma busy_timeout=0")
	mustSQL(t, a.Path("w.db"), "pragma busy_timeout=10000; insert into t values ('a');")

	_, err := wb.ExecContext(context.Background(), "insert into t values ('b')")
	if err == nil {
		_, err = wb.ExecContext(context.Background(), "commit")
	}
	if err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("B's stale transaction: %v, want database is locked", err)
	}
	execConn(t, wb, "rollback")
	execConn(t, wb, "pragma busy_timeout=10000")
	execConn(t, wb, "begin immediate")
	execConn(t, wb, "insert into t values ('b')")
	execConn(t, wb, "commit")
	for _, m := range []*mount{a, b} {
		eventuallySQL(t, m.Dir, m.Path("w.db"), "select host from t order by host;", "a\nb\n")
	}
}

// TestUnlockCommitsWithoutJournal: journal_mode=MEMORY with synchronous=OFF
// gives kvfs no journal and no fsync; the writer's unlock, seen by the lock
// agent, is the commit point: another host reads the row while the
// connection stays open.
func TestUnlockCommitsWithoutJournal(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	wa := openConn(t, a.Path("m.db"), "_journal_mode=MEMORY&_sync=OFF")
	execConn(t, wa, "create table t(x)")
	execConn(t, wa, "insert into t values (42)")
	eventuallySQL(t, "B reads A's row", b.Path("m.db"), "select x from t;", "42\n")
}

// TestReadOnlyMountFollows: a read-only mount refuses writes with a clear
// SQLite error and still follows another host's commits (its lock agent
// applies them).
func TestReadOnlyMountFollows(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	ro := mountKVFS(t, mountOpts{Prefix: a.Prefix, ReadOnly: true})
	mustSQL(t, a.Path("ro.db"), "create table t(x); insert into t values (1);")
	eventuallySQL(t, "read-only mount reads", ro.Path("ro.db"), "select x from t;", "1\n")
	out, err := runSQL(ro.Path("ro.db"), "insert into t values (2);")
	if err == nil || !strings.Contains(out, "readonly") {
		t.Fatalf("write on a read-only mount: %v %q, want a readonly error", err, out)
	}
	mustSQL(t, a.Path("ro.db"), "pragma busy_timeout=10000; insert into t values (3);")
	eventuallySQL(t, "read-only mount follows", ro.Path("ro.db"), "select x from t order by x;", "1\n3\n")
}

// TestRemoteShrinkWaitsForReadTransaction: another host empties and
// VACUUMs the database while a read transaction on B is open. The file's
// size B reports must stay its read view's meanwhile: a stat on B (any
// process, after the kernel's attribute cache expired) reporting the new,
// smaller size would make the kernel cut its cached pages and i_size, and
// B's transaction would read past the end of the file.
func TestRemoteShrinkWaitsForReadTransaction(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("s.db"), bigTable)
	eventuallySQL(t, "B sees the rows", b.Path("s.db"), "select count(*) from t;", "4000\n")
	st, err := os.Stat(b.Path("s.db"))
	if err != nil {
		t.Fatal(err)
	}
	big := st.Size()

	rb := beginReadPass(t, b.Path("s.db"))
	mustSQL(t, a.Path("s.db"), "pragma busy_timeout=10000; delete from t; vacuum;")
	time.Sleep(1500 * time.Millisecond) // B's mount has the commit; its attribute cache expired
	if st, err := os.Stat(b.Path("s.db")); err != nil || st.Size() != big {
		t.Errorf("stat on B during its read transaction: size %v (%v), want its view's %d", st.Size(), err, big)
	}
	if got := queryInt(t, rb, sum); got != 4000 {
		t.Fatalf("B's second pass in the same read transaction: sum %d, want 4000", got)
	}
	execConn(t, rb, "commit")
	eventuallySQL(t, "B after its transaction", b.Path("s.db"), "select count(*) from t;", "0\n")
	if st, err := os.Stat(b.Path("s.db")); err != nil || st.Size() >= big {
		t.Fatalf("stat on B after: size %v (%v), want less than %d", st.Size(), err, big)
	}
}
