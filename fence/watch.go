package fence

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// WatchHolder reports who holds db's write lease: once at the start, then
// after every change of the fence key, until ctx ends (the channel then
// closes). An Info with Lease 0 means nobody holds it. A broken watch is
// re-established after re-reading the fence, so a change is never missed,
// though two changes close together may be reported as the last one. The
// channel keeps only the latest value: a slow reader skips stale reports.
func (m *Manager) WatchHolder(ctx context.Context, db string) <-chan Info {
	out := make(chan Info, 1)
	send := func(info Info) {
		for {
			select {
			case out <- info:
				return
			case <-out: // drop the stale report
			}
		}
	}
	fenceKey := m.keys.Fence(db)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			info, err := m.Holder(ctx, db)
			if err != nil && !errors.Is(err, ErrNotHeld) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(watchRetry):
				}
				continue
			}
			send(info)
			for b := range m.store.Watch(ctx, fenceKey, info.Revision+1) {
				if b.Err != nil {
					break
				}
				for _, ev := range b.Events {
					if ev.KV.Key != fenceKey {
						continue
					}
					info = Info{Revision: ev.KV.ModRevision}
					if ev.Type == etcdstore.EventPut {
						var rec fenceRecord
						if json.Unmarshal(ev.KV.Value, &rec) == nil {
							info = Info{Owner: rec.Owner, Generation: rec.Generation, Lease: ev.KV.Lease, Revision: ev.KV.ModRevision}
						}
					}
					send(info)
				}
			}
		}
	}()
	return out
}
