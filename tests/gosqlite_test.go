package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kvfs/kvfs/etcdstore"
)

// TestGoSQLite drives a mount with go-sqlite3 (linked SQLite, not the CLI):
// a transaction, autocommit inserts, a read-back, and a transaction whose
// write lease is revoked after it wrote pages and before its commit point,
// which must fail and land nothing.
func TestGoSQLite(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	for _, mode := range []string{"delete", "truncate", "persist", "memory"} {
		t.Run(mode, func(t *testing.T) {
			path := m.Path(mode + ".db")
			db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?_journal_mode=%s&_busy_timeout=5000", path, mode))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			mustExec := func(q string, args ...any) {
				t.Helper()
				if _, err := db.Exec(q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			mustExec("create table t(id integer primary key, v text)")
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 1000; i++ {
				if _, err := tx.Exec("insert into t(v) values (?)", fmt.Sprint("tx-", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				mustExec("insert into t(v) values (?)", fmt.Sprint("auto-", i))
			}
			var n int
			if err := db.QueryRow("select count(*) from t").Scan(&n); err != nil || n != 1100 {
				t.Fatalf("count %d %v", n, err)
			}

			// Lose the write lease in the middle of a transaction that has
			// already written pages to the file (a tiny page cache makes
			// SQLite spill before its commit point).
			mustExec("pragma cache_size = 2")
			tx, err = db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("insert into t(v) select hex(randomblob(200)) from t"); err != nil {
				t.Fatal(err)
			}
			info, err := m.Fence.Holder(context.Background(), m.id(t, mode+".db"))
			if err != nil {
				t.Fatalf("holder: %v", err)
			}
			if err := m.Store.Revoke(context.Background(), etcdstore.LeaseID(info.Lease)); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if err := tx.Commit(); err == nil {
				t.Fatal("commit after the lease was revoked succeeded")
			}
			if err := db.QueryRow("select count(*) from t").Scan(&n); err != nil || n != 1100 {
				t.Fatalf("after lost lease: count %d %v, want 1100", n, err)
			}
			// The next transaction takes a new lease and commits.
			mustExec("insert into t(v) values ('after')")
			if err := db.QueryRow("select count(*) from t").Scan(&n); err != nil || n != 1101 {
				t.Fatalf("after new lease: count %d %v", n, err)
			}
		})
	}
}

// TestSignalledCaller: a Go program's threads get signals all the time
// (the runtime's preemption), and each one that lands during a FUSE
// request makes the kernel send FUSE_INTERRUPT. kvfs finishes the request
// anyway: stat, mkdir and rmdir (system calls Go does not retry on EINTR)
// of names the kernel must look up in etcd each time (entries are cached
// for 1 ms) never fail with EINTR while this thread is signalled without
// pause.
func TestSignalledCaller(t *testing.T) {
	m := mountKVFS(t, mountOpts{EntryTimeout: time.Millisecond})
	const names = 8
	for i := range names {
		mustSQL(t, m.Path(fmt.Sprintf("s%d.db", i)), "create table t(x);")
	}
	runtime.LockOSThread() // the calls run on this thread, which is signalled
	defer runtime.UnlockOSThread()
	tid := syscall.Gettid()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				syscall.Tgkill(os.Getpid(), tid, syscall.SIGURG) // what preemption sends
				time.Sleep(10 * time.Microsecond)
			}
		}
	}()
	var failures []string
	for i := 0; i < 500 && len(failures) < 5; i++ {
		var st syscall.Stat_t
		if err := syscall.Stat(m.Path(fmt.Sprintf("s%d.db", i%names)), &st); err != nil {
			failures = append(failures, fmt.Sprintf("stat %d: %v", i, err))
		}
		dir := m.Path(fmt.Sprintf("d%d", i%names))
		if err := syscall.Mkdir(dir, 0o755); err != nil {
			failures = append(failures, fmt.Sprintf("mkdir %d: %v", i, err))
		} else if err := syscall.Rmdir(dir); err != nil {
			failures = append(failures, fmt.Sprintf("rmdir %d: %v", i, err))
		}
	}
	close(stop)
	<-done
	if len(failures) > 0 {
		t.Fatalf("system calls failed while signalled:\n%s", strings.Join(failures, "\n"))
	}
}
