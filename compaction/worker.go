package compaction

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// Options configure a Worker. Zero fields take the defaults in
// DefaultOptions.
type Options struct {
	// Interval is how often the worker looks at databases and etcd.
	Interval time.Duration
	// MaxDeltas starts a pass once a database has this many deltas
	// outstanding (page index rows not folded into shards).
	MaxDeltas int
	// MaxDeltaBytes starts a pass once the unfolded deltas (and their
	// page index rows) take this many bytes: a few large commits.
	MaxDeltaBytes int64
	// IdleAfter starts a pass on any outstanding delta once a database saw
	// no commit for this long.
	IdleAfter time.Duration
	// ShardPages is the shard size of a database's first pass.
	ShardPages uint32
	// HistoryRetention keeps this much etcd history for pinned readers; 0
	// disables history compaction (another tool does it).
	HistoryRetention time.Duration
	// SamplesKey, when set (etcdstore.Keys.Revisions), is where the worker
	// keeps its samples of etcd's revision over time, shared with the
	// workers of other hosts and of later runs: history is compacted once
	// a sample is a retention old even if no worker ran that long. Empty:
	// samples live in memory only.
	SamplesKey string
	// Defrag defragments etcd members when DefragMinBytes are reclaimable.
	Defrag         bool
	DefragMinBytes int64
	// QuotaBackendBytes is etcd's --quota-backend-bytes, for the NOSPACE
	// recovery (nospace.go); 0: the backend size at which etcd raised the
	// alarm stands for it.
	QuotaBackendBytes int64
	// Metrics records Prometheus metrics; nil records none.
	Metrics *Metrics
	// Logger receives pass results and failures; nil discards them.
	Logger *slog.Logger
}

// DefaultOptions returns the defaults: look every second, fold at 64
// deltas, 32 MiB of deltas or after 10 s idle, shards of
// pager.DefaultShardPages, keep 10 minutes of etcd history, no
// defragmentation. With 64 deltas, 20,000 one-page commits ran at 96% of
// the rate without compaction, never above 75 deltas outstanding.
func DefaultOptions() Options {
	return Options{
		Interval: time.Second, MaxDeltas: 64, MaxDeltaBytes: 32 << 20, IdleAfter: 10 * time.Second,
		ShardPages: pager.DefaultShardPages, HistoryRetention: 10 * time.Minute, DefragMinBytes: 64 << 20,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Interval <= 0 {
		o.Interval = d.Interval
	}
	if o.MaxDeltas <= 0 {
		o.MaxDeltas = d.MaxDeltas
	}
	if o.MaxDeltaBytes <= 0 {
		o.MaxDeltaBytes = d.MaxDeltaBytes
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = d.IdleAfter
	}
	if o.ShardPages == 0 {
		o.ShardPages = d.ShardPages
	}
	if o.DefragMinBytes <= 0 {
		o.DefragMinBytes = d.DefragMinBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Worker compacts the databases of one Pager that this host writes.
type Worker struct {
	opts  Options
	store *etcdstore.Store
	pager *pager.Pager

	mu        sync.Mutex
	samples   []sample // etcd revisions over time, oldest first
	compacted int64    // etcd history compacted up to this revision
	// saveFailed is set while writing the samples to SamplesKey fails.
	saveFailed bool
	nospace    noSpaceState // etcd's NOSPACE alarm, as last seen
}

type sample struct {
	At  time.Time `json:"at"`
	Rev int64     `json:"rev"`
}

// New returns a worker; Run starts it.
func New(store *etcdstore.Store, p *pager.Pager, opts Options) *Worker {
	return &Worker{opts: opts.withDefaults(), store: store, pager: p}
}

// Backpressure is a pager.Options.Backpressure policy: no delay up to
// 16×MaxDeltas deltas outstanding (compaction normally keeps them under
// 2×), then 1 ms per MaxDeltas more, at most 100 ms a commit: a write load
// that outruns folding slows down long before etcd's space is at risk.
func (w *Worker) Backpressure(db string, s pager.Stats) time.Duration {
	over := s.Rows - 16*w.opts.MaxDeltas
	if over <= 0 {
		return 0
	}
	return min(time.Duration(1+over/w.opts.MaxDeltas)*time.Millisecond, 100*time.Millisecond)
}

// Run compacts until ctx ends. etcd history compaction runs in a goroutine
// of its own: it can take etcd a while, and folding must not wait for it.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if r := w.opts.HistoryRetention; r > 0 {
		every(ctx, &wg, max(w.opts.Interval, r/4), w.history)
		// NOSPACE recovery (nospace.go) looks more often than the history
		// pass runs, and on its own goroutine: a defragmentation takes a
		// while, and commits wait for the alarm to go.
		every(ctx, &wg, max(w.opts.Interval, noSpaceInterval), w.recoverNoSpace)
	}
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, db := range w.pager.Databases() {
			if ctx.Err() != nil {
				return
			}
			if w.due(db) {
				w.CompactNow(ctx, db)
			}
		}
	}
}

// due reports whether db needs a pass.
func (w *Worker) due(db *pager.Database) bool { return w.dueStats(db.Stats()) }

func (w *Worker) dueStats(s pager.Stats) bool {
	if !s.Writable {
		return false
	}
	if s.ExpiryDue {
		return true
	}
	if s.Rows == 0 {
		return false
	}
	idle := time.Since(time.UnixMilli(s.Head.Timestamp)) >= w.opts.IdleAfter
	return s.Rows >= w.opts.MaxDeltas || s.Usage-s.ShardBytes >= w.opts.MaxDeltaBytes || (idle && s.Head.TXID > s.Folded)
}

// BeforeRelease runs a pass on db if it is due by its number or bytes of
// deltas; the FUSE layer calls it before an idle host gives up the write
// lease, since only the lease holder compacts. Deltas below the thresholds
// stay for the next writer's passes.
func (w *Worker) BeforeRelease(ctx context.Context, db *pager.Database) {
	s := db.Stats()
	if s.Writable && s.Rows > 0 && (s.Rows >= w.opts.MaxDeltas || s.Usage-s.ShardBytes >= w.opts.MaxDeltaBytes) {
		w.CompactNow(ctx, db)
	}
}

// CompactNow runs one full pass on db (which must be writable here).
func (w *Worker) CompactNow(ctx context.Context, db *pager.Database) (pager.CompactResult, error) {
	start := time.Now()
	res, err := db.Compact(ctx, pager.CompactOptions{ShardPages: w.opts.ShardPages})
	w.opts.Metrics.pass(db.Path(), res, time.Since(start), err, db.Stats())
	switch {
	case err == nil && res.Shards > 0:
		w.opts.Logger.Info("compacted", "db", db.Path(), "txid", res.FoldedTXID, "shards", res.Shards,
			"deltas_deleted", res.DeltasDeleted, "freed", res.BytesFreed, "took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, pager.ErrReadOnly), errors.Is(err, pager.ErrFenced):
		// The lease moved on; its new holder compacts.
	case isNoSpace(err):
		w.foldNoSpace(db.Path(), err)
	case err != nil:
		w.opts.Logger.Warn("compaction failed", "db", db.Path(), "err", err)
	}
	return res, err
}

// loadSamples reads the shared revision samples; none when there is no
// SamplesKey, no key yet, or it cannot be read (then the worker goes on
// with its own).
func (w *Worker) loadSamples(ctx context.Context) []sample {
	if w.opts.SamplesKey == "" {
		return nil
	}
	kv, _, err := w.store.Get(ctx, w.opts.SamplesKey, 0)
	if err != nil {
		if !errors.Is(err, etcdstore.ErrNotFound) {
			w.opts.Logger.Warn("read etcd revision samples", "key", w.opts.SamplesKey, "err", err)
		}
		return nil
	}
	var out []sample
	if err := json.Unmarshal(kv.Value, &out); err != nil {
		w.opts.Logger.Warn("etcd revision samples unreadable; starting over", "key", w.opts.SamplesKey, "err", err)
		return nil
	}
	return out
}

// saveSamples writes the samples for the next worker. A race with another
// host's worker loses one of the two writes, which only delays a history
// compaction by a tick.
func (w *Worker) saveSamples(ctx context.Context, samples []sample) {
	if w.opts.SamplesKey == "" {
		return
	}
	b, err := json.Marshal(samples)
	if err == nil {
		_, err = w.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(w.opts.SamplesKey, b)})
	}
	w.mu.Lock()
	first := err != nil && !w.saveFailed
	w.saveFailed = err != nil
	w.mu.Unlock()
	if first {
		// Once per run of failures: a store that refuses writes (read-only
		// credentials) would otherwise log it every tick.
		w.opts.Logger.Warn("save etcd revision samples (history compaction then relies on this worker's uptime)", "key", w.opts.SamplesKey, "err", err)
	}
}

// mergeSamples returns own, shared and now in revision order, one sample
// per revision (the earliest time seen for it), dropping samples from
// another etcd whose revisions are past now's.
func mergeSamples(own, shared []sample, now sample) []sample {
	all := append(append(slices.Clone(own), shared...), now)
	all = slices.DeleteFunc(all, func(s sample) bool { return s.Rev > now.Rev })
	slices.SortFunc(all, func(a, b sample) int {
		if c := cmp.Compare(a.Rev, b.Rev); c != 0 {
			return c
		}
		return a.At.Compare(b.At)
	})
	return slices.CompactFunc(all, func(a, b sample) bool { return a.Rev == b.Rev })
}

// history compacts etcd's history older than the retention window and
// defragments when worth it.
func (w *Worker) history(ctx context.Context) {
	st, err := w.store.Status(ctx)
	if err != nil || len(st) == 0 {
		return
	}
	now := time.Now()
	shared := w.loadSamples(ctx)
	w.mu.Lock()
	w.samples = mergeSamples(w.samples, shared, sample{now, st[0].Revision})
	target := int64(0)
	for len(w.samples) > 0 && now.Sub(w.samples[0].At) >= w.opts.HistoryRetention {
		target = w.samples[0].Rev
		w.samples = w.samples[1:]
	}
	do := target > w.compacted
	keep := slices.Clone(w.samples)
	w.mu.Unlock()
	w.saveSamples(ctx, keep)
	w.opts.Metrics.etcd(st)
	if !do {
		return
	}
	if err := w.store.Compact(ctx, target); err != nil && !errors.Is(err, etcdstore.ErrCompacted) {
		w.opts.Logger.Warn("etcd history compaction failed", "rev", target, "err", err)
		return
	}
	w.mu.Lock()
	w.compacted = target
	w.mu.Unlock()
	w.opts.Metrics.historyCompacted()
	if !w.opts.Defrag {
		return
	}
	for _, m := range st {
		// Defragment when the free space is both large and a good share of
		// the file: it blocks the member while it copies the live data.
		if free := m.DBSize - m.DBSizeInUse; free >= w.opts.DefragMinBytes && free >= m.DBSize/4 {
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := w.store.Defragment(dctx, m.Endpoint)
			cancel()
			if err != nil {
				w.opts.Logger.Warn("etcd defragment failed", "endpoint", m.Endpoint, "err", err)
				continue
			}
			w.opts.Metrics.defragmented()
			w.opts.Logger.Info("etcd defragmented", "endpoint", m.Endpoint, "reclaimed", free)
		}
	}
}

// every runs f every d on a goroutine of wg until ctx ends.
func every(ctx context.Context, wg *sync.WaitGroup, d time.Duration, f func(context.Context)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f(ctx)
			}
		}
	}()
}

func isFenced(err error) bool {
	return errors.Is(err, pager.ErrFenced) || errors.Is(err, pager.ErrReadOnly)
}
