package tests

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// TestEtcdDown stops etcd under a mount: commits fail with an I/O error,
// reads of committed data go on from the caches, nothing half-written
// appears, and once etcd is back the database is its last commit and takes
// writes again.
func TestEtcdDown(t *testing.T) {
	requireFUSE(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s", l.Addr())
	l.Close()
	dir := t.TempDir()
	start := func() *etcdstore.Embedded {
		e, err := etcdstore.StartEmbedded(context.Background(), etcdstore.EmbedConfig{DataDir: dir, ClientURL: url})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := start()
	t.Cleanup(func() { e.Close() })
	cfg := e.Config()
	cfg.RequestTimeout, cfg.DialTimeout = time.Second, time.Second
	m := mountKVFS(t, mountOpts{Etcd: cfg})
	db := m.Path("d.db")
	mustSQL(t, db, "create table t(x); insert into t values (1), (2);")
	want := mustSQL(t, db, "select * from t;")
	// A connection in locking_mode=EXCLUSIVE keeps its journal open across
	// transactions: once etcd is back, it commits again (SQLite reopens the
	// journal after the failed transaction, and kvfs asks etcd anew).
	x, closeX := openConnCloser(t, m.Path("x.db"), "_busy_timeout=5000")
	defer closeX()
	for _, q := range []string{"pragma locking_mode=exclusive", "create table t(x)", "insert into t values (1)"} {
		execConn(t, x, q)
	}

	e.Close()
	begin := time.Now()
	out, err := runSQL(db, "insert into t values (3);")
	if err == nil || !strings.Contains(out, "I/O error") {
		t.Fatalf("insert with etcd down: %v %q, want a disk I/O error", err, out)
	}
	t.Logf("insert failed after %s: %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))
	// Reads go on while etcd is down: the last commit, whole.
	if got, err := runSQL(db, "select * from t;"); err != nil || got != want {
		t.Fatalf("read with etcd down after the failed commit: %q %v, want %q", got, err, want)
	}
	if _, err := x.ExecContext(context.Background(), "insert into t values (2)"); err == nil || !strings.Contains(err.Error(), "I/O error") {
		t.Fatalf("exclusive connection's insert with etcd down: %v, want a disk I/O error", err)
	}

	e = start()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = runSQL(db, "select * from t;"); err == nil && got == want {
			break
		}
	}
	if got != want {
		t.Fatalf("after etcd returned: %q %v, want %q", got, err, want)
	}
	// Writes work again (a new lease).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if _, err = runSQL(db, "insert into t values (4);"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("insert after etcd returned: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if _, err = x.ExecContext(context.Background(), "insert into t values (3)"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("exclusive connection's insert after etcd returned: %v", err)
	}
	if n := queryInt(t, x, "select sum(x) from t"); n != 4 {
		t.Fatalf("exclusive connection reads sum %d, want 1+3", n)
	}
	closeX()
	if out := mustSQL(t, m.Path("x.db"), "select x from t; pragma integrity_check;"); out != "1\n3\nok\n" {
		t.Fatalf("exclusive database after close: %q", out)
	}
	if out := mustSQL(t, db, "select * from t; pragma integrity_check;"); out != "1\n2\n4\nok\n" {
		t.Fatalf("final: %q", out)
	}
}
