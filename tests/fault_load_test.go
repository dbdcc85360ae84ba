package tests

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultLoad is the workload of the fault suite: a writer committing
// batches of rows through one go-sqlite3 connection, each batch recording
// its own size in the same transaction, and a reader on another connection
// checking, in one read transaction at a time, that the rows it sees are
// whole batches. It never stops at an error: a fault shows as failed
// commits, then commits again. Every commit's outcome is kept, so check
// can compare each acknowledgement, and each reported failure, with what
// the database holds afterwards.
type faultLoad struct {
	t    *testing.T
	path string
	mode string // journal mode

	cancel context.CancelFunc
	done   sync.WaitGroup

	mu        sync.Mutex
	batches   []faultBatch
	lastAck   time.Time
	stall     time.Duration // longest time without an acknowledged commit
	stallEnd  time.Time     // when that stall ended
	reads     int
	readErrs  int
	torn      []string // what the reader saw that was not whole batches
	lastReads []time.Time
}

// faultBatch is one commit attempt: ids first..first+n-1 in batch id.
type faultBatch struct {
	id, first, n int
	ok           bool
	err          error
	start, end   time.Time
}

// startFaultLoad creates the tables at path (journal mode mode) and starts
// the writer and the reader. stop ends them.
func startFaultLoad(t *testing.T, path, mode string, seed uint64) *faultLoad {
	t.Helper()
	l := &faultLoad{t: t, path: path, mode: mode}
	w := openFaultDB(t, path, mode)
	if _, err := w.Exec("create table if not exists t(id integer primary key, batch integer not null, v text not null);" +
		"create table if not exists b(batch integer primary key, n integer not null)"); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	r := openFaultDB(t, path, mode)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.lastAck = time.Now()
	rng := rand.New(rand.NewPCG(seed, 0x6661756c74))
	l.done.Add(2)
	go func() {
		defer l.done.Done()
		defer w.Close()
		l.write(ctx, w, rng)
	}()
	go func() {
		defer l.done.Done()
		defer r.Close()
		l.read(ctx, r)
	}()
	return l
}

// openFaultDB opens path through go-sqlite3 with one connection.
func openFaultDB(t *testing.T, path, mode string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?_journal_mode=%s&_busy_timeout=10000", path, mode))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

func (l *faultLoad) write(ctx context.Context, db *sql.DB, rng *rand.Rand) {
	next := 1 + l.maxAttempted()
	failures := 0
	for batch := 1 + len(l.snapshot()); ctx.Err() == nil; batch++ {
		n := 1
		if rng.IntN(4) == 0 {
			n = 2 + rng.IntN(60)
		}
		b := faultBatch{id: batch, first: next, n: n, start: time.Now()}
		b.err = faultCommit(db, b)
		b.end = time.Now()
		b.ok = b.err == nil
		next += n
		l.mu.Lock()
		l.batches = append(l.batches, b)
		if b.ok {
			if gap := b.end.Sub(l.lastAck); gap > l.stall {
				l.stall, l.stallEnd = gap, b.end
			}
			l.lastAck = b.end
		}
		l.mu.Unlock()
		// An application's pace, not a tight loop: in rollback mode a
		// writer that never pauses keeps readers out, on any file system;
		// after failures it backs off (50 ms doubling to 1 s), as a
		// service retrying does. While it waits on etcd with EXCLUSIVE
		// held, readers wait too, as on a local disk that hangs.
		pause := 5 * time.Millisecond
		if b.ok {
			failures = 0
		} else {
			pause = min(50*time.Millisecond<<failures, time.Second)
			failures++
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// faultCommit writes batch b in one transaction.
func faultCommit(db *sql.DB, b faultBatch) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for id := b.first; id < b.first+b.n; id++ {
		if _, err := tx.Exec("insert into t(id, batch, v) values (?, ?, ?)", id, b.id, crashPayload(id)); err != nil {
			tx.Rollback()
			return err
		}
	}
	if _, err := tx.Exec("insert into b(batch, n) values (?, ?)", b.id, b.n); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (l *faultLoad) read(ctx context.Context, db *sql.DB) {
	for ctx.Err() == nil {
		rows, sum, err := readWhole(db)
		l.mu.Lock()
		l.reads++
		switch {
		case err != nil:
			l.readErrs++
		case rows != sum:
			l.torn = append(l.torn, fmt.Sprintf("%d rows but batches of %d rows", rows, sum))
		default:
			l.lastReads = append(l.lastReads, time.Now())
			if len(l.lastReads) > 1000 {
				l.lastReads = l.lastReads[500:]
			}
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readWhole counts the rows and the rows the batches say they hold, in one
// read transaction.
func readWhole(db *sql.DB) (rows, sum int, err error) {
	tx, err := db.Begin()
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if err := tx.QueryRow("select count(*) from t").Scan(&rows); err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRow("select coalesce(sum(n), 0) from b").Scan(&sum); err != nil {
		return 0, 0, err
	}
	return rows, sum, nil
}

// stop ends the load and waits for it.
func (l *faultLoad) stop() {
	l.cancel()
	l.done.Wait()
}

func (l *faultLoad) snapshot() []faultBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]faultBatch(nil), l.batches...)
}

func (l *faultLoad) maxAttempted() int {
	bs := l.snapshot()
	if len(bs) == 0 {
		return 0
	}
	b := bs[len(bs)-1]
	return b.first + b.n - 1
}

// acked returns how many commits were acknowledged so far.
func (l *faultLoad) acked() int {
	n := 0
	for _, b := range l.snapshot() {
		if b.ok {
			n++
		}
	}
	return n
}

// waitAcked waits until n more commits than now were acknowledged, failing
// the test after timeout.
func (l *faultLoad) waitAcked(n int, timeout time.Duration, what string) time.Duration {
	l.t.Helper()
	start, want := time.Now(), l.acked()+n
	for l.acked() < want {
		if time.Since(start) > timeout {
			l.t.Fatalf("%s: %d commits in %s, want %d more: the writer does not recover (last error: %v)", what, l.acked()-want+n, timeout, n, l.lastErr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// failedSince returns the first commit failure that started after t0, and
// how long its call took.
func (l *faultLoad) failedSince(t0 time.Time) (faultBatch, bool) {
	for _, b := range l.snapshot() {
		if !b.ok && b.end.After(t0) {
			return b, true
		}
	}
	return faultBatch{}, false
}

func (l *faultLoad) lastErr() error {
	bs := l.snapshot()
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].err != nil {
			return bs[i].err
		}
	}
	return nil
}

// readsBetween counts the reader's whole reads between a and b.
func (l *faultLoad) readsBetween(a, b time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.lastReads {
		if at.After(a) && at.Before(b) {
			n++
		}
	}
	return n
}

// faultSummary is what a load did, for the test log and the soak table.
type faultSummary struct {
	Commits, Acked, Failed int
	Stall                  time.Duration
	Reads, ReadErrs        int
}

func (l *faultLoad) summary() faultSummary {
	bs := l.snapshot()
	s := faultSummary{Commits: len(bs)}
	for _, b := range bs {
		if b.ok {
			s.Acked++
		} else {
			s.Failed++
		}
	}
	l.mu.Lock()
	s.Stall, s.Reads, s.ReadErrs = l.stall, l.reads, l.readErrs
	l.mu.Unlock()
	return s
}

func (s faultSummary) String() string {
	return fmt.Sprintf("%d commits: %d acknowledged, %d failed; longest stall %s; %d reads (%d failed)",
		s.Commits, s.Acked, s.Failed, s.Stall.Round(time.Millisecond), s.Reads, s.ReadErrs)
}

// check compares every commit's outcome with what path holds now, read
// through the mount at path (any host's): each acknowledged batch is there
// whole, each failed one is not there at all, no rows of a batch never
// attempted are, and the reader never saw part of a batch, and the
// database passes integrity_check. Up to unknown failed commits may have
// landed whole: as many as kvfs reported failed with an unknown outcome
// (etcd had no quorum to say).
func (l *faultLoad) check(t *testing.T, path string, unknown int) (bad, landedUnknown int) {
	t.Helper()
	l.mu.Lock()
	torn := append([]string(nil), l.torn...)
	l.mu.Unlock()
	if len(torn) > 0 {
		t.Errorf("the reader saw parts of transactions %d times, first: %s", len(torn), torn[0])
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sizes := map[int]int{}
	rows, err := db.Query("select batch, n from b")
	if err != nil {
		t.Fatalf("read back batches: %v", err)
	}
	for rows.Next() {
		var b, n int
		if err := rows.Scan(&b, &n); err != nil {
			t.Fatal(err)
		}
		sizes[b] = n
	}
	rows.Close()
	counts := map[int]int{}
	rows, err = db.Query("select id, batch, v from t")
	if err != nil {
		t.Fatalf("read back rows: %v", err)
	}
	for rows.Next() {
		var id, b int
		var v string
		if err := rows.Scan(&id, &b, &v); err != nil {
			t.Fatal(err)
		}
		if v != crashPayload(id) {
			t.Errorf("row %d: payload of %d bytes differs from what was written", id, len(v))
		}
		counts[b]++
	}
	rows.Close()
	var lost, landed []int
	bs := l.snapshot()
	for _, b := range bs {
		switch {
		case b.ok && (sizes[b.id] != b.n || counts[b.id] != b.n):
			lost = append(lost, b.id)
		case !b.ok && sizes[b.id] == b.n && counts[b.id] == b.n && unknown > 0:
			unknown--
			landedUnknown++
			t.Logf("batch %d, reported failed with its outcome unknown, landed (%v)", b.id, b.err)
		case !b.ok && (sizes[b.id] != 0 || counts[b.id] != 0):
			landed = append(landed, b.id)
		}
		delete(sizes, b.id)
		delete(counts, b.id)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged commits lost or partial, batches %v", len(lost), first(lost, 10))
	}
	if len(landed) > 0 {
		t.Errorf("%d commits reported failed landed anyway (or partly), batches %v", len(landed), first(landed, 10))
	}
	if len(sizes)+len(counts) > 0 {
		t.Errorf("rows of batches never attempted: %v %v", sizes, counts)
	}
	if out := mustSQL(t, path, "pragma integrity_check;"); out != "ok\n" {
		t.Errorf("integrity_check: %q", out)
	}
	return len(lost) + len(landed), landedUnknown
}

func first(s []int, n int) []int { return s[:min(n, len(s))] }

// kvfsVerifyPrefix runs `kvfs verify` on every database under prefix.
func kvfsVerifyPrefix(t *testing.T, endpoints []string, prefix string) {
	t.Helper()
	out, err := exec.Command(kvfsBinary(t), "verify", "--etcd", strings.Join(endpoints, ","), "--prefix", prefix).CombinedOutput()
	if err != nil {
		t.Errorf("kvfs verify: %v\n%s", err, out)
	}
}
