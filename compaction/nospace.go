package compaction

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// # Running out of etcd space
//
// etcd raises its NOSPACE alarm when a write would take a member's backend
// past its quota (--quota-backend-bytes). Until the alarm is disarmed the
// whole cluster refuses every put and lease grant, and serves reads,
// deletes, compaction, defragmentation and disarming. A kvfs commit then
// fails whole with etcdstore.ErrNoSpace (ENOSPC: SQLite says "database or
// disk is full", but "disk I/O error" for a rollback-journal commit, whose
// commit point is the journal's deletion); nothing of it lands.
//
// While the alarm stands, the worker (recoverNoSpace, every
// noSpaceInterval) does by itself only what changes nothing any reader sees
// and cannot make things worse:
//
//  1. It compacts etcd's history up to the retention floor, the newest
//     revision sampled HistoryRetention ago, and never newer: that is the
//     ordinary history pass, unchanged. History inside the window is kept,
//     since a read transaction or time-travel file may be pinned to it;
//     dropping it would fail those readers with ErrCompacted (EIO).
//  2. It defragments a member whose backend is above the disarm limit,
//     one member at a time, re-reading the member's size first (another
//     host's worker may just have done it): when the worker compacted
//     history since the member's last defragmentation (for the first: since
//     its previous look), or when etcd says the bytes in use are within the
//     limit. (Those lag: etcd counts the pages a compaction freed as free
//     only after a later backend commit, and under NOSPACE there may be
//     none.) It does so even when Options.Defrag is off: etcd counts the
//     backend's size against the quota and only defragmentation shrinks it,
//     so without it compaction frees nothing that lets writes resume.
//     Defragmentation changes no key and no revision; it blocks the member
//     while it copies the live data (at most a quota's worth), which under
//     NOSPACE delays reads and costs no write, since etcd takes none.
//  3. It disarms once every member's backend is within the limit, 90% of
//     the quota, and only when NOSPACE is the only alarm. Disarming nearer
//     the quota would let the next few commits raise the alarm again; any
//     other alarm (CORRUPT) is an operator's to clear. etcdstore's
//     DisarmAll clears every alarm, hence the check just before; an alarm
//     raised in between would be cleared too.
//
// The quota is Options.QuotaBackendBytes, capped by the largest backend at
// the worker's first look at the alarm, or that size alone when the option
// is 0: etcd raised the alarm at about that size, so it is near the quota
// etcd enforces. Only near: etcd checks each write against the size of its
// last backend commit (every 100 ms), so a burst of writes can take the
// backend past the quota before the alarm, and compaction under the alarm
// grows the file further (hence the first look, not the largest).
// A quota set too high therefore cannot make the worker disarm early. An
// estimate above etcd's real quota can: the next commits then raise the
// alarm again, and the next episode estimates from the size they reached.
// An estimate too low (a worker whose first look came after someone else
// defragmented) only leaves the disarm to kvfs reclaim.
//
// What the worker does not do is anything that fails a reader or loses
// something: compact history inside the retention window, delete
// data, or disarm while the backend stays above the limit. When the
// history inside the window is what fills etcd, it logs once per episode
// that `kvfs reclaim` would resume writes now: that command compacts all
// history up to the current revision, accepting that readers pinned before
// it fail, then defragments and disarms. Live data (the databases, deltas
// not yet folded, versions history.retention keeps) no compaction frees:
// folding needs puts, which etcd refuses under the alarm, so only deleting
// data or a larger quota helps then. With HistoryRetention 0 (history left
// to another tool) this recovery does not run either.

// noSpaceLimit is the share of the quota a member's backend must be within
// before the worker disarms NOSPACE.
const noSpaceLimit = 0.9

// noSpaceInterval is how often the worker looks at etcd's alarms.
const noSpaceInterval = 2 * time.Second

// noSpaceDefragTimeout bounds one member's defragmentation.
const noSpaceDefragTimeout = 5 * time.Minute

// noSpaceState is what the worker knows of a NOSPACE episode (Worker.mu).
type noSpaceState struct {
	active bool
	since  time.Time
	seen   int64 // largest backend at the episode's first look
	// defragAt is, per member endpoint, Worker.compacted at its last
	// defragmentation in the episode.
	defragAt map[string]int64
	// looked is Worker.compacted at the previous look, alarm or not.
	looked     int64
	stuckNoted bool // "cannot free enough" logged
	otherNoted bool // "other alarms stand" logged
	foldNoted  bool // a fold failing for NOSPACE logged
}

// recoverNoSpace reclaims etcd space and disarms NOSPACE when that is safe;
// see "Running out of etcd space" above.
func (w *Worker) recoverNoSpace(ctx context.Context) {
	log := w.opts.Logger
	alarms, err := w.store.Alarms(ctx)
	if err != nil {
		return // etcd unreachable: the next tick looks again
	}
	w.mu.Lock()
	compacted, looked := w.compacted, w.nospace.looked
	w.nospace.looked = compacted
	w.mu.Unlock()
	noSpace, others := etcdstore.SplitAlarms(alarms)
	if !noSpace {
		w.mu.Lock()
		was := w.nospace.active
		w.nospace = noSpaceState{looked: compacted}
		w.mu.Unlock()
		if was {
			log.Info("etcd NOSPACE alarm cleared elsewhere (another host or an operator): commits resume")
		}
		return
	}
	st, err := w.store.Status(ctx)
	if err != nil || len(st) == 0 {
		return
	}
	w.mu.Lock()
	first := !w.nospace.active
	if first {
		w.nospace = noSpaceState{active: true, since: time.Now(), seen: maxBackend(st), foldNoted: w.nospace.foldNoted, looked: compacted}
	}
	quota := w.nospace.seen
	if q := w.opts.QuotaBackendBytes; q > 0 {
		quota = min(quota, q)
	}
	noteOthers := len(others) > 0 && !w.nospace.otherNoted
	w.nospace.otherNoted = w.nospace.otherNoted || noteOthers
	defragAt := maps.Clone(w.nospace.defragAt)
	w.mu.Unlock()
	limit := int64(noSpaceLimit * float64(quota))
	if first {
		log.Warn("etcd is out of space (NOSPACE alarm): commits fail with ENOSPC until space is reclaimed; compacting history older than the retention, defragmenting and disarming once the backend is within 90% of the quota",
			"backend", maxBackend(st), "quota", quota, "history_retention", w.opts.HistoryRetention)
	}
	if len(others) > 0 {
		if noteOthers {
			log.Warn("etcd raised other alarms besides NOSPACE: not disarming automatically; clear them, then run kvfs reclaim", "alarms", others)
		}
		return
	}
	for _, m := range st {
		last, done := defragAt[m.Endpoint]
		if !done {
			last = looked
		}
		if m.DBSize <= limit || (m.DBSizeInUse > limit && compacted <= last) {
			continue // within the limit, or nothing compacted since its last defragmentation
		}
		// Fresh numbers: another host's worker may have defragmented it.
		cur, ok := memberStatus(ctx, w.store, m.Endpoint)
		if !ok || cur.DBSize <= limit {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, noSpaceDefragTimeout)
		start := time.Now()
		err := w.store.Defragment(dctx, m.Endpoint)
		cancel()
		if err != nil {
			log.Warn("etcd defragment (NOSPACE) failed", "endpoint", m.Endpoint, "err", err)
			continue
		}
		w.mu.Lock()
		if w.nospace.defragAt == nil {
			w.nospace.defragAt = map[string]int64{}
		}
		w.nospace.defragAt[m.Endpoint] = compacted
		w.mu.Unlock()
		w.opts.Metrics.defragmented()
		log.Info("etcd defragmented (NOSPACE)", "endpoint", m.Endpoint, "backend_before", cur.DBSize, "in_use", cur.DBSizeInUse, "took", time.Since(start).Round(time.Millisecond))
	}
	if st, err = w.store.Status(ctx); err != nil || len(st) == 0 {
		return
	}
	if size, inUse := etcdstore.MaxSizes(st); size > limit {
		w.mu.Lock()
		note := !w.nospace.stuckNoted
		w.nospace.stuckNoted = true
		w.mu.Unlock()
		if note {
			log.Warn("etcd NOSPACE: compacting the history older than the retention has not freed enough (yet: the floor moves on with time). To resume writes now run `kvfs reclaim` (compacts all history: open read transactions may fail), or delete data, shorten history.retention or raise etcd's quota",
				"backend", size, "in_use", inUse, "limit", limit, "history_retention", w.opts.HistoryRetention)
		}
		return
	}
	// NOSPACE must still be the only alarm: DisarmAll clears them all.
	if alarms, err = w.store.Alarms(ctx); err != nil {
		return
	}
	if noSpace, others = etcdstore.SplitAlarms(alarms); !noSpace || len(others) > 0 {
		return // cleared meanwhile, or another alarm came: the next tick sees
	}
	if err := w.store.DisarmAll(ctx); err != nil {
		log.Warn("etcd NOSPACE disarm failed", "err", err)
		return
	}
	w.mu.Lock()
	since := w.nospace.since
	w.nospace = noSpaceState{looked: compacted}
	w.mu.Unlock()
	log.Info("etcd NOSPACE alarm disarmed: space reclaimed, commits resume", "backend", maxBackend(st), "limit", limit, "after", time.Since(since).Round(time.Millisecond))
}

// foldNoSpace notes a fold that failed because etcd is out of space, once
// per episode: folding needs puts, so every pass fails until the alarm is
// gone.
func (w *Worker) foldNoSpace(db string, err error) {
	w.mu.Lock()
	note := !w.nospace.foldNoted
	w.nospace.foldNoted = true
	w.mu.Unlock()
	if note {
		w.opts.Logger.Warn("compaction failed: etcd is out of space (NOSPACE); passes resume once it is reclaimed", "db", db, "err", err)
	}
}

// maxBackend returns the largest member's backend: what etcd counts
// against the quota.
func maxBackend(st []etcdstore.MemberStatus) int64 {
	size, _ := etcdstore.MaxSizes(st)
	return size
}

// isNoSpace reports whether err says etcd is out of space.
func isNoSpace(err error) bool { return errors.Is(err, etcdstore.ErrNoSpace) }

// memberStatus returns the status of the member at endpoint.
func memberStatus(ctx context.Context, s *etcdstore.Store, endpoint string) (etcdstore.MemberStatus, bool) {
	st, err := s.Status(ctx)
	if err != nil {
		return etcdstore.MemberStatus{}, false
	}
	for _, m := range st {
		if m.Endpoint == endpoint {
			return m, true
		}
	}
	return etcdstore.MemberStatus{}, false
}
