package fence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Reasons a lease is lost, as FencedError.Reason reports them.
const (
	reasonReleased = "released"
	reasonClosed   = "manager closed"
	reasonExpired  = "lease expired (keep-alive found no lease)"
	reasonDeleted  = "fence key deleted (lease expired or revoked)"
)

// watchRetry is the pause before re-opening a watch that ended.
const watchRetry = 200 * time.Millisecond

// Lease is one host's write lease on one database, from Acquire until it is
// released or lost. Every etcd write of the database carries Cmps; Done
// closes the moment the lease is known lost. Its methods are safe for
// concurrent use.
type Lease struct {
	m          *Manager
	db         string
	rec        fenceRecord
	value      []byte // the fence key's JSON value
	fenceKey   string
	handoffKey string
	ttl        time.Duration // the shorter of the granted and configured TTL
	revision   int64         // store revision of the acquiring transaction

	done    chan struct{} // closed when lost or released
	handoff chan struct{} // closed when another host asks for the lease
	ctx     context.Context
	cancel  context.CancelFunc // stops the lease's goroutines
	wg      sync.WaitGroup
	paused  atomic.Bool // test seam: no keep-alives while set

	mu              sync.Mutex
	deadline        time.Time // own clock: no compares from this time on
	err             *FencedError
	revoked         bool
	handoffOwner    string
	handoffSignaled bool
}

// start returns the Lease for a fence just written and starts its
// keep-alive, deadline and watch goroutines. start is the Manager clock's
// time before the lease was granted, rev the revision of the acquisition.
func (m *Manager) start(db string, rec fenceRecord, value []byte, ttl time.Duration, start time.Time, rev int64) (*Lease, error) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lease{
		m:          m,
		db:         db,
		rec:        rec,
		value:      value,
		fenceKey:   m.keys.Fence(db),
		handoffKey: m.keys.Handoff(db),
		ttl:        ttl,
		revision:   rev,
		done:       make(chan struct{}),
		handoff:    make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		deadline:   start.Add(ttl - m.opts.SafetyMargin),
	}
	var err error
	if !m.opts.Clock.Now().Before(l.deadline) {
		// Acquiring took so long that the lease may already be gone.
		err = &FencedError{DB: db, Generation: rec.Generation, Reason: "acquisition took longer than TTL minus safety margin"}
	} else if !m.track(l) {
		err = ErrClosed
	}
	if err != nil {
		cancel()
		m.revoke(rec.Lease)
		return nil, fmt.Errorf("acquire %q: %w", db, err)
	}
	l.wg.Add(4)
	go l.keepAlive()
	go l.watchdog()
	go l.watchFence()
	go l.watchHandoff()
	return l, nil
}

// DB returns the database name.
func (l *Lease) DB() string { return l.db }

// Generation returns the lease's generation: one more than that of the
// previous holder of the database.
func (l *Lease) Generation() uint64 { return l.rec.Generation }

// Owner returns the owner written in the fence key (Options.Owner).
func (l *Lease) Owner() string { return l.rec.Owner }

// ID returns the etcd lease the fence key is attached to.
func (l *Lease) ID() etcdstore.LeaseID { return l.rec.Lease }

// Revision returns the store revision of the transaction that acquired the
// lease; the holder's first reads at or after it see every earlier commit.
func (l *Lease) Revision() int64 { return l.revision }

// TTL returns the lease TTL the holder's own deadline is computed with.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Deadline returns the time, on the Manager's clock, after which Cmps
// fails unless a keep-alive succeeds first: TTL minus SafetyMargin after
// the start of the last successful keep-alive.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Done returns a channel closed the moment the lease is lost or released:
// a keep-alive found the lease gone, the holder's own deadline passed, the
// fence key was deleted or overwritten, a write was refused by the fence
// (Classify), or Release or Manager.Close was called.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Err returns nil while the lease is held, and afterwards a *FencedError
// (matching ErrFenced) saying why it ended.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		return nil
	}
	return l.err
}

// Cmps returns the compares every write transaction of the database must
// carry while this lease is held: they hold at etcd only while the fence key
// exists, is attached to this lease and names this generation, so a write
// by a holder that lost its lease — even one that took its compares before
// being paused — lands nothing. Cmps returns a *FencedError (ErrFenced) and
// no compares once Done is closed or the holder's own deadline has passed,
// so a holder attempts no write it cannot be sure of. Callers must not rely
// on the number of compares.
func (l *Lease) Cmps() ([]etcdstore.Cmp, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && !l.m.opts.Clock.Now().Before(l.deadline) {
		l.loseLocked(l.deadlineReason(), false)
	}
	if l.err != nil {
		return nil, l.err
	}
	return []etcdstore.Cmp{
		etcdstore.CmpLease(l.fenceKey, l.rec.Lease),
		etcdstore.CmpValue(l.fenceKey, l.value),
	}, nil
}

// Classify interprets err from a transaction that carried this lease's
// Cmps. When the fence is what failed — the *etcdstore.CompareError shows
// the fence key absent or naming another lease — it marks the lease lost
// and returns a *FencedError (matching ErrFenced, not ErrCompareFailed).
// Otherwise, including a compare failure with the fence still ours (the
// caller's own compares, such as the head, failed), it returns err
// unchanged.
func (l *Lease) Classify(err error) error {
	var ce *etcdstore.CompareError
	if !errors.As(err, &ce) {
		return err
	}
	cur, ok := ce.Current[l.fenceKey]
	if !ok {
		return err // the transaction did not carry the fence
	}
	if cur != nil && cur.Lease == l.rec.Lease && bytes.Equal(cur.Value, l.value) {
		return err
	}
	reason := fmt.Sprintf("fence key absent at revision %d", ce.Revision)
	if cur != nil {
		reason = "fence key " + describeFence(cur) + fmt.Sprintf(" at revision %d", ce.Revision)
	}
	l.lose(reason)
	return &FencedError{DB: l.db, Generation: l.rec.Generation, Reason: "write refused: " + reason}
}

// HandoffRequested returns a channel closed when another host asks for
// this lease (writes the database's handoff key). The holder should
// Release at its next idle point — no open write transaction; fence itself
// only signals. The channel stays closed once closed.
func (l *Lease) HandoffRequested() <-chan struct{} { return l.handoff }

// HandoffRequester returns the owner that asked for the lease, or "" if
// nobody has.
func (l *Lease) HandoffRequester() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handoffOwner
}

// Release ends the lease: Done closes and Cmps fails at once, then the
// etcd lease is revoked so the fence key vanishes and another host can
// acquire without waiting for the TTL. Release is idempotent; it returns an
// error only when the revoke failed (etcd unreachable), in which case the
// fence key expires with the TTL and a later Release retries the revoke.
func (l *Lease) Release(ctx context.Context) error { return l.release(ctx, reasonReleased) }

func (l *Lease) release(ctx context.Context, reason string) error {
	l.mu.Lock()
	l.loseLocked(reason, true)
	revoked := l.revoked
	l.mu.Unlock()
	l.wg.Wait()
	if revoked {
		return nil
	}
	err := l.m.store.Revoke(ctx, l.rec.Lease)
	if err != nil && !errors.Is(err, etcdstore.ErrLeaseNotFound) {
		return fmt.Errorf("release %q generation %d: %w", l.db, l.rec.Generation, err)
	}
	l.mu.Lock()
	l.revoked = true
	l.mu.Unlock()
	return nil
}

// pauseKeepAlive stops sending keep-alives (resumeKeepAlive undoes it): a
// test seam freezing the holder's lease renewal while its own deadline
// keeps running.
func (l *Lease) pauseKeepAlive()  { l.paused.Store(true) }
func (l *Lease) resumeKeepAlive() { l.paused.Store(false) }

// lose marks the lease lost for reason, unless it already ended.
func (l *Lease) lose(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loseLocked(reason, false)
}

// loseLocked ends the lease; released says it was given up on purpose.
// l.mu is held.
func (l *Lease) loseLocked(reason string, released bool) {
	if l.err != nil {
		return
	}
	l.err = &FencedError{DB: l.db, Generation: l.rec.Generation, Reason: reason}
	close(l.done)
	l.cancel()
	l.m.forget(l)
	l.m.opts.Metrics.ended(l.db, !released)
	if released {
		l.m.stats.released.Add(1)
		l.m.log.Info("fence released", "db", l.db, "generation", l.rec.Generation, "reason", reason)
	} else {
		l.m.stats.lost.Add(1)
		l.m.log.Warn("fence lost", "db", l.db, "generation", l.rec.Generation, "reason", reason)
	}
}

func (l *Lease) deadlineReason() string {
	return fmt.Sprintf("no successful keep-alive within TTL %s minus safety margin %s (own clock)",
		l.ttl, l.m.opts.SafetyMargin)
}

// extend moves the own deadline after a keep-alive that started at sent
// and renewed the lease for ttl. A keep-alive answered after the deadline
// passed does not revive the lease: Cmps may already have refused.
func (l *Lease) extend(sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if !l.m.opts.Clock.Now().Before(l.deadline) {
		l.loseLocked(l.deadlineReason(), false)
		return
	}
	if d := sent.Add(min(ttl, l.ttl) - l.m.opts.SafetyMargin); d.After(l.deadline) {
		l.deadline = d
	}
}

// keepAlive renews the lease every KeepAliveInterval. Transient failures
// are retried sooner; the watchdog ends the lease if none succeeds in time.
func (l *Lease) keepAlive() {
	defer l.wg.Done()
	o := l.m.opts
	next := o.KeepAliveInterval
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-o.Clock.After(next):
		}
		next = o.KeepAliveInterval
		if l.paused.Load() || (o.SkipKeepAlive != nil && o.SkipKeepAlive(l.db)) {
			continue
		}
		sent := o.Clock.Now()
		ctx, cancel := context.WithTimeout(l.ctx, l.ttl)
		ttl, err := l.m.store.KeepAliveOnce(ctx, l.rec.Lease)
		cancel()
		switch {
		case err == nil:
			l.extend(sent, ttl)
		case errors.Is(err, etcdstore.ErrLeaseNotFound):
			l.lose(reasonExpired)
			return
		case l.ctx.Err() != nil:
			return
		default:
			l.m.log.Warn("fence keep-alive failed", "db", l.db, "generation", l.rec.Generation, "err", err)
			next = max(o.KeepAliveInterval/4, 50*time.Millisecond)
		}
	}
}

// watchdog ends the lease when its own deadline passes.
func (l *Lease) watchdog() {
	defer l.wg.Done()
	clock := l.m.opts.Clock
	for {
		d := l.Deadline().Sub(clock.Now())
		select {
		case <-l.ctx.Done():
			return
		case <-clock.After(d):
		}
		l.mu.Lock()
		if l.err == nil && !clock.Now().Before(l.deadline) {
			l.loseLocked(l.deadlineReason(), false)
		}
		l.mu.Unlock()
	}
}

// watchFence ends the lease when the fence key is deleted or overwritten.
func (l *Lease) watchFence() {
	defer l.wg.Done()
	l.watchKey(l.fenceKey, func(ev etcdstore.Event) bool {
		if ev.Type == etcdstore.EventDelete {
			l.lose(reasonDeleted)
			return false
		}
		if ev.KV.Lease != l.rec.Lease || !bytes.Equal(ev.KV.Value, l.value) {
			l.lose("fence key overwritten: " + describeFence(&ev.KV))
			return false
		}
		return true
	}, func(kv *etcdstore.KeyValue) bool {
		// After a watch gap: is the fence still ours?
		if kv == nil {
			l.lose(reasonDeleted)
			return false
		}
		if kv.Lease != l.rec.Lease || !bytes.Equal(kv.Value, l.value) {
			l.lose("fence key overwritten: " + describeFence(kv))
			return false
		}
		return true
	})
}

// watchHandoff signals HandoffRequested when another host writes the
// handoff key, including a request already present at acquisition.
func (l *Lease) watchHandoff() {
	defer l.wg.Done()
	check := func(kv *etcdstore.KeyValue) bool {
		if kv == nil {
			return true
		}
		var req handoffRecord
		if err := json.Unmarshal(kv.Value, &req); err != nil || req.Owner == "" || req.Owner == l.rec.Owner {
			return true
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.handoffOwner = req.Owner
		if !l.handoffSignaled && l.err == nil {
			l.handoffSignaled = true
			close(l.handoff)
			l.m.stats.handedOff.Add(1)
			l.m.log.Info("fence handoff requested", "db", l.db, "generation", l.rec.Generation, "by", req.Owner)
		}
		return true
	}
	if kv, _, err := l.m.store.Get(l.ctx, l.handoffKey, 0); err == nil {
		check(kv)
	}
	l.watchKey(l.handoffKey, func(ev etcdstore.Event) bool {
		if ev.Type == etcdstore.EventPut {
			check(&ev.KV)
		}
		return true
	}, check)
}

// watchKey calls onEvent for every change of key after the acquisition,
// until the lease ends or a callback returns false. When the watch breaks
// (etcd unreachable, history compacted) it reads the key, calls onResync
// with it (nil when absent), and watches again from there.
func (l *Lease) watchKey(key string, onEvent func(etcdstore.Event) bool, onResync func(*etcdstore.KeyValue) bool) {
	from := l.revision + 1
	for {
		for b := range l.m.store.Watch(l.ctx, key, from) {
			if b.Err != nil {
				if errors.Is(b.Err, etcdstore.ErrCompacted) {
					from = 0 // resync below
				}
				break
			}
			for _, ev := range b.Events {
				if ev.KV.Key != key { // Watch takes a prefix
					continue
				}
				if !onEvent(ev) {
					return
				}
				from = ev.KV.ModRevision + 1
			}
			if len(b.Events) == 0 && b.Revision >= from {
				from = b.Revision + 1 // progress notification
			}
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(watchRetry):
		}
		if from == 0 {
			kv, rev, err := l.m.store.Get(l.ctx, key, 0)
			switch {
			case err == nil:
				if !onResync(kv) {
					return
				}
			case errors.Is(err, etcdstore.ErrNotFound):
				if !onResync(nil) {
					return
				}
			default:
				continue // still unreachable; try again
			}
			from = rev + 1
		}
	}
}

// describeFence renders a fence key for error messages.
func describeFence(kv *etcdstore.KeyValue) string {
	var rec fenceRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return fmt.Sprintf("holds %q (lease %x)", kv.Value, kv.Lease)
	}
	return fmt.Sprintf("held by owner %q generation %d (lease %x)", rec.Owner, rec.Generation, kv.Lease)
}
