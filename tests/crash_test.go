package tests

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// crashSeedEnv replays one crash trial: set it to the seed a failure
// printed and select the trial with -run.
const crashSeedEnv = "KVFS_CRASH_SEED"

// TestCrashKill9 kills kvfs with SIGKILL in the middle of a write workload
// and remounts on the same etcd: the database passes integrity_check, every
// commit the client saw succeed is there, nothing it did not attempt is, and
// the new mount takes writes once the dead process's lease expires.
func TestCrashKill9(t *testing.T) {
	runCrashTrials(t, []string{"delete", "truncate", "persist", "wal"}, 2)
}

// TestCrashKill9Integration is TestCrashKill9 with more trials and modes.
func TestCrashKill9Integration(t *testing.T) {
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier: run with KVFS_INTEGRATION=1 (make test-integration)")
	}
	runCrashTrials(t, []string{"delete", "truncate", "persist", "memory", "wal"}, 10)
}

// crashSeedBase returns the seed of the first trial: crashSeedEnv's
// value when set (replaying one), else the clock.
func crashSeedBase(t *testing.T) uint64 {
	if s := os.Getenv(crashSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

func runCrashTrials(t *testing.T, modes []string, trials int) {
	requireFUSE(t)
	kvfsBinary(t) // build once, before any timing starts
	base := crashSeedBase(t)
	for m, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			for i := range trials {
				seed := base + uint64(m*trials+i)
				if os.Getenv(crashSeedEnv) != "" {
					seed = base // replaying one trial: every trial uses the given seed
				}
				t.Run(strconv.Itoa(i), func(t *testing.T) {
					t.Logf("seed %d (replay: %s=%d go test -count=1 -run '%s' ./tests)", seed, crashSeedEnv, seed, t.Name())
					crashTrial(t, mode, seed)
				})
			}
		})
	}
}

// crashPayload is row id's deterministic value, 10 to 1,509 bytes long, so
// rows of one page and overflow chains both occur.
func crashPayload(id int) string {
	return strings.Repeat(strconv.Itoa(id%10), 10+(id*7919)%1500)
}

// crashWriter's results: ids 1..acked were in commits that returned
// success; ids acked+1..attempted were in the commit in flight at the crash.
type crashWriter struct {
	acked, attempted int
	commits          int
	err              error     // the error that stopped it
	errAt            time.Time // when it failed
}

// start runs the writer in the background: commits of size() increasing
// ids each, through commit, until one fails. The channel closes then.
func (w *crashWriter) start(size func() int, commit func(batch, first, n int) error) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		next := 1
		for batch := 1; ; batch++ {
			n := size()
			w.attempted = next + n - 1
			if err := commit(batch, next, n); err != nil {
				w.err, w.errAt = err, time.Now()
				return
			}
			next += n
			w.acked = next - 1
			w.commits++
		}
	}()
	return done
}

// killDuring kills kvfs after delay while the writer runs, waits for the
// writer to stop, and checks that it failed only because of the kill.
func (w *crashWriter) killDuring(t *testing.T, a *kvfsProc, done <-chan struct{}, delay time.Duration) {
	t.Helper()
	select {
	case <-time.After(delay):
	case <-done:
		t.Fatalf("writer failed before the kill, after %d commits: %v\n%s", w.commits, w.err, a.out)
	}
	killedAt := time.Now()
	a.Kill()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("writer still blocked 30s after kvfs was killed")
	}
	if w.errAt.Before(killedAt) {
		t.Fatalf("writer failed %s before the kill: %v", killedAt.Sub(w.errAt), w.err)
	}
}

// checkAllOrNothing checks the largest id found after the crash: every
// acknowledged commit is there, and the one in flight wholly or not at all.
func (w *crashWriter) checkAllOrNothing(t *testing.T, maxID int) {
	t.Helper()
	switch {
	case maxID < w.acked:
		t.Fatalf("after crash: max id %d, but ids up to %d were acknowledged: acknowledged commits lost", maxID, w.acked)
	case maxID != w.acked && maxID != w.attempted:
		t.Fatalf("after crash: max id %d: part of the in-flight commit (ids %d..%d) is visible", maxID, w.acked+1, w.attempted)
	case maxID == w.attempted && w.attempted != w.acked:
		t.Logf("the in-flight commit (ids %d..%d) landed: etcd applied it before kvfs died", w.acked+1, w.attempted)
	}
}

// crashTrial runs one kill -9 trial in journal mode.
func crashTrial(t *testing.T, mode string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6b766673))
	prefix := fmt.Sprintf("/crash-%d/", seq.Add(1))
	a := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix})
	path := a.Path("crash.db")
	dsn := fmt.Sprintf("file:%s?_journal_mode=%s&_busy_timeout=5000", path, mode)

	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("create table t(id integer primary key, batch integer not null, v text not null)"); err != nil {
		t.Fatalf("create table: %v\n%s", err, a.out)
	}

	// The writer: batches of increasing ids, mostly autocommit single
	// inserts, sometimes an explicit transaction of up to 200 rows (which
	// spills pages to the file before its commit point).
	wrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	var w crashWriter
	done := w.start(func() int {
		if wrng.IntN(10) == 0 {
			return 2 + wrng.IntN(199)
		}
		return 1
	}, func(batch, first, n int) error { return insertBatch(db, batch, first, n) })
	delay := 100*time.Millisecond + time.Duration(rng.IntN(1500))*time.Millisecond
	w.killDuring(t, a, done, delay)
	t.Logf("%s: killed kvfs after %s: %d commits acknowledged (ids 1..%d), in flight ids %d..%d: %v",
		mode, delay, w.commits, w.acked, w.acked+1, w.attempted, w.err)
	db.Close()
	a.Detach()

	// Remount the same prefix at the same place.
	b := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix, Dir: a.Dir})
	if out := mustSQL(t, path, "pragma integrity_check;"); out != "ok\n" {
		t.Fatalf("integrity_check after crash: %q", out)
	}
	count, maxID := checkCrashRows(t, path)
	// Ids are inserted in increasing order, one batch per commit, and every
	// batch before the one in flight was acknowledged: so the rows must be
	// exactly 1..max, and max must end a batch. Every acknowledged commit
	// is present (max ≥ acked). The commit in flight may or may not be:
	// SQLite was at or before its commit point when kvfs died, and etcd may
	// have applied the commit txn without kvfs living to answer the syscall
	// — the client saw an error for a commit that is durable, which is what
	// a local disk does too when power fails after the write reached it.
	// Either way it is all or nothing (max is acked or attempted, never in
	// between), and nothing beyond what was attempted is visible.
	if count != maxID {
		t.Fatalf("after crash: %d rows but max id %d: rows missing", count, maxID)
	}
	w.checkAllOrNothing(t, maxID)

	// The new mount takes writes once the dead process's lease expires
	// (--lease-ttl 2s; a write waits up to 5s for a handoff first).
	start := time.Now()
	var out string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err = runSQL(path, fmt.Sprintf(".timeout 5000\npragma journal_mode=%s;\ninsert into t(id, batch, v) values (%d, 0, 'after');\nselect count(*) from t;", mode, maxID+1))
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("write after remount: %v", err)
	}
	if want := fmt.Sprintf("%s\n%d\n", mode, maxID+1); out != want {
		t.Fatalf("write after remount: %q, want %q", out, want)
	}
	t.Logf("first write after remount took %s", time.Since(start).Round(time.Millisecond))
	if out := mustSQL(t, path, "pragma integrity_check;"); out != "ok\n" {
		t.Fatalf("integrity_check after the write: %q", out)
	}
	b.Stop()
}

// insertBatch inserts ids first..first+n-1 in one commit: an autocommit
// statement when n is 1, else an explicit transaction.
func insertBatch(db *sql.DB, batch, first, n int) error {
	const q = "insert into t(id, batch, v) values (?, ?, ?)"
	if n == 1 {
		_, err := db.Exec(q, first, batch, crashPayload(first))
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for id := first; id < first+n; id++ {
		if _, err := tx.Exec(q, id, batch, crashPayload(id)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// checkCrashRows reads every row back through go-sqlite3, checks each
// payload and that batches appear in order, and returns the row count and the
// largest id.
func checkCrashRows(t *testing.T, path string) (count, maxID int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := db.QueryContext(ctx, "select id, batch, v from t order by id")
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	defer rows.Close()
	lastBatch := 0
	for rows.Next() {
		var id, batch int
		var v string
		if err := rows.Scan(&id, &batch, &v); err != nil {
			t.Fatal(err)
		}
		if v != crashPayload(id) {
			t.Fatalf("row %d: payload of %d bytes differs from what was written", id, len(v))
		}
		if batch < lastBatch {
			t.Fatalf("row %d: batch %d after batch %d", id, batch, lastBatch)
		}
		lastBatch = batch
		count++
		maxID = max(maxID, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read back: %v", err)
	}
	return count, maxID
}

// TestCrashKill9Plain kills kvfs with SIGKILL while a writer that is not
// SQLite (as cp does: open with O_TRUNC, write, close) keeps replacing a
// plain file, and remounts: the file holds the version whose close last
// returned, or the one in flight, whole — never a part, never an older one.
func TestCrashKill9Plain(t *testing.T) { runPlainCrashTrials(t, 2) }

// TestCrashKill9PlainIntegration is TestCrashKill9Plain with more trials.
func TestCrashKill9PlainIntegration(t *testing.T) {
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier: run with KVFS_INTEGRATION=1 (make test-integration)")
	}
	runPlainCrashTrials(t, 10)
}

func runPlainCrashTrials(t *testing.T, trials int) {
	requireFUSE(t)
	kvfsBinary(t)
	base := crashSeedBase(t)
	for i := range trials {
		seed := base + uint64(i)
		if os.Getenv(crashSeedEnv) != "" {
			seed = base
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("seed %d (replay: %s=%d go test -count=1 -run '%s' ./tests)", seed, crashSeedEnv, seed, t.Name())
			plainCrashTrial(t, seed)
		})
	}
}

// plainVersion is version v of the plain file: 1 to 200,000 bytes, each
// line naming v, so that any mix of two versions or a cut one shows.
func plainVersion(v int, rng *rand.Rand) []byte {
	n := 1 + rng.IntN(200_000)
	line := fmt.Sprintf("version %08d\n", v)
	return []byte(strings.Repeat(line, n/len(line)+1)[:n])
}

func plainCrashTrial(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x706c61696e))
	prefix := fmt.Sprintf("/crash-plain-%d/", seq.Add(1))
	a := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix})
	path := a.Path("notes.txt")
	versions := map[int][]byte{0: nil} // version 0: the file before any close
	var w crashWriter
	wrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	done := w.start(func() int { return 1 }, func(batch, first, n int) error {
		data := plainVersion(first, wrng)
		versions[first] = data
		return writeFile(path, data)
	})
	delay := 100*time.Millisecond + time.Duration(rng.IntN(1500))*time.Millisecond
	w.killDuring(t, a, done, delay)
	t.Logf("killed kvfs after %s: %d versions closed, version %d in flight: %v", delay, w.acked, w.attempted, w.err)
	a.Detach()

	b := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix, Dir: a.Dir})
	got, err := os.ReadFile(path)
	if err != nil && !(os.IsNotExist(err) && w.acked == 0) {
		t.Fatalf("read after the crash: %v", err)
	}
	switch {
	case bytes.Equal(got, versions[w.acked]):
	case w.attempted != w.acked && bytes.Equal(got, versions[w.attempted]):
		t.Logf("the version in flight (%d) landed: etcd applied it before kvfs died", w.attempted)
	default:
		head := got[:min(len(got), 32)]
		t.Fatalf("after the crash the file holds %d bytes starting %q: neither version %d (%d bytes, closed) nor %d (%d bytes, in flight)",
			len(got), head, w.acked, len(versions[w.acked]), w.attempted, len(versions[w.attempted]))
	}
	b.Stop()
}
