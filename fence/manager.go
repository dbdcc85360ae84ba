package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Lease timing defaults and limits.
const (
	// DefaultTTL is the lease TTL when Options.TTL is zero.
	DefaultTTL = 10 * time.Second
	// MinTTL is etcd's smallest lease TTL with its default election
	// timeout; a shorter Options.TTL is raised to it.
	MinTTL = 2 * time.Second
)

// Retry and cleanup timings.
const (
	// raceBackoff is the first pause before retrying an acquisition that
	// lost a race on the generation key; it doubles up to maxRaceBackoff.
	raceBackoff    = 5 * time.Millisecond
	maxRaceBackoff = 500 * time.Millisecond
	// maxUnavailable is how many ErrUnavailable answers Acquire absorbs
	// before giving up.
	maxUnavailable = 3
	// cleanupTimeout bounds the revokes run after a failed acquisition.
	cleanupTimeout = 5 * time.Second
)

// Options configure a Manager.
type Options struct {
	// Owner identifies this host in fence keys and handoff requests, e.g.
	// the host name or a configured node id. Required; it should be unique
	// among the hosts sharing the etcd prefix.
	Owner string
	// TTL is the etcd lease TTL (default DefaultTTL; at least MinTTL). A
	// holder that dies without releasing blocks other writers for about
	// this long.
	TTL time.Duration
	// SafetyMargin is how long before the TTL runs out, counted on the
	// holder's own clock from the start of its last successful keep-alive,
	// the holder stops handing out compares (default TTL/5). It covers
	// clock-rate drift between the host and etcd.
	SafetyMargin time.Duration
	// KeepAliveInterval is the time between keep-alives (default TTL/4).
	// It is lowered to half of TTL-SafetyMargin if larger.
	KeepAliveInterval time.Duration
	// Clock is the time source (default: the system clock).
	Clock Clock
	// Metrics receives the fence metrics; nil records none.
	Metrics *Metrics
	// Logger receives acquisitions, releases and losses; nil discards them.
	Logger *slog.Logger
	// SkipKeepAlive is a fault seam for tests of the layers above: while it
	// returns true for a database, that database's lease sends no
	// keep-alive, as if the host were frozen or cut off from etcd. The
	// holder's own deadline still runs. Nil in production.
	SkipKeepAlive func(db string) bool
}

// withDefaults fills in the zero fields of o and checks it.
func (o Options) withDefaults() Options {
	if o.Owner == "" {
		panic("fence: Options.Owner is required")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < MinTTL {
		o.TTL = MinTTL
	}
	if o.SafetyMargin <= 0 || o.SafetyMargin >= o.TTL {
		o.SafetyMargin = o.TTL / 5
	}
	if o.KeepAliveInterval <= 0 {
		o.KeepAliveInterval = o.TTL / 4
	}
	if limit := (o.TTL - o.SafetyMargin) / 2; o.KeepAliveInterval > limit {
		o.KeepAliveInterval = limit
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Manager acquires and tracks the write leases of one host. It is safe for
// concurrent use.
type Manager struct {
	store *etcdstore.Store
	keys  etcdstore.Keys
	opts  Options
	log   *slog.Logger

	mu     sync.Mutex
	leases map[*Lease]struct{} // live leases
	closed bool

	stats struct {
		acquired, held, busy, errors, races  atomic.Uint64
		lost, released                       atomic.Uint64
		handoffs, handoffRequests, handedOff atomic.Uint64
	}
}

// Stats are a Manager's counters since it was created.
type Stats struct {
	Held            int    // leases held now
	Acquired        uint64 // successful acquisitions
	Refused         uint64 // acquisitions refused with *HeldError
	Busy            uint64 // AcquireWithHandoff calls that ended with *BusyError
	Errors          uint64 // acquisitions that failed otherwise
	Races           uint64 // acquisition attempts retried after losing a race on the generation key
	Lost            uint64 // leases lost without a release
	Released        uint64 // leases released
	Handoffs        uint64 // leases obtained by asking the holder to hand over
	HandoffRequests uint64 // handoff requests this Manager wrote
	HandedOff       uint64 // handoff requests this Manager's leases received
}

// NewManager returns the lease manager of the host opts.Owner on store,
// with keys built by keys. It panics if opts.Owner is empty.
func NewManager(store *etcdstore.Store, keys etcdstore.Keys, opts Options) *Manager {
	opts = opts.withDefaults()
	return &Manager{
		store:  store,
		keys:   keys,
		opts:   opts,
		log:    opts.Logger.With("owner", opts.Owner),
		leases: make(map[*Lease]struct{}),
	}
}

// Options returns the Manager's options with defaults filled in.
func (m *Manager) Options() Options { return m.opts }

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	held := len(m.leases)
	m.mu.Unlock()
	return Stats{
		Held:            held,
		Acquired:        m.stats.acquired.Load(),
		Refused:         m.stats.held.Load(),
		Busy:            m.stats.busy.Load(),
		Errors:          m.stats.errors.Load(),
		Races:           m.stats.races.Load(),
		Lost:            m.stats.lost.Load(),
		Released:        m.stats.released.Load(),
		Handoffs:        m.stats.handoffs.Load(),
		HandoffRequests: m.stats.handoffRequests.Load(),
		HandedOff:       m.stats.handedOff.Load(),
	}
}

// fenceRecord is the JSON value of a fence key.
type fenceRecord struct {
	Generation uint64            `json:"generation"`
	Owner      string            `json:"owner"`
	Lease      etcdstore.LeaseID `json:"lease"`
}

// handoffRecord is the JSON value of a handoff key.
type handoffRecord struct {
	Owner      string `json:"owner"`      // the requester
	Generation uint64 `json:"generation"` // the holder's generation when asked
}

// Info describes the current holder of a database's fence.
type Info struct {
	Owner      string
	Generation uint64
	Lease      etcdstore.LeaseID
	Revision   int64 // store revision at which the fence was read
}

// Holder returns who holds the database's write lease, or ErrNotHeld.
func (m *Manager) Holder(ctx context.Context, db string) (Info, error) {
	if err := etcdstore.ValidateName(db); err != nil {
		return Info{}, fmt.Errorf("fence holder: %w", err)
	}
	kv, rev, err := m.store.Get(ctx, m.keys.Fence(db), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return Info{Revision: rev}, fmt.Errorf("fence holder %q: %w", db, ErrNotHeld)
	}
	if err != nil {
		return Info{}, fmt.Errorf("fence holder %q: %w", db, err)
	}
	var rec fenceRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Info{}, fmt.Errorf("fence holder %q: fence key holds %q: %w", db, kv.Value, err)
	}
	return Info{Owner: rec.Owner, Generation: rec.Generation, Lease: kv.Lease, Revision: rev}, nil
}

// Acquire makes this host the writer of db: it grants an etcd lease and, in
// one transaction that requires the fence key to be absent, advances the
// database's generation by one and writes the fence key attached to the
// lease. It returns a *HeldError (matching ErrHeld) when another live lease
// holds the fence — including another lease of this Manager. The caller
// runs takeover (orphan cleanup) after Acquire, before its first commit,
// and must Release the lease, or let it be lost, when done.
func (m *Manager) Acquire(ctx context.Context, db string) (*Lease, error) {
	start := m.opts.Clock.Now()
	l, err := m.acquire(ctx, db)
	m.record(db, start, l, err, false)
	return l, err
}

// record counts an acquisition's result.
func (m *Manager) record(db string, start time.Time, l *Lease, err error, handoff bool) {
	var busy *BusyError
	var held *HeldError
	switch {
	case err == nil:
		m.stats.acquired.Add(1)
		m.opts.Metrics.acquired(db, l.Generation(), m.opts.Clock.Now().Sub(start).Seconds())
		if handoff {
			m.stats.handoffs.Add(1)
			m.opts.Metrics.handedOff(db)
		}
		m.log.Info("fence acquired", "db", db, "generation", l.Generation(), "lease", fmt.Sprintf("%x", l.ID()),
			"handoff", handoff, "took", m.opts.Clock.Now().Sub(start))
	case errors.As(err, &busy):
		m.stats.busy.Add(1)
		m.opts.Metrics.failed(db, resultBusy)
		m.log.Info("fence busy", "db", db, "holder", busy.Held.Owner, "generation", busy.Held.Generation)
	case errors.As(err, &held):
		m.stats.held.Add(1)
		m.opts.Metrics.failed(db, resultHeld)
	default:
		m.stats.errors.Add(1)
		m.opts.Metrics.failed(db, resultError)
		m.log.Warn("fence acquire failed", "db", db, "err", err)
	}
}

func (m *Manager) acquire(ctx context.Context, db string) (*Lease, error) {
	if err := etcdstore.ValidateName(db); err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("acquire %q: %w", db, ErrClosed)
	}
	fenceKey, genKey := m.keys.Fence(db), m.keys.Generation(db)

	// A held fence is the common refusal; learn it without granting a lease.
	if kv, rev, err := m.store.Get(ctx, fenceKey, 0); err == nil {
		held := heldError(db, kv, rev)
		if !m.staleOwn(held) {
			return nil, held
		}
		// Revoking the lease deletes the fence key; the compare below
		// then finds it absent (or a racing host's, which wins).
		if err := m.store.Revoke(ctx, held.lease); err != nil && !errors.Is(err, etcdstore.ErrLeaseNotFound) {
			return nil, fmt.Errorf("acquire %q: revoke this owner's stale lease %x: %w", db, held.lease, err)
		}
		m.log.Info("fence: revoked this owner's stale lease", "db", db, "generation", held.Generation, "lease", fmt.Sprintf("%x", held.lease))
	} else if !errors.Is(err, etcdstore.ErrNotFound) {
		return nil, fmt.Errorf("acquire %q: %w", db, err)
	}

	// The lease's TTL starts on the server at some point after this.
	start := m.opts.Clock.Now()
	id, granted, err := m.store.Grant(ctx, m.opts.TTL)
	if err != nil {
		return nil, fmt.Errorf("acquire %q: grant lease: %w", db, err)
	}
	won := false
	defer func() {
		if !won {
			m.revoke(id)
		}
	}()
	ttl := min(granted, m.opts.TTL)

	backoff, unavailable := raceBackoff, 0
	for {
		gen, genRev, err := m.readGeneration(ctx, genKey)
		if err != nil {
			return nil, fmt.Errorf("acquire %q: %w", db, err)
		}
		rec := fenceRecord{Generation: gen + 1, Owner: m.opts.Owner, Lease: id}
		value, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("acquire %q: %w", db, err)
		}
		res, err := m.store.Txn(ctx,
			[]etcdstore.Cmp{etcdstore.CmpAbsent(fenceKey), etcdstore.CmpModRevision(genKey, genRev)},
			[]etcdstore.Op{
				etcdstore.OpPut(genKey, []byte(strconv.FormatUint(rec.Generation, 10))),
				etcdstore.OpPutLease(fenceKey, value, id),
			})
		var ce *etcdstore.CompareError
		switch {
		case err == nil:
			won = true
			return m.start(db, rec, value, ttl, start, res.Revision)
		case errors.As(err, &ce):
			cur := ce.Current[fenceKey]
			if cur == nil {
				// Only the generation moved: a racing acquirer won and its
				// lease is already gone. Retry on the advanced generation.
				m.stats.races.Add(1)
				if err := sleepJitter(ctx, backoff); err != nil {
					return nil, fmt.Errorf("acquire %q: %w", db, err)
				}
				backoff = min(2*backoff, maxRaceBackoff)
				continue
			}
			if cur.Lease == id {
				// An earlier attempt whose answer was lost did land.
				var mine fenceRecord
				if err := json.Unmarshal(cur.Value, &mine); err != nil {
					return nil, fmt.Errorf("acquire %q: own fence key holds %q: %w", db, cur.Value, err)
				}
				won = true
				return m.start(db, mine, cur.Value, ttl, start, cur.ModRevision)
			}
			return nil, heldError(db, cur, ce.Revision)
		case errors.Is(err, etcdstore.ErrUnavailable) && unavailable < maxUnavailable:
			// The outcome is unknown; the next attempt's compare tells.
			unavailable++
			if err := sleepJitter(ctx, backoff); err != nil {
				return nil, fmt.Errorf("acquire %q: %w", db, err)
			}
			backoff = min(2*backoff, maxRaceBackoff)
		default:
			return nil, fmt.Errorf("acquire %q: %w", db, err)
		}
	}
}

// readGeneration returns the last generation handed out for a database and
// the generation key's mod revision (0 when the key is absent).
func (m *Manager) readGeneration(ctx context.Context, genKey string) (uint64, int64, error) {
	kv, _, err := m.store.Get(ctx, genKey, 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read generation: %w", err)
	}
	gen, err := strconv.ParseUint(string(kv.Value), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("read generation: %s holds %q: %w", genKey, kv.Value, err)
	}
	return gen, kv.ModRevision, nil
}

// heldError describes the fence key kv, read at store revision rev.
func heldError(db string, kv *etcdstore.KeyValue, rev int64) *HeldError {
	var rec fenceRecord
	// A value that does not parse still means held; report what we can.
	_ = json.Unmarshal(kv.Value, &rec)
	return &HeldError{DB: db, Owner: rec.Owner, Generation: rec.Generation, revision: rev, fenceRev: kv.ModRevision, lease: rec.Lease}
}

// staleOwn reports whether a held fence is this owner's and on none of its
// live leases: a lease this Manager lost (its keep-alives failed while etcd
// had no quorum, say), which etcd has not expired yet, or one of an earlier
// process under the same owner name. Nobody writes under it, so it may be
// revoked rather than waited for.
func (m *Manager) staleOwn(h *HeldError) bool {
	if h.Owner != m.opts.Owner || h.lease == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for l := range m.leases {
		if l.rec.Lease == h.lease {
			return false
		}
	}
	return true
}

// revoke revokes lease id, best effort, after a failed acquisition; if it
// fails the lease expires on its own since nobody keeps it alive.
func (m *Manager) revoke(id etcdstore.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := m.store.Revoke(ctx, id); err != nil && !errors.Is(err, etcdstore.ErrLeaseNotFound) {
		m.log.Warn("fence: revoke unused lease", "lease", fmt.Sprintf("%x", id), "err", err)
	}
}

// Close releases every lease the Manager holds and refuses further
// acquisitions. It returns the first release error.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	leases := make([]*Lease, 0, len(m.leases))
	for l := range m.leases {
		leases = append(leases, l)
	}
	m.mu.Unlock()
	var first error
	for _, l := range leases {
		if err := l.release(ctx, reasonClosed); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// track and forget maintain the set of live leases;
// track reports false when the Manager was closed meanwhile.
func (m *Manager) track(l *Lease) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.leases[l] = struct{}{}
	return true
}

func (m *Manager) forget(l *Lease) {
	m.mu.Lock()
	delete(m.leases, l)
	m.mu.Unlock()
}

// sleepJitter sleeps for a random time in [d/2, 3d/2), or until ctx ends.
// It uses real time: it spaces out retries, it does not measure leases.
func sleepJitter(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d/2 + rand.N(d))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
