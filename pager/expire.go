package pager

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/kvfs/kvfs/etcdstore"
)

// History's side of a compaction pass (see history.go): what to keep when
// a row empties or a shard version is superseded, when to record an epoch,
// and expiry.

// historyNeeds reports whether the delta txid, whose last live page was
// just folded, stays for history: it does after the oldest epoch (all of
// them before the first).
func (c *compactor) historyNeeds(txid uint64) bool {
	if c.db.p.opts.History <= 0 {
		return false
	}
	return len(c.comp.Epochs) == 0 || txid > c.comp.Epochs[0].TXID
}

// historyNeedsVersion reports whether a shard version folded at txid, now
// superseded, stays for history: an epoch at or after txid names it (it
// was live from txid until now).
func (c *compactor) historyNeedsVersion(txid uint64) bool {
	if c.db.p.opts.History <= 0 {
		return false
	}
	return len(c.comp.Epochs) > 0 && c.comp.Epochs[len(c.comp.Epochs)-1].TXID >= txid
}

// epochDue reports whether a complete pass at head records an epoch: the
// first one, or HistoryEpoch after the last (by the head's commit time or,
// for a database idle since, the clock).
func (c *compactor) epochDue(head Head) bool {
	o := c.db.p.opts
	if o.History <= 0 || head.TXID == 0 {
		return false
	}
	if len(c.comp.Epochs) == 0 {
		return true
	}
	last := c.comp.Epochs[len(c.comp.Epochs)-1]
	since := max(head.Timestamp, c.db.now().UnixMilli()) - last.Timestamp // an idle database too
	return last.TXID < head.TXID && since >= o.HistoryEpoch.Milliseconds()
}

// newEpoch records an epoch at head, whose versions a complete pass has
// just made whole, and returns the put of its key.
func (c *compactor) newEpoch(head Head) etcdstore.Op {
	e := epoch{Timestamp: head.Timestamp, ShardPages: c.comp.ShardPages, Shards: maps.Clone(c.comp.Shards)}
	c.comp.Epochs = append(c.comp.Epochs, epochRef{TXID: head.TXID, Timestamp: head.Timestamp})
	return etcdstore.OpPut(c.db.p.keys.Epoch(c.db.name, head.TXID), marshalJSON(e))
}

// expiryDueLocked reports whether a pass would expire history: history is
// off and some is kept, a second epoch left the window (the first is the
// oldest kept), or the head did.
func (db *Database) expiryDueLocked() bool {
	c, o := db.comp, db.p.opts
	if c == nil {
		return false
	}
	if o.History <= 0 {
		return len(c.Epochs) > 0 || len(c.Kept) > 0 || c.HistoryBytes > 0
	}
	cutoff := db.now().Add(-o.History).UnixMilli()
	if len(c.Epochs) > 1 && c.Epochs[1].Timestamp <= cutoff {
		return true
	}
	// Idle past the window: only the head is in it, yet the history kept
	// goes back to an older epoch (the pass records one at the head).
	return len(c.Epochs) > 0 && c.Epochs[len(c.Epochs)-1].TXID < db.head.TXID && db.head.Timestamp <= cutoff
}

// historyOver reports whether the database keeps more history than
// Options.HistoryMaxBytes (the pass then records an epoch at its head, and
// expire drops every version before it). It has an epoch to go back to.
func (c *compactor) historyOver() bool {
	o := c.db.p.opts
	return o.History > 0 && o.HistoryMaxBytes > 0 && c.comp.HistoryBytes > o.HistoryMaxBytes && len(c.comp.Epochs) > 0
}

// expire deletes the history no version in the window needs, after a
// complete pass at head. The newest epoch committed at least History ago
// becomes the oldest: every version in the window is at or after it, so
// the epochs, shard versions only older epochs name, deltas up to it and
// log rows before it go. With history off, all of it goes (up to head);
// over (historyOver), all of it before the newest epoch.
// Readers pinned at older revisions still read what it deletes.
func (c *compactor) expire(ctx context.Context, head Head, over bool) error {
	db, keys, o := c.db, c.db.p.keys, c.db.p.opts
	var base uint64
	var keep []epochRef
	logEnd := uint64(0) // log rows below this go
	if o.History <= 0 {
		if len(c.comp.Epochs) == 0 && len(c.comp.Kept) == 0 && c.comp.HistoryBytes == 0 {
			return nil
		}
		base, logEnd = head.TXID, head.TXID+1
	} else {
		cutoff := db.now().Add(-o.History).UnixMilli()
		i := -1
		for j, e := range c.comp.Epochs {
			if e.Timestamp <= cutoff {
				i = j
			}
		}
		if over {
			i = len(c.comp.Epochs) - 1
			db.p.log.Warn("history over history.max_bytes: dropping the versions before the current one",
				"db", db.Path(), "history_bytes", c.comp.HistoryBytes, "max_bytes", o.HistoryMaxBytes, "from_txid", c.comp.Epochs[i].TXID)
		}
		if i < 0 || c.comp.Epochs[i].TXID <= c.comp.HistoryFrom {
			return nil
		}
		base, keep, logEnd = c.comp.Epochs[i].TXID, c.comp.Epochs[i:], c.comp.Epochs[i].TXID
	}
	var ops []etcdstore.Op

	// Shard versions no kept epoch names.
	for n, kept := range c.comp.Kept {
		var still []uint64
		for i, t := range kept {
			next, live := c.comp.Shards[n]
			if i+1 < len(kept) {
				next, live = kept[i+1], true
			}
			named := slices.ContainsFunc(keep, func(e epochRef) bool { return t <= e.TXID && (!live || e.TXID < next) })
			if named {
				still = append(still, t)
				continue
			}
			size, err := db.blobSize(ctx, blobKey{inc: c.v.inc, txid: t, shard: true, n: n}, c.v.rev)
			if errors.Is(err, etcdstore.ErrNotFound) {
				// An expiry deleted it, then stopped before its state (the
				// state goes with its last transaction): forget it, its
				// bytes are gone from etcd too.
				db.p.log.Warn("history: a kept shard version is missing; dropping it from the state", "db", db.Path(), "shard", n, "txid", t)
				size, err = 0, nil
			}
			if err != nil {
				return err
			}
			c.comp.HistoryBytes -= size
			ops = append(ops, etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(keys.ShardVersion(db.name, n, t))))
		}
		if len(still) == 0 {
			delete(c.comp.Kept, n)
		} else {
			c.comp.Kept[n] = still
		}
	}

	// Log rows before logEnd, and the delta sizes they know.
	deltaBytes := map[uint64]int64{}
	var logBytes int64
	_, err := db.p.store.Range(ctx, keys.Logs(db.name), etcdstore.RangeOptions{Rev: c.v.rev, End: keys.Log(db.name, base+1)}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindLog {
			return nil
		}
		_, payload, err := etcdstore.DecodeChunk(kv.Value)
		if err != nil {
			return err
		}
		if info.TXID < logEnd {
			logBytes += int64(len(payload))
		}
		if info.Chunk == 0 {
			if r, err := decodeLogRow(info.TXID, payload, true); err == nil {
				deltaBytes[info.TXID] = r.delta
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if logEnd > 0 {
		ops = append(ops, etcdstore.OpDeleteRange(keys.Logs(db.name), keys.Log(db.name, logEnd)))
	}

	// Deltas up to base whose pages are all folded.
	var deltas []uint64
	_, err = db.p.store.Range(ctx, keys.Deltas(db.name), etcdstore.RangeOptions{Rev: c.v.rev, KeysOnly: true, End: keys.Delta(db.name, base+1)}, func(kv *etcdstore.KeyValue) error {
		if info, ok := keys.Parse(kv.Key); ok && info.Kind == etcdstore.KindDelta && info.Chunk == 0 {
			deltas = append(deltas, info.TXID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.v.idx.mu.RLock()
	live := func(t uint64) bool { _, ok := c.v.idx.rows[t]; return ok }
	var gone []uint64
	for _, t := range deltas {
		if !live(t) {
			gone = append(gone, t)
		}
	}
	c.v.idx.mu.RUnlock()
	for _, t := range gone {
		size, ok := deltaBytes[t]
		if !ok {
			if size, err = db.blobSize(ctx, blobKey{inc: c.v.inc, txid: t}, c.v.rev); err != nil {
				return err
			}
		}
		c.comp.HistoryBytes -= size
		ops = append(ops, etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(keys.Delta(db.name, t))))
		c.res.DeltasDeleted++
	}

	// Epochs before base (all of them with history off).
	if o.History <= 0 {
		ops = append(ops, etcdstore.OpDeletePrefix(keys.Epochs(db.name)))
	} else {
		ops = append(ops, etcdstore.OpDeleteRange(keys.Epochs(db.name), keys.Epoch(db.name, base)))
	}
	c.comp.Epochs = slices.Clone(keep)
	c.comp.HistoryFrom = base
	if o.History <= 0 {
		c.comp.HistoryFrom, c.comp.HistoryBytes, c.comp.Kept = 0, 0, nil
	}
	c.comp.HistoryBytes = max(c.comp.HistoryBytes, 0)
	c.comp.FreedBytes += logBytes
	c.res.BytesFreed += logBytes
	if err := c.putState(ctx, ops); err != nil {
		return err
	}
	c.published(c.lastRev)
	return nil
}
