package compaction

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// TestSustainedLoadHistory: a sustained commit load with the worker
// running and a 24h history window, on a clock that advances an hour every
// 60 commits: the history grows for the first day, then expiry keeps it
// (and etcd's size) flat; every byte stored is accounted for as live or
// history. It reports the footprint per live byte. The integration tier
// runs five days instead of three. Then, idle, the history leaves the
// window and the worker expires it without a commit to fold.
func TestSustainedLoadHistory(t *testing.T) {
	days := 3
	if os.Getenv("KVFS_INTEGRATION") != "" {
		days = 5
	}
	const perHour = 60
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	r := newRig(t)
	opts := Options{Interval: 10 * time.Millisecond, MaxDeltas: 64, Logger: testLogger(t)}
	var w *Worker
	p, db := r.writer("h.db", pager.Options{History: 24 * time.Hour, Now: clock,
		Backpressure: func(name string, s pager.Stats) time.Duration { return w.Backpressure(name, s) }})
	w = New(r.store, p, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	etcdSize := func() int64 {
		st, err := r.store.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st[0].DBSize
	}
	model := map[uint32][]byte{}
	var firstDay, laterMax, laterSize, firstSize int64
	for hour := 1; hour <= 24*days; hour++ {
		commitLoad(t, db, perHour, model)
		now.Add(time.Hour.Milliseconds())
		st := db.Stats()
		switch {
		case hour == 24:
			firstDay, firstSize = st.HistoryBytes, etcdSize()
		case hour > 36:
			laterMax, laterSize = max(laterMax, st.HistoryBytes), max(laterSize, etcdSize())
		}
	}
	// Let the worker finish its passes, then stop it before counting.
	for deadline := time.Now().Add(30 * time.Second); db.Stats().Rows > opts.MaxDeltas || db.Stats().ExpiryDue; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("worker never caught up: %+v", db.Stats())
		}
	}
	st := db.Stats()
	stored := storedInEtcd(t, r, "h.db")
	t.Logf("%d days of %d commits an hour: history %d KiB after the first day, at most %d KiB later; live %d KiB; stored %d KiB = %.1f× live; etcd backend %d KiB after a day, at most %d KiB later; history from txid %d of %d, %d epochs",
		days, perHour, firstDay>>10, laterMax>>10, st.Usage>>10, stored>>10, float64(stored)/float64(st.Usage), firstSize>>10, laterSize>>10, st.HistoryFrom, st.Head.TXID, st.Epochs)

	// Idle for two days: the worker expires all but the current version.
	now.Add((48 * time.Hour).Milliseconds())
	for deadline := time.Now().Add(30 * time.Second); db.Stats().HistoryFrom != st.Head.TXID; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("idle, the worker never expired the history: %+v", db.Stats())
		}
	}
	cancel()
	<-done
	checkModel(t, db, model)
	st = db.Stats()
	stored = storedInEtcd(t, r, "h.db")
	if stored != st.Usage+st.HistoryBytes {
		t.Fatalf("etcd stores %d payload bytes; usage %d + history %d", stored, st.Usage, st.HistoryBytes)
	}
	if st.HistoryFrom == 0 {
		t.Fatalf("no history expired in %d days with a 24h window", days)
	}
	// The window is 24h and epochs come every 6h: at most 30h of deltas plus
	// kept shard versions, against 24h of deltas after the first day.
	if laterMax > 2*firstDay {
		t.Errorf("history grew from %d bytes after a day to %d: expiry does not bound it", firstDay, laterMax)
	}
}

// storedInEtcd sums the payloads of the database's deltas, page index
// rows, shards (every version) and log rows.
func storedInEtcd(t *testing.T, r *rig, name string) int64 {
	return payloadsInEtcd(t, r, r.keys.Deltas(name), r.keys.PIDXs(name), r.keys.Shards(name), r.keys.Logs(name))
}
