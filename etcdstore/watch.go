package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType says whether a watched key was written or deleted.
type EventType int

// Event types.
const (
	EventPut EventType = iota
	EventDelete
)

// Event is one change of a watched key.
type Event struct {
	Type EventType
	KV   KeyValue // for EventDelete only Key and ModRevision are set
}

// WatchBatch is the set of events of one or more revisions, in revision
// order. Err is set on the last batch before the channel closes when the
// watch failed (ErrCompacted when fromRev was compacted).
type WatchBatch struct {
	Events   []Event
	Revision int64 // the store revision this batch brings the watcher to
	Err      error
}

// Watch delivers, in order, every change to keys with prefix from revision
// fromRev (0 = from now) until ctx ends. The channel closes when the watch
// ends; a final batch with Err set says why when it was not ctx. The watch
// requires a leader, so a partitioned member ends it with ErrUnavailable
// rather than going silent.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchBatch {
	out := make(chan WatchBatch, 16)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithProgressNotify()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, prefix, opts...)
	go func() {
		defer close(out)
		defer cancel()
		send := func(b WatchBatch) bool {
			select {
			case out <- b:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if resp.CompactRevision > 0 {
				send(WatchBatch{Err: fmt.Errorf("watch %s: %w", prefix,
					&CompactedError{Revision: fromRev, CompactRevision: resp.CompactRevision})})
				return
			}
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					send(WatchBatch{Err: classify("watch "+prefix, ctx, ctx, 0, fromRev, err)})
				}
				return
			}
			b := WatchBatch{Revision: resp.Header.Revision, Events: make([]Event, 0, len(resp.Events))}
			for _, ev := range resp.Events {
				e := Event{Type: EventPut, KV: *fromKV(ev.Kv)}
				if ev.Type == clientv3.EventTypeDelete {
					e.Type = EventDelete
				}
				b.Events = append(b.Events, e)
			}
			if !send(b) {
				return
			}
		}
		if ctx.Err() == nil {
			send(WatchBatch{Err: &UnavailableError{Op: "watch " + prefix, Err: fmt.Errorf("watch channel closed")}})
		}
	}()
	return out
}
