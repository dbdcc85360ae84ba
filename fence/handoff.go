package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// AcquireWithHandoff acquires db like Acquire and, when another host holds
// it, asks that host to hand the lease over: it writes the database's
// handoff key (attached to a lease of its own, so the request vanishes if
// this host dies), waits up to wait for the fence to be released or to
// expire, and then acquires with the next generation. If a third host wins
// the race meanwhile, the request is renewed to that host within the same
// wait. When the wait ends with the fence still held it returns a
// *BusyError (matching ErrBusy and ErrHeld). The handoff request is deleted
// before AcquireWithHandoff returns, whatever the outcome. A wait of zero
// or less asks nothing and returns *BusyError at once when the lease is
// held.
func (m *Manager) AcquireWithHandoff(ctx context.Context, db string, wait time.Duration) (*Lease, error) {
	start := m.opts.Clock.Now()
	l, handedOver, err := m.acquireWithHandoff(ctx, db, start, wait)
	m.record(db, start, l, err, handedOver)
	return l, err
}

func (m *Manager) acquireWithHandoff(ctx context.Context, db string, start time.Time, wait time.Duration) (*Lease, bool, error) {
	l, err := m.acquire(ctx, db)
	var held *HeldError
	if !errors.As(err, &held) {
		return l, false, err
	}
	if wait <= 0 {
		return nil, false, &BusyError{Held: held}
	}
	deadline := start.Add(wait)
	id, _, err := m.store.Grant(ctx, m.opts.TTL)
	if err != nil {
		return nil, false, fmt.Errorf("handoff %q: grant request lease: %w", db, err)
	}
	// Revoking the request lease deletes the handoff key, unless another
	// requester has overwritten it since (its put moved the key to its own
	// lease).
	defer m.revoke(id)
	key := m.keys.Handoff(db)
	for {
		if !m.opts.Clock.Now().Before(deadline) {
			return nil, false, &BusyError{Held: held, Waited: m.opts.Clock.Now().Sub(start)}
		}
		req, err := json.Marshal(handoffRecord{Owner: m.opts.Owner, Generation: held.Generation})
		if err != nil {
			return nil, false, fmt.Errorf("handoff %q: %w", db, err)
		}
		// Ask only while the fence is the one seen held; if it changed
		// meanwhile, try to acquire at once.
		res, err := m.store.Txn(ctx,
			[]etcdstore.Cmp{etcdstore.CmpModRevision(m.keys.Fence(db), held.fenceRev)},
			[]etcdstore.Op{etcdstore.OpPutLease(key, req, id)})
		released := errors.Is(err, etcdstore.ErrCompareFailed)
		if err != nil && !released {
			return nil, false, fmt.Errorf("handoff %q: request: %w", db, err)
		}
		if !released {
			m.stats.handoffRequests.Add(1)
			m.log.Info("fence handoff asked", "db", db, "holder", held.Owner, "generation", held.Generation)
			// Watching from just after the request, the watch starts in
			// step with etcd and sees the release at once.
			released, err = m.awaitRelease(ctx, db, res.Revision, deadline, id)
			if err != nil {
				return nil, false, fmt.Errorf("handoff %q: %w", db, err)
			}
		}
		if !released {
			return nil, false, &BusyError{Held: held, Waited: m.opts.Clock.Now().Sub(start)}
		}
		l, err = m.acquire(ctx, db)
		if err == nil {
			return l, true, nil
		}
		if !errors.As(err, &held) {
			return nil, false, err
		}
	}
}

// awaitRelease waits until the fence key changes after store revision rev
// (its holder released it, its lease expired, or a new holder replaced it),
// keeping the request lease id alive meanwhile. It returns false when the
// Manager's clock reaches deadline first.
func (m *Manager) awaitRelease(ctx context.Context, db string, rev int64, deadline time.Time, id etcdstore.LeaseID) (bool, error) {
	clock := m.opts.Clock
	fenceKey := m.keys.Fence(db)
	timeout := clock.After(deadline.Sub(clock.Now()))
	keepAlive := clock.After(m.opts.KeepAliveInterval)
	for {
		released, err := func() (bool, error) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			events := m.store.Watch(wctx, fenceKey, rev+1)
			for {
				select {
				case <-ctx.Done():
					return false, ctx.Err()
				case <-timeout:
					return false, nil
				case <-keepAlive:
					keepAlive = clock.After(m.opts.KeepAliveInterval)
					if _, err := m.store.KeepAliveOnce(ctx, id); errors.Is(err, etcdstore.ErrLeaseNotFound) {
						return false, fmt.Errorf("handoff request lease: %w", err)
					}
				case b, ok := <-events:
					if !ok || b.Err != nil {
						return false, errWatchEnded
					}
					for _, ev := range b.Events {
						if ev.KV.Key == fenceKey {
							return true, nil
						}
					}
				}
			}
		}()
		if !errors.Is(err, errWatchEnded) {
			return released, err
		}
		// The watch broke: look at the fence directly, then watch again.
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(watchRetry):
		}
		kv, now, err := m.store.Get(ctx, fenceKey, 0)
		switch {
		case errors.Is(err, etcdstore.ErrNotFound):
			return true, nil
		case err == nil && kv.ModRevision > rev:
			return true, nil
		case err == nil:
			rev = now
		}
	}
}

// errWatchEnded is awaitRelease's internal signal that its watch broke.
var errWatchEnded = errors.New("watch ended")
