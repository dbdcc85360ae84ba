package tests

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/etcdstore/etcdtest"
)

// nsQuota is the etcd quota of the NOSPACE trials: a few hundred commits
// fill it.
const nsQuota = 16 << 20

// TestFaultNoSpaceIntegration fills a separate etcd's 16 MiB quota through a
// `kvfs mount` child process, in rollback (delete) and WAL journal mode,
// until etcd raises NOSPACE. The commit that hits it must fail (WAL mode:
// "database or disk is full"; rollback mode: "disk I/O error", see
// nsFullError) and leave nothing behind;
// every acknowledged commit stays, reads keep working, further writes fail
// the same way. Then space is reclaimed, by the mount itself ("auto": its
// compaction worker compacts history older than
// compaction.history_retention, 10 s here, defragments and disarms) or by
// `kvfs reclaim` (with the mount's etcd history compaction off, so that it
// recovers nothing by itself), and writes resume through the same mount
// without a remount; `kvfs verify` passes; the mount leaves no goroutines
// behind and unmounts cleanly.
//
// The mounts run with history.retention 0: the versions history keeps are
// live data, which no compaction of etcd's history can reclaim (kvfs
// reclaim says so and exits 1; TestReclaim in cmd/kvfs covers that).
func TestFaultNoSpaceIntegration(t *testing.T) {
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier: run with KVFS_INTEGRATION=1 (make test-integration)")
	}
	requireFUSE(t)
	kvfsBinary(t) // build once, before any timing starts
	for _, mode := range []string{"delete", "wal"} {
		for _, recovery := range []string{"auto", "reclaim"} {
			t.Run(mode+"/"+recovery, func(t *testing.T) {
				if mode == "wal" && os.Getenv("KVFS_NOSPACE_WAL") == "" {
					// Known bug, open in issue 16: after a WAL commit etcd
					// refused for NOSPACE (and the one of another process
					// after it), kvfs counts the refused frames as committed
					// ("write of WAL frame 832 (832 committed)"), and once
					// space is back every write on the host fails with EIO
					// until its connections close.
					t.Skip("known bug: writes do not resume in WAL mode after NOSPACE; run with KVFS_NOSPACE_WAL=1")
				}
				noSpaceTrial(t, mode, recovery)
			})
		}
	}
}

func noSpaceTrial(t *testing.T, mode, recovery string) {
	nsCheckGoroutines(t) // first, so that its cleanup runs last
	etcd := etcdtest.StartProcess(t, etcdtest.Options{QuotaBackendBytes: nsQuota, UnsafeNoFsync: true})
	ctx := context.Background()
	st, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: etcd.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prefix := fmt.Sprintf("/nospace-%d/", seq.Add(1))
	env := []string{"KVFS_ETCD_QUOTA_BACKEND_BYTES=" + strconv.Itoa(nsQuota)}
	if recovery == "auto" {
		env = append(env, "KVFS_COMPACTION_HISTORY_RETENTION=10s")
	} else {
		// No etcd history compaction by the mount, and so no recovery of
		// its own (compaction/nospace.go): only kvfs reclaim can disarm,
		// and the checks under NOSPACE never race the mount's.
		env = append(env, "KVFS_COMPACTION_HISTORY_RETENTION=0")
	}
	a := startKVFS(t, procOpts{Endpoints: etcd.Endpoints(), Prefix: prefix, Env: env,
		Args: []string{"--history", "0", "--metrics-addr", "127.0.0.1:0"}})
	path := a.Path("full.db")
	dsn := fmt.Sprintf("file:%s?_journal_mode=%s&_busy_timeout=5000", path, mode)

	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	// t: the rows whose presence is checked; c: 64 rows of random bytes,
	// 8 of them rewritten by every commit, so that each commit adds about
	// 40 KiB that LZ4 cannot shrink, and the deltas compaction folds
	// leave that much etcd history behind.
	if _, err := db.Exec(`create table t(id integer primary key, batch integer not null, v text not null);
create table c(k integer primary key, b blob);
with recursive n(i) as (select 1 union all select i+1 from n where i < 64) insert into c select i, randomblob(3500) from n;`); err != nil {
		t.Fatalf("create tables: %v\n%s", err, a.out)
	}
	db.Close()
	setupTXID := nsHeadTXID(t, etcd.Endpoints(), prefix)
	baseline := nsGoroutines(t, a) // the mount with the database known and idle
	if db, err = sql.Open("sqlite3", dsn); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	commit := func(batch, first, n int) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for id := first; id < first+n; id++ {
			if _, err := tx.Exec("insert into t(id, batch, v) values (?, ?, ?)", id, batch, crashPayload(id)); err != nil {
				tx.Rollback()
				return err
			}
		}
		if _, err := tx.Exec("update c set b = randomblob(3500) where k % 8 = ?", batch%8); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}

	// Fill: commits of 1 to 8 rows until one fails, paced so that the
	// mount's compaction (a pass a second once 64 deltas wait) keeps up and
	// what fills etcd is history. Unpaced, the unfolded deltas themselves
	// (live data) fill it, and folding them needs space etcd no longer
	// grants: no compaction of history can help then.
	var w crashWriter
	start := time.Now()
	done := w.start(func() int { return 1 + w.commits%8 }, func(batch, first, n int) error {
		time.Sleep(10 * time.Millisecond)
		return commit(batch, first, n)
	})
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("%d commits in 90s and none failed: the quota was never reached\n%s", w.commits, a.out)
	}
	t.Logf("%s: %d commits (ids 1..%d) in %s, then ids %d..%d failed: %v", mode, w.commits, w.acked,
		time.Since(start).Round(time.Millisecond), w.acked+1, w.attempted, w.err)
	if !nsAlarmed(t, st) {
		t.Fatalf("the writer failed without a NOSPACE alarm: %v\n%s", w.err, a.out)
	}
	if msg := fmt.Sprint(w.err); !strings.Contains(msg, nsFullError(mode)) && !strings.Contains(msg, "database or disk is full") {
		// Go on: what follows still checks that nothing was lost.
		t.Errorf("the commit that hit NOSPACE failed with %q, want %q", msg, nsFullError(mode))
	}

	// Under NOSPACE: reads work, on the writer's connection and in another
	// process; every acknowledged commit is there and nothing of the failed
	// one; another write fails the same way.
	read := func(who string) {
		t.Helper()
		if out, err := runSQL(path, ".timeout 5000\nselect count(*), max(id) from t;\npragma integrity_check;"); err != nil || out != fmt.Sprintf("%d|%d\nok\n", w.acked, w.acked) {
			t.Errorf("under NOSPACE, a read in another process %s: %q %v, want %d rows and ok", who, out, err, w.acked)
		}
	}
	read("before the writer's connection read again")
	if got, err := nsCount(db); err != nil || got != w.acked {
		t.Errorf("under NOSPACE, the writer's connection reads %d rows (%v), want %d", got, err, w.acked)
	}
	read("after it")
	if out, err := runSQL(path, ".timeout 5000\ninsert into t(id, batch, v) values (0, 0, 'refused');"); err == nil || !strings.Contains(out, nsFullError(mode)) && !strings.Contains(out, "database or disk is full") {
		t.Errorf("under NOSPACE, a write in another process: %q %v, want %q", out, err, nsFullError(mode))
	}
	if !nsAlarmed(t, st) {
		t.Fatalf("NOSPACE cleared while the trial looked at it (recovery %s came too early for its checks)", recovery)
	}

	// Recovery.
	start = time.Now()
	switch recovery {
	case "auto":
		for !nsAlarmGone(t, st) {
			if time.Since(start) > 60*time.Second {
				t.Fatalf("NOSPACE still raised 60s after the fill: the mount did not reclaim space by itself\n%s", a.out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(a.out.String(), "NOSPACE alarm disarmed") {
			t.Fatalf("the alarm went, but not by the mount's hand:\n%s", a.out)
		}
	case "reclaim":
		out, err := exec.Command(kvfsBinary(t), "reclaim", "--etcd", strings.Join(etcd.Endpoints(), ","), "--prefix", prefix).CombinedOutput()
		t.Logf("kvfs reclaim:\n%s", out)
		if err != nil || !strings.Contains(string(out), "disarming NOSPACE") {
			t.Fatalf("kvfs reclaim: %v\n%s", err, out)
		}
		if !nsAlarmGone(t, st) {
			t.Fatal("NOSPACE still raised after kvfs reclaim")
		}
	}
	size, _ := st.BackendSize(ctx)
	t.Logf("%s recovery: NOSPACE gone after %s; backend now %d KiB", recovery, time.Since(start).Round(time.Millisecond), size>>10)

	// Writes resume through the same mount and the same connection: first
	// the transaction that failed, again, as an application retries it.
	next, n := w.acked+1, w.attempted-w.acked
	start = time.Now()
	var tries int
	var firstErr error
	for {
		tries++
		if err = commit(w.commits+1, next, n); err == nil {
			break
		}
		if firstErr == nil {
			firstErr = err
		}
		if time.Since(start) > 15*time.Second {
			// What landed: the head's txid against the last acknowledged
			// one, and the rows a new connection reads once the writer's
			// is closed.
			db.Close()
			out, rerr := runSQL(path, ".timeout 5000\nselect count(*), max(id), (select count(*) from t where id = 0) from t;")
			t.Fatalf("writes did not resume within 15s of the recovery (%d tries; the first failed with %v): %v\n"+
				"the last acknowledged commit is txid %d; etcd's head is txid %d; with the writer's connection closed, "+
				"a new one reads count|max id|refused row 0: %q %v (acknowledged ids 1..%d)\n%s",
				tries, firstErr, err, setupTXID+w.commits, nsHeadTXID(t, etcd.Endpoints(), prefix), out, rerr, w.acked, a.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tries > 1 {
		t.Errorf("the first write after the recovery failed (%v); the %d. try succeeded after %s", firstErr, tries, time.Since(start).Round(time.Millisecond))
	}
	next += n
	for batch := w.commits + 2; batch < w.commits+6; batch++ {
		if err := commit(batch, next, 8); err != nil {
			t.Fatalf("commit %d after the recovery: %v\n%s", batch, err, a.out)
		}
		next += 8
	}
	mustSQL(t, path, fmt.Sprintf(".timeout 5000\ninsert into t(id, batch, v) values (%d, %d, '%s');", next, w.commits+6, crashPayload(next)))
	if got, err := nsCount(db); err != nil || got != next {
		t.Fatalf("after the recovery, the writer's connection reads %d rows (%v), want %d", got, err, next)
	}
	db.Close()

	// Everything is there, whole: every id up to the last, payloads intact.
	if count, maxID := checkCrashRows(t, path); count != next || maxID != next {
		t.Fatalf("at the end: %d rows, max id %d; want ids 1..%d", count, maxID, next)
	}
	if out := mustSQL(t, path, "pragma integrity_check;"); out != "ok\n" {
		t.Fatalf("integrity_check at the end: %q", out)
	}
	nsHeadTXID(t, etcd.Endpoints(), prefix) // kvfs verify passes
	if nsAlarmed(t, st) {
		t.Fatalf("NOSPACE raised again by the writes after the recovery")
	}
	nsNoGoroutineLeak(t, a, baseline)
	a.Stop()
	if isKVFSMount(a.Dir) {
		t.Fatalf("%s still mounted after kvfs stopped", a.Dir)
	}
}

// nsFullError is what SQLite says of a commit etcd refuses for NOSPACE:
// SQLITE_FULL in WAL mode (kvfs fails the commit frame's write with
// ENOSPC); in a rollback-journal mode the commit point is the journal's
// deletion, and SQLite reports any failure of that unlink as an I/O error
// (SQLITE_IOERR_DELETE), whatever the errno (README: Out of etcd space).
func nsFullError(mode string) string {
	if mode == "wal" {
		return "database or disk is full"
	}
	return "disk I/O error"
}

var nsVerifyTXID = regexp.MustCompile(`full\.db: ok: txid (\d+),`)

// nsHeadTXID returns full.db's txid in etcd, as kvfs verify reports it.
func nsHeadTXID(t *testing.T, endpoints []string, prefix string) int {
	t.Helper()
	out, err := exec.Command(kvfsBinary(t), "verify", "--etcd", strings.Join(endpoints, ","), "--prefix", prefix).CombinedOutput()
	m := nsVerifyTXID.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("kvfs verify: %v\n%s", err, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// nsCount counts t's rows through db.
func nsCount(db *sql.DB) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	err := db.QueryRowContext(ctx, "select count(*) from t").Scan(&n)
	return n, err
}

// nsAlarmed reports whether etcd's NOSPACE alarm is raised.
func nsAlarmed(t *testing.T, st *etcdstore.Store) bool {
	t.Helper()
	alarms, err := st.Alarms(context.Background())
	if err != nil {
		t.Fatalf("etcd alarms: %v", err)
	}
	for _, a := range alarms {
		if strings.HasPrefix(a, "NOSPACE") {
			return true
		}
	}
	return false
}

// nsAlarmGone reports whether etcd has no alarm at all.
func nsAlarmGone(t *testing.T, st *etcdstore.Store) bool {
	t.Helper()
	alarms, err := st.Alarms(context.Background())
	if err != nil {
		t.Fatalf("etcd alarms: %v", err)
	}
	return len(alarms) == 0
}

var nsMetricsAddr = regexp.MustCompile(`msg="serving metrics" addr=(http://\S+/metrics)`)

// nsGoroutines returns the mount's goroutine count (its go_goroutines
// metric) once it is steady: the same on three scrapes 200 ms apart.
// go-fuse starts a goroutine reading requests whenever every reader is
// busy, up to GOMAXPROCS of them, and keeps them: so first a burst of
// concurrent lookups (of names that do not exist: every one reaches kvfs)
// takes the readers to their maximum, and two counts compare.
func nsGoroutines(t *testing.T, a *kvfsProc) int {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i, end := 0, time.Now().Add(500*time.Millisecond); time.Now().Before(end); i++ {
				os.Stat(a.Path(fmt.Sprintf("absent-%d-%d-%d", time.Now().UnixNano(), g, i)))
			}
		})
	}
	wg.Wait()
	m := nsMetricsAddr.FindStringSubmatch(a.out.String())
	if m == nil {
		t.Fatalf("no metrics address in kvfs's log:\n%s", a.out)
	}
	scrape := func() int {
		resp, err := http.Get(m[1])
		if err != nil {
			t.Fatalf("scrape %s: %v", m[1], err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("go_goroutines %q: %v", v, err)
				}
				io.Copy(io.Discard, resp.Body)
				return int(n)
			}
		}
		t.Fatalf("no go_goroutines in %s", m[1])
		return 0
	}
	last, same := scrape(), 0
	for deadline := time.Now().Add(10 * time.Second); same < 2 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		if n := scrape(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

// nsNoGoroutineLeak fails the test unless the mount, idle again, runs no
// more goroutines than at baseline (waiting up to 10 s for it to settle).
func nsNoGoroutineLeak(t *testing.T, a *kvfsProc, baseline int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if n = nsGoroutines(t, a); n <= baseline || time.Now().After(deadline) {
			break
		}
	}
	if n > baseline {
		// SIGQUIT: the Go runtime prints every goroutine, then exits; the
		// cleanup detaches the mount and prints kvfs's output.
		a.cmd.Process.Signal(syscall.SIGQUIT)
		<-a.done
		t.Fatalf("leak: the mount runs %d goroutines after the trial, %d before it (their stacks are in kvfs's output)", n, baseline)
	}
}

// nsCheckGoroutines fails the test if it leaves goroutines behind in the
// test process (etcd clients, database handles, process waiters).
func nsCheckGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(10 * time.Second); n > before && time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(50 * time.Millisecond)
		}
		if n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("leak: %d goroutines after the trial, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
	})
}
