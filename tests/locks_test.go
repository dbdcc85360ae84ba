package tests

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSecondHostGetsBusy: while host A has a write transaction open, host
// B's writer gets SQLITE_BUSY (its RESERVED lock needs the write lease A
// holds), not corruption; once A commits, B's retry succeeds and both hosts
// read both commits.
func TestSecondHostGetsBusy(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("b.db"), "create table t(host text);")

	conn, closeConn := openConnCloser(t, a.Path("b.db"), "_busy_timeout=0")
	defer closeConn()
	if _, err := conn.ExecContext(t.Context(), "begin immediate"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "insert into t values ('a')"); err != nil {
		t.Fatal(err)
	}

	out, err := runSQL(b.Path("b.db"), "insert into t values ('b');")
	if err == nil || !strings.Contains(out, "database is locked") {
		t.Fatalf("host B writing while A's transaction is open: %v %q, want database is locked", err, out)
	}
	// A local reader on B is not blocked.
	if got := mustSQL(t, b.Path("b.db"), "select count(*) from t;"); got != "0\n" {
		t.Fatalf("host B reads %q before A commits", got)
	}
	if _, err := conn.ExecContext(t.Context(), "commit"); err != nil {
		t.Fatal(err)
	}
	// B retries with a busy timeout: A hands the lease over.
	mustSQL(t, b.Path("b.db"), "pragma busy_timeout=10000; insert into t values ('b');")
	for _, m := range []*mount{a, b} {
		var got string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = mustSQL(t, m.Path("b.db"), "select host from t order by host;"); got == "a\nb\n" {
				break
			}
		}
		if got != "a\nb\n" {
			t.Fatalf("%s reads %q", m.Dir, got)
		}
	}
}

// TestLocalWritersWaitAsOnAFile: two connections on one host: the second
// writer gets SQLITE_BUSY without a busy timeout, and waits with one.
func TestLocalWritersWaitAsOnAFile(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	mustSQL(t, m.Path("l.db"), "create table t(x);")
	db1, _ := sql.Open("sqlite3", fmt.Sprintf("file:%s?_busy_timeout=0", m.Path("l.db")))
	defer db1.Close()
	c1, err := db1.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := c1.ExecContext(t.Context(), "begin immediate"); err != nil {
		t.Fatal(err)
	}
	out, err := runSQL(m.Path("l.db"), "insert into t values (2);")
	if err == nil || !strings.Contains(out, "database is locked") {
		t.Fatalf("second local writer: %v %q, want database is locked", err, out)
	}
	done := make(chan error, 1)
	go func() {
		_, err := runSQL(m.Path("l.db"), "pragma busy_timeout=10000; insert into t values (2);")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	c1.ExecContext(t.Context(), "insert into t values (1)")
	if _, err := c1.ExecContext(t.Context(), "commit"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiting writer: %v", err)
	}
	if got := mustSQL(t, m.Path("l.db"), "select x from t order by x;"); got != "1\n2\n" {
		t.Fatalf("got %q", got)
	}
}
