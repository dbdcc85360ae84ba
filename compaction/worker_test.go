package compaction

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// fixedFence holds while its key has its value: the tests' stand-in for a
// fence.Lease (the fence package's own tests cover leases).
type fixedFence struct{ key string }

func (f fixedFence) Cmps() ([]etcdstore.Cmp, error) {
	return []etcdstore.Cmp{etcdstore.CmpValue(f.key, []byte("held"))}, nil
}
func (f fixedFence) Generation() uint64 { return 1 }

type rig struct {
	t     *testing.T
	e     *etcdstore.Embedded
	store *etcdstore.Store
	keys  etcdstore.Keys
}

func newRig(t *testing.T) *rig {
	t.Helper()
	e, err := etcdstore.StartEmbedded(context.Background(), etcdstore.EmbedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := etcdstore.Open(context.Background(), e.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &rig{t: t, e: e, store: s, keys: etcdstore.NewKeys("/c/")}
}

// writer opens name under a fence on a new pager with bp as backpressure.
func (r *rig) writer(name string, opts pager.Options) (*pager.Pager, *pager.Database) {
	t := r.t
	ctx := context.Background()
	opts.Store, opts.Keys, opts.SpoolDir = r.store, r.keys, t.TempDir()
	p, err := pager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Create(ctx, name); err != nil && !errors.Is(err, pager.ErrExists) {
		t.Fatal(err)
	}
	db, err := p.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := fixedFence{key: r.keys.Fence(name)}
	if _, err := r.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(f.key, []byte("held"))}); err != nil {
		t.Fatal(err)
	}
	if err := db.Acquire(ctx, f); err != nil {
		t.Fatal(err)
	}
	return p, db
}

func page(ps int, pgno uint32, v int) []byte {
	b := make([]byte, ps)
	for i := range b {
		b[i] = byte(int(pgno)*31 + v + i/128)
	}
	if pgno == 1 {
		copy(b, "SQLite format 3\x00")
		b[16], b[17] = byte(ps>>8), byte(ps)
	}
	return b
}

// commitLoad makes n small commits to db, each rewriting one page and
// touching page 1, over a 200-page database; it returns the model.
func commitLoad(t *testing.T, db *pager.Database, n int, model map[uint32][]byte) time.Duration {
	ctx := context.Background()
	const ps = 4096
	start := time.Now()
	for i := 0; i < n; i++ {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pgnos := []uint32{1, uint32(2 + i%199)}
		if len(model) == 0 {
			pgnos = nil
			for p := uint32(1); p <= 200; p++ {
				pgnos = append(pgnos, p)
			}
		}
		for _, p := range pgnos {
			b := page(ps, p, i)
			if err := tx.WritePage(ctx, p, b); err != nil {
				t.Fatal(err)
			}
			model[p] = b
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	return time.Since(start)
}

func checkModel(t *testing.T, db *pager.Database, model map[uint32][]byte) {
	t.Helper()
	ctx := context.Background()
	s, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 4096)
	for p, want := range model {
		if err := s.ReadPage(ctx, p, buf); err != nil || !bytes.Equal(buf, want) {
			t.Fatalf("page %d: %v", p, err)
		}
	}
}

// usageInEtcd sums the payloads of the database's deltas, page index rows
// and shards: what its usage counts.
func usageInEtcd(t *testing.T, r *rig, name string) int64 {
	return payloadsInEtcd(t, r, r.keys.Deltas(name), r.keys.PIDXs(name), r.keys.Shards(name))
}

// payloadsInEtcd sums the chunk payloads of every key under the prefixes.
func payloadsInEtcd(t *testing.T, r *rig, prefixes ...string) int64 {
	var total int64
	for _, prefix := range prefixes {
		_, err := r.store.Range(context.Background(), prefix, etcdstore.RangeOptions{}, func(kv *etcdstore.KeyValue) error {
			_, payload, err := etcdstore.DecodeChunk(kv.Value)
			total += int64(len(payload))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// TestSustainedLoad commits continuously with the worker running: deltas
// outstanding stay bounded, usage stays exact, etcd's size stays bounded,
// and the commit rate stays near the rate without compaction. The
// integration tier runs 20,000 commits (KVFS_INTEGRATION=1).
func TestSustainedLoad(t *testing.T) {
	commits := 1500
	if os.Getenv("KVFS_INTEGRATION") != "" {
		commits = 20000
	}
	r := newRig(t)
	opts := Options{Interval: 20 * time.Millisecond, MaxDeltas: 64, HistoryRetention: 4 * time.Second, Defrag: true, DefragMinBytes: 4 << 20}

	// Baseline: the same load without compaction, on another database.
	_, base := r.writer("base.db", pager.Options{})
	baseTime := commitLoad(t, base, commits, map[uint32][]byte{})

	var w *Worker
	p, db := r.writer("load.db", pager.Options{Backpressure: func(name string, s pager.Stats) time.Duration { return w.Backpressure(name, s) }})
	opts.Logger = testLogger(t)
	w = New(r.store, p, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	model := map[uint32][]byte{}
	size := func() int64 {
		st, err := r.store.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st[0].DBSize
	}
	before := size()
	maxRows, maxSize := 0, int64(0)
	var loadTime time.Duration
	for chunk := 0; chunk < 10; chunk++ {
		loadTime += commitLoad(t, db, commits/10, model)
		maxRows = max(maxRows, db.Stats().Rows)
		maxSize = max(maxSize, size())
	}
	// Let the worker catch up, then compare.
	for deadline := time.Now().Add(30 * time.Second); db.Stats().Rows > opts.MaxDeltas; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("worker never caught up: %+v", db.Stats())
		}
	}
	// Stop the worker first: a pass in flight has shard versions staged in
	// etcd that count only once it flips the compaction state.
	cancel()
	<-done
	checkModel(t, db, model)
	if got := usageInEtcd(t, r, "load.db"); got != db.Stats().Usage {
		t.Fatalf("usage %d, recomputed from etcd %d", db.Stats().Usage, got)
	}
	after := size()
	baseRate := float64(commits) / baseTime.Seconds()
	rate := float64(commits) / loadTime.Seconds()
	t.Logf("%d commits: %.0f/s with compaction, %.0f/s without (%.0f%%); max deltas outstanding %d (threshold %d); etcd size before %d KiB, max during %d KiB, after %d KiB; usage %d KiB of %d KiB committed",
		commits, rate, baseRate, 100*rate/baseRate, maxRows, opts.MaxDeltas, before>>10, maxSize>>10, after>>10, db.Stats().Usage>>10, db.Stats().Head.UsedBytes>>10)
	if maxRows > 4*opts.MaxDeltas { // a pass triggers at MaxDeltas; slack for a loaded CI machine
		t.Errorf("deltas outstanding reached %d with a threshold of %d", maxRows, opts.MaxDeltas)
	}
	if db.Stats().Usage > db.Stats().Head.UsedBytes/4 {
		t.Errorf("usage %d of %d committed: compaction reclaimed too little", db.Stats().Usage, db.Stats().Head.UsedBytes)
	}
}

// TestHistoryCompaction: the worker compacts etcd history older than the
// retention window (a read pinned there fails as compacted) and keeps the
// window's revisions readable.
func TestHistoryCompaction(t *testing.T) {
	r := newRig(t)
	p, db := r.writer("h.db", pager.Options{})
	model := map[uint32][]byte{}
	commitLoad(t, db, 20, model)
	_, oldRev, _ := r.store.Get(context.Background(), r.keys.Head("h.db"), 0)
	w := New(r.store, p, Options{Interval: 20 * time.Millisecond, HistoryRetention: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		commitLoad(t, db, 1, model) // history keeps moving
		if _, _, err = r.store.Get(context.Background(), r.keys.Head("h.db"), oldRev); errors.Is(err, etcdstore.ErrCompacted) || time.Now().After(deadline) {
			break
		}
	}
	if !errors.Is(err, etcdstore.ErrCompacted) {
		t.Fatalf("revision %d still readable: %v", oldRev, err)
	}
	checkModel(t, db, model)
	_, rev, _ := r.store.Get(context.Background(), r.keys.Head("h.db"), 0)
	if _, _, err := r.store.Get(context.Background(), r.keys.Head("h.db"), rev); err != nil {
		t.Fatalf("current revision %d: %v", rev, err)
	}
}

// TestHistoryCompactionAcrossRestarts: revision samples kept in etcd let
// a new worker compact history sampled by an earlier one, before it has
// run for a retention itself (mounts restarted more often than the
// retention would otherwise never compact etcd's history).
func TestHistoryCompactionAcrossRestarts(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	p, db := r.writer("h.db", pager.Options{})
	model := map[uint32][]byte{}
	commitLoad(t, db, 5, model)
	// etcd compacted to revision R still serves R: probe the one before
	// the first worker's sample.
	_, rev, _ := r.store.Get(ctx, r.keys.Head("h.db"), 0)
	oldRev := rev - 1
	const retention = 300 * time.Millisecond
	opts := Options{HistoryRetention: retention, SamplesKey: r.keys.Revisions()}
	first := New(r.store, p, opts)
	first.history(ctx) // samples oldRev or later
	commitLoad(t, db, 5, model)
	time.Sleep(retention + 50*time.Millisecond)

	// A worker without the shared samples compacts nothing at its first
	// look; one with them compacts what the first worker sampled.
	inMemory := opts
	inMemory.SamplesKey = ""
	New(r.store, p, inMemory).history(ctx)
	if _, _, err := r.store.Get(ctx, r.keys.Head("h.db"), oldRev); err != nil {
		t.Fatalf("a worker's first look compacted revision %d without samples: %v", oldRev, err)
	}
	second := New(r.store, p, opts)
	second.history(ctx)
	if _, _, err := r.store.Get(ctx, r.keys.Head("h.db"), oldRev); !errors.Is(err, etcdstore.ErrCompacted) {
		t.Fatalf("revision %d sampled by an earlier worker a retention ago is still readable: %v", oldRev, err)
	}
	checkModel(t, db, model)
	kv, _, err := r.store.Get(ctx, r.keys.Revisions(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var kept []sample
	if err := json.Unmarshal(kv.Value, &kept); err != nil || len(kept) == 0 {
		t.Fatalf("samples key %q: %v", kv.Value, err)
	}
	for _, s := range kept {
		if time.Since(s.At) >= retention+time.Second {
			t.Errorf("sample %+v older than the retention kept after compaction", s)
		}
	}
}

func TestMergeSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	own := []sample{{at(0), 10}, {at(10), 20}}
	shared := []sample{{at(5), 15}, {at(11), 20}, {at(1), 90}} // 90: another etcd's, past now
	got := mergeSamples(own, shared, sample{at(20), 30})
	want := []sample{{at(0), 10}, {at(5), 15}, {at(10), 20}, {at(20), 30}}
	if !slices.EqualFunc(got, want, func(a, b sample) bool { return a.Rev == b.Rev && a.At.Equal(b.At) }) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

func TestBackpressure(t *testing.T) {
	w := New(nil, nil, Options{MaxDeltas: 10})
	for _, c := range []struct {
		rows int
		want time.Duration
	}{{0, 0}, {160, 0}, {161, time.Millisecond}, {185, 3 * time.Millisecond}, {10000, 100 * time.Millisecond}} {
		if got := w.Backpressure("x", pager.Stats{Rows: c.rows}); got != c.want {
			t.Errorf("rows %d: %v, want %v", c.rows, got, c.want)
		}
	}
}

// testLogger logs through t when KVFS_COMPACTION_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("KVFS_COMPACTION_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestDue(t *testing.T) {
	w := New(nil, nil, Options{MaxDeltas: 10, MaxDeltaBytes: 1000, IdleAfter: time.Hour})
	now := time.Now().UnixMilli()
	for _, c := range []struct {
		s    pager.Stats
		want bool
	}{
		{pager.Stats{Writable: true, Rows: 3, Usage: 500, Head: pager.Head{TXID: 9, Timestamp: now}}, false},
		{pager.Stats{Writable: true, Rows: 10, Usage: 500, Head: pager.Head{TXID: 9, Timestamp: now}}, true},
		{pager.Stats{Writable: true, Rows: 2, Usage: 1500, ShardBytes: 400, Head: pager.Head{TXID: 9, Timestamp: now}}, true},
		{pager.Stats{Writable: true, Rows: 2, Usage: 1500, ShardBytes: 600, Head: pager.Head{TXID: 9, Timestamp: now}}, false},
		{pager.Stats{Writable: true, Rows: 1, Usage: 10, Folded: 3, Head: pager.Head{TXID: 9, Timestamp: now - 2*3600*1000}}, true},
		{pager.Stats{Writable: false, Rows: 100, Usage: 10000, Head: pager.Head{TXID: 9}}, false},
	} {
		if got := w.dueStats(c.s); got != c.want {
			t.Errorf("%+v: due %v, want %v", c.s, got, c.want)
		}
	}
}
