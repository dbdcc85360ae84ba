package pager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// smallRequests is a Store whose limits make commits of a few hundred
// KiB staged, so tests stage without writing megabytes.
type smallRequests struct{ Store }

func (smallRequests) Limits() etcdstore.Limits {
	return etcdstore.Limits{MaxRequestBytes: 160 << 10, MaxTxnOps: 128}
}

// testClock is a clock tests advance by hand.
type testClock struct{ ms atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

func (c *testClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *testClock) since(ms int64) time.Duration {
	return time.Duration(c.ms.Load()-ms) * time.Millisecond
}

// TestHistoryModel commits random transactions (page writes, growth,
// shrink, staged commits), interleaved with compaction passes (some
// partial), time passing and expiry, and checks against a model that
// every version inside the history window reads back byte-equal, on the
// writer and on another host, and that every version outside it is
// ErrNotFound. Replay a failure with KVFS_SEED=<seed>.
func TestHistoryModel(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("KVFS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	steps := 600
	if testing.Short() {
		steps = 200
	}
	t.Logf("seed %d, %d steps (replay: KVFS_SEED=%d go test ./pager -run TestHistoryModel)", seed, steps, seed)
	rng := rand.New(rand.NewSource(seed))
	ctx := ctxT(t)
	const ps = 1024
	const window = time.Minute
	clock := newTestClock()
	e := newEnv(t, Options{})
	opts := Options{Store: smallRequests{e.store}, History: window, HistoryEpoch: 10 * time.Second, Now: clock.Now,
		DirtyMemBytes: 64 * ps, PageCacheBytes: 64 * ps, BlobCacheBytes: 256 * ps}
	p := e.pager(opts)
	if err := p.Create(ctx, "h.db"); err != nil {
		t.Fatal(err)
	}
	db, err := p.Open(ctx, "h.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Acquire(ctx, e.fence("h.db", 1)); err != nil {
		t.Fatal(err)
	}
	other, err := e.pager(opts).Open(ctx, "h.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	model := [][]byte{nil} // model[txid]: the file as of txid
	times := []int64{0}    // times[txid]: its commit time
	cur := []byte(nil)     // the file as committed
	randPage := func(pgno int, random bool) []byte {
		b := make([]byte, ps)
		if random || rng.Intn(2) == 0 {
			rng.Read(b)
		} else {
			for i := range b {
				b[i] = byte(pgno*3 + i/64 + rng.Intn(2))
			}
		}
		if pgno == 1 {
			copy(b, sqlitePage1(ps, byte(rng.Intn(256)))[:100])
		}
		return b
	}
	commit := func(big bool) {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		file := bytes.Clone(cur)
		write := func(pgno int) {
			page := randPage(pgno, big)
			if err := tx.WritePage(ctx, uint32(pgno), page); err != nil {
				t.Fatal(err)
			}
			if need := pgno * ps; len(file) < need {
				file = append(file, make([]byte, need-len(file))...)
			}
			copy(file[(pgno-1)*ps:], page)
		}
		if len(file) == 0 {
			write(1)
		}
		n := 1 + rng.Intn(6)
		if big {
			n = 170 + rng.Intn(50)
		}
		pages := len(file) / ps
		if big {
			start := 1 + rng.Intn(pages)
			for i := range n {
				write(start + i)
			}
		}
		for range n {
			write(1 + rng.Intn(pages+3))
		}
		if rng.Intn(6) == 0 && len(file)/ps > 2 {
			// Shrink, sometimes then write past the new end.
			keep := 1 + rng.Intn(len(file)/ps-1)
			if err := tx.Truncate(ctx, int64(keep*ps)); err != nil {
				t.Fatal(err)
			}
			file = file[:keep*ps]
			if rng.Intn(2) == 0 {
				write(keep + 1 + rng.Intn(3))
			}
		}
		info, err := tx.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Head.TXID == uint64(len(model)-1) && bytes.Equal(file, cur) {
			return // nothing changed: no commit
		}
		if info.Head.TXID != uint64(len(model)) {
			t.Fatalf("commit landed txid %d, want %d", info.Head.TXID, len(model))
		}
		if big && !info.Staged {
			t.Fatalf("a %d-page commit was not staged (%d bytes)", n, info.Bytes)
		}
		cur = file
		model = append(model, file)
		times = append(times, info.Head.Timestamp)
		clock.advance(time.Duration(100+rng.Intn(3000)) * time.Millisecond)
	}
	inWindow := func(txid uint64) bool {
		head := uint64(len(model) - 1)
		return txid > 0 && (txid == head || clock.since(times[txid+1]) < window)
	}
	check := func(d *Database, txid uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); d.Head().TXID != uint64(len(model)-1); {
			if time.Now().After(deadline) {
				t.Fatalf("the other host stays at txid %d, want %d", d.Head().TXID, len(model)-1)
			}
			time.Sleep(time.Millisecond)
		}
		s, err := d.Version(ctx, txid)
		if !inWindow(txid) {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("txid %d (superseded %s ago, window %s): got %v, want ErrNotFound", txid, clock.since(times[txid+1]), window, err)
			}
			if s != nil {
				s.Close()
			}
			return
		}
		if err != nil {
			t.Fatalf("txid %d (in the window): %v", txid, err)
		}
		defer s.Close()
		want := model[txid]
		if s.Size() != int64(len(want)) || s.Head().TXID != txid {
			t.Fatalf("txid %d: size %d txid %d, want %d", txid, s.Size(), s.Head().TXID, len(want))
		}
		got := make([]byte, len(want))
		if _, err := s.ReadAt(ctx, got, 0); err != nil {
			t.Fatalf("txid %d: read: %v", txid, err)
		}
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("txid %d: byte %d (page %d) differs", txid, i, i/ps+1)
				}
			}
		}
	}
	passes, expired, restores := 0, 0, 0
	for step := range steps {
		switch r := rng.Intn(21); {
		case r == 20 && len(model) > 1:
			// Restore a random version of the window as a new commit.
			head := uint64(len(model) - 1)
			to := uint64(1 + rng.Intn(len(model)-1))
			for !inWindow(to) {
				to++
			}
			snap, err := db.Version(ctx, to)
			if err != nil {
				t.Fatalf("step %d: version %d: %v", step, to, err)
			}
			tx, err := db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Restore(ctx, tx, snap, nil); err != nil {
				t.Fatalf("step %d: restore txid %d at head %d: %v", step, to, head, err)
			}
			info, err := tx.Commit(ctx)
			snap.Close()
			if err != nil {
				t.Fatalf("step %d: restore commit: %v", step, err)
			}
			if info.Head.TXID != head+1 && !(info.Head.TXID == head && to == head) {
				t.Fatalf("restore landed txid %d at head %d", info.Head.TXID, head)
			}
			if info.Head.TXID == head+1 {
				cur = bytes.Clone(model[to])
				model = append(model, cur)
				times = append(times, info.Head.Timestamp)
			}
			restores++
			check(db, uint64(len(model)-1))
		case r < 12:
			commit(false)
		case r < 13:
			commit(true)
		case r < 16:
			o := CompactOptions{ShardPages: 4}
			if rng.Intn(4) == 0 {
				o.MaxShards = 1 + rng.Intn(3)
			}
			before := db.Stats().HistoryFrom
			if _, err := db.Compact(ctx, o); err != nil {
				t.Fatalf("step %d: compact: %v", step, err)
			}
			passes++
			if db.Stats().HistoryFrom > before {
				expired++
			}
		case r < 17:
			clock.advance(time.Duration(rng.Intn(40)) * time.Second)
		default:
			d := db
			if rng.Intn(3) == 0 {
				d = other
			}
			for range 3 {
				check(d, uint64(rng.Intn(len(model))))
			}
		}
	}
	// Everything, on both hosts, after a last pass.
	if _, err := db.Compact(ctx, CompactOptions{ShardPages: 4}); err != nil {
		t.Fatal(err)
	}
	for txid := range uint64(len(model)) {
		check(db, txid)
		check(other, txid)
	}
	st := db.Stats()
	t.Logf("%d commits (%d restores), %d passes, %d expiries; history from txid %d, %d bytes live, %d bytes history",
		len(model)-1, restores, passes, expired, st.HistoryFrom, st.Usage, st.HistoryBytes)
	if expired == 0 {
		t.Errorf("no pass expired history: the test did not exercise expiry")
	}
	if err := checkStoredBytes(ctx, e, "h.db", st); err != nil {
		t.Error(err)
	}
}

// checkStoredBytes compares what the database's keys take in etcd with
// the live and history bytes its state accounts for.
func checkStoredBytes(ctx context.Context, e *env, name string, st Stats) error {
	var stored int64
	_, err := e.store.Range(ctx, e.keys.DB(name), etcdstore.RangeOptions{}, func(kv *etcdstore.KeyValue) error {
		info, ok := e.keys.Parse(kv.Key)
		if !ok {
			return nil
		}
		switch info.Kind {
		case etcdstore.KindDelta, etcdstore.KindPIDX, etcdstore.KindShard, etcdstore.KindLog:
			_, payload, err := etcdstore.DecodeChunk(kv.Value)
			if err != nil {
				return err
			}
			stored += int64(len(payload))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if want := st.Usage + st.HistoryBytes; stored != want {
		return fmt.Errorf("%s stores %d payload bytes; usage %d + history %d = %d", name, stored, st.Usage, st.HistoryBytes, want)
	}
	return nil
}

// TestHistoryLimits: a database keeping more than HistoryMaxBytes drops
// the versions before the current one at the next complete pass, and an
// idle database whose history left the window is due for an expiry pass
// (ExpiryDue, which the compaction worker acts on) that drops it.
func TestHistoryLimits(t *testing.T) {
	ctx := ctxT(t)
	const ps = 1024
	clock := newTestClock()
	e := newEnv(t, Options{})
	opts := Options{History: time.Hour, HistoryEpoch: time.Minute, Now: clock.Now}
	pLimited := func(max int64) (*Database, *testFence) {
		o := opts
		o.HistoryMaxBytes = max
		p := e.pager(o)
		name := fmt.Sprintf("l%d.db", max)
		if err := p.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		db, err := p.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f := e.fence(name, 1)
		if err := db.Acquire(ctx, f); err != nil {
			t.Fatal(err)
		}
		return db, f
	}
	compact := func(db *Database) {
		t.Helper()
		if _, err := db.Compact(ctx, CompactOptions{ShardPages: 8}); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int64{0, 64 << 10} {
		db, _ := pLimited(limit)
		// An epoch at txid 2, then 40 rewrites of 32 pages each.
		writeDB(t, db, ps, 32, 1)
		writeDB(t, db, ps, 32, 2)
		compact(db)
		for v := range 40 {
			clock.advance(time.Second)
			writeDB(t, db, ps, 32, byte(3+v))
		}
		compact(db)
		st := db.Stats()
		old, err := db.Version(ctx, 2)
		if limit == 0 {
			if err != nil {
				t.Fatalf("no limit: txid 2 (in the window): %v", err)
			}
			old.Close()
			if st.HistoryBytes < 64<<10 {
				t.Fatalf("no limit: %d history bytes; the test needs more than %d", st.HistoryBytes, 64<<10)
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("limit %d, %d history bytes: txid 2 read %v, want ErrNotFound", limit, st.HistoryBytes, err)
		}
		if st.HistoryBytes > limit || st.HistoryFrom != st.Head.TXID {
			t.Fatalf("limit %d: %d history bytes from txid %d after the pass, head %d", limit, st.HistoryBytes, st.HistoryFrom, st.Head.TXID)
		}
		if err := checkStoredBytes(ctx, e, "l65536.db", st); err != nil {
			t.Fatal(err)
		}
	}

	// Idle: two epochs, then the clock passes the window.
	db, _ := pLimited(1)
	db.p.opts.HistoryMaxBytes = 0
	writeDB(t, db, ps, 8, 1)
	writeDB(t, db, ps, 8, 2)
	compact(db)
	clock.advance(2 * time.Minute)
	writeDB(t, db, ps, 8, 3)
	compact(db)
	if st := db.Stats(); st.Epochs != 2 || st.ExpiryDue {
		t.Fatalf("two epochs in the window: %+v", st)
	}
	clock.advance(2 * time.Hour)
	st := db.Stats()
	if !st.ExpiryDue || st.Rows != 0 {
		t.Fatalf("history out of the window, nothing to fold: ExpiryDue %v rows %d", st.ExpiryDue, st.Rows)
	}
	compact(db)
	st = db.Stats()
	if st.ExpiryDue || st.Epochs != 1 || st.HistoryFrom != 3 || st.HistoryBytes != 0 {
		t.Fatalf("after the expiry pass: %+v", st)
	}
	if _, err := db.Version(ctx, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("txid 2 after expiry: %v", err)
	}
}

// TestExpiryHealsMissingKeptVersion: a compaction state that keeps a
// shard version for history which etcd no longer stores (an expiry whose
// deletions took several transactions deleted it, then stopped before its
// last, which carries the state; the soak found one) must not stop
// history expiry for good: the next expiry
// forgets the version and goes on. Before, every pass failed with
// "expire history: size of shard 0 at txid 111: key not found".
func TestExpiryHealsMissingKeptVersion(t *testing.T) {
	ctx := ctxT(t)
	clock := newTestClock()
	e := newEnv(t, Options{})
	p := e.pager(Options{History: time.Minute, HistoryEpoch: 10 * time.Second, Now: clock.Now})
	if err := p.Create(ctx, "x.db"); err != nil {
		t.Fatal(err)
	}
	db, err := p.Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Acquire(ctx, e.fence("x.db", 1)); err != nil {
		t.Fatal(err)
	}
	const ps, pages = 1024, 6
	for round := byte(1); round <= 4; round++ {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx.WritePage(ctx, 1, sqlitePage1(ps, round))
		for pg := uint32(2); pg <= pages; pg++ {
			tx.WritePage(ctx, pg, pageOf(ps, pg, round))
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Compact(ctx, CompactOptions{ShardPages: 1}); err != nil {
			t.Fatal(err)
		}
		clock.advance(11 * time.Second)
	}
	before, err := ReadInfo(ctx, e.store, e.keys, "x.db")
	if err != nil || len(before.KeptShards[2]) == 0 {
		t.Fatalf("shard 2 keeps no version for history (%v, %v): nothing to lose", before.KeptShards, err)
	}
	gone := before.KeptShards[2][0]
	if _, err := e.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(e.keys.ShardVersion("x.db", 2, gone)))}); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Minute)
	// The next writer (its caches empty) expires the history.
	db.Close()
	db, err = e.pager(Options{History: time.Minute, HistoryEpoch: 10 * time.Second, Now: clock.Now}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Acquire(ctx, e.fence("x.db", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Compact(ctx, CompactOptions{}); err != nil {
		t.Fatalf("the expiry over a missing kept version: %v", err)
	}
	after, err := ReadInfo(ctx, e.store, e.keys, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	if after.HistoryFrom <= before.HistoryFrom {
		t.Fatalf("history not expired: from txid %d, before %d", after.HistoryFrom, before.HistoryFrom)
	}
	for n, txids := range after.KeptShards {
		for _, txid := range txids {
			if c, err := e.store.Count(ctx, etcdstore.ChunkPrefix(e.keys.ShardVersion("x.db", n, txid)), 0); err != nil || c == 0 {
				t.Errorf("shard %d version %d: kept by the state, %d chunks stored (%v)", n, txid, c, err)
			}
		}
	}
	s, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, ps)
	for pg := uint32(2); pg <= pages; pg++ {
		if err := s.ReadPage(ctx, pg, buf); err != nil || !bytes.Equal(buf, pageOf(ps, pg, 4)) {
			t.Fatalf("page %d: %v", pg, err)
		}
	}
}
