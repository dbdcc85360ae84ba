package pager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
)

// DefaultShardPages is the shard size used when a database's first
// compaction pass does not say otherwise: 1,024 pages (4 MiB of 4 KiB
// pages) keeps a shard's LTX blob around one to three etcd requests, so
// rewriting a shard stays cheap, while a 1 GiB database has 256 shards.
const DefaultShardPages = 1024

// CompactOptions configure one compaction pass.
type CompactOptions struct {
	// ShardPages is the shard size for a database that has none yet
	// (default DefaultShardPages).
	ShardPages uint32
	// MaxShards bounds the shards folded in this call (0 = all).
	MaxShards int
	// Hook, when set (tests), is called at each step of each shard:
	// "read", "staged", "flipped", "rows", "done".
	Hook func(step string, shard uint32)
}

// CompactResult describes a pass.
type CompactResult struct {
	FoldedTXID     uint64 // every delta up to this txid was folded (when Complete)
	Complete       bool   // no delta ≤ FoldedTXID is left to fold
	Shards         int    // shards rewritten
	DeltasDeleted  int
	RowsRewritten  int
	BytesFreed     int64 // delta and row bytes deleted
	ShardBytes     int64 // shard bytes written minus those replaced
	OrphansDeleted int   // unreferenced shard versions of an interrupted pass
}

// Compact folds the deltas up to the current head into shards, shard by
// shard, under this host's fence (see Acquire), and deletes what no view
// from now on needs. For each shard it writes a new shard version (staged,
// unreferenced), flips the compaction state to it, then removes the shard's
// pages from the page index rows (deleting rows and deltas left empty) and
// deletes the old version. Every step keeps every reader's view intact:
// before the flip nobody reads the new version; between the flip and the
// row updates a page is in both, with the same content; pinned readers read
// old versions at their revision. Every write is fenced; a pass whose lease
// is lost lands nothing more (ErrFenced), and an interrupted pass leaves
// only an unreferenced shard version, which the next pass deletes. Passes
// on one Database run one after the other.
func (db *Database) Compact(ctx context.Context, opts CompactOptions) (CompactResult, error) {
	var res CompactResult
	db.compactMu.Lock()
	defer db.compactMu.Unlock()
	db.mu.Lock()
	f := db.fence
	v := db.viewLocked()
	comp, compRev := db.comp, db.compRev
	db.pinRevs[v.rev]++
	db.mu.Unlock()
	defer db.unpin(v.rev)
	if f == nil {
		return res, fmt.Errorf("compact %s: %w", db.name, ErrReadOnly)
	}
	head := v.head
	if head.TXID < 2 || head.PageSize == 0 {
		return res, nil // a shard's LTX header needs txid ≥ 2; nothing worth folding
	}
	if comp == nil {
		sp := opts.ShardPages
		if sp == 0 {
			sp = DefaultShardPages
		}
		comp = &compState{ShardPages: sp}
	}
	c := &compactor{db: db, f: f, v: v, comp: comp.clone(), compRev: compRev, res: &res, hook: opts.Hook}
	if err := c.deleteOrphans(ctx); err != nil {
		return res, err
	}
	// Shards holding pages of rows up to the head, or rows listing pages
	// past the end (dead copies).
	rows := v.idx.liveRows(head.TXID)
	shards := map[uint32]bool{}
	for _, pgnos := range rows {
		for _, p := range pgnos {
			shards[(p-1)/c.comp.ShardPages] = true
		}
	}
	order := make([]uint32, 0, len(shards))
	for n := range shards {
		order = append(order, n)
	}
	slices.Sort(order)
	if opts.MaxShards > 0 && len(order) > opts.MaxShards {
		order = order[:opts.MaxShards]
	}
	for _, n := range order {
		if err := c.foldShard(ctx, n, rows); err != nil {
			return res, fmt.Errorf("compact %s shard %d: %w", db.name, n, err)
		}
		res.Shards++
	}
	res.FoldedTXID = head.TXID
	res.Complete = len(order) == len(shards)
	if res.Complete {
		var ops []etcdstore.Op
		changed := c.comp.Materialized < head.TXID
		c.comp.Materialized = max(c.comp.Materialized, head.TXID)
		over := c.historyOver()
		if c.epochDue(head) || (over && c.comp.Epochs[len(c.comp.Epochs)-1].TXID < head.TXID) {
			ops = append(ops, c.newEpoch(head))
			changed = true
		}
		if changed {
			if err := c.putState(ctx, ops); err != nil {
				return res, fmt.Errorf("compact %s: %w", db.name, err)
			}
			c.published(c.lastRev)
		}
		if err := c.expire(ctx, head, over); err != nil {
			return res, fmt.Errorf("compact %s: expire history: %w", db.name, err)
		}
	}
	return res, nil
}

// compactor carries one pass's state.
type compactor struct {
	db      *Database
	f       Fence
	v       view
	comp    *compState // the state as this pass has written it
	compRev int64
	res     *CompactResult
	hook    func(string, uint32)
	lastRev int64 // revision of the pass's last transaction
}

func (c *compactor) step(s string, n uint32) {
	if c.hook != nil {
		c.hook(s, n)
	}
}

// txn runs ops fenced, comparing the compaction state this pass last saw,
// and, when putState, writes the pass's state in the same transaction.
func (c *compactor) txn(ctx context.Context, ops []etcdstore.Op, putState bool) (int64, error) {
	cmps, err := c.f.Cmps()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	key := c.db.p.keys.Compaction(c.db.name)
	cmps = append(cmps[:len(cmps):len(cmps)], etcdstore.CmpModRevision(key, c.compRev))
	if putState {
		// A fresh array: ops may be a batch of a larger slice, whose next
		// batch follows it in memory.
		ops = append(ops[:len(ops):len(ops)], etcdstore.OpPut(key, c.comp.marshal()))
	}
	res, err := c.db.p.store.Txn(ctx, cmps, ops)
	if err != nil {
		if errors.Is(err, etcdstore.ErrCompareFailed) {
			var ce *etcdstore.CompareError
			if errors.As(err, &ce) {
				if cur := ce.Current[key]; (cur == nil && c.compRev == 0) || (cur != nil && cur.ModRevision == c.compRev) {
					return 0, fmt.Errorf("%w: %w", ErrFenced, err)
				}
			}
			return 0, fmt.Errorf("%w: compaction state moved: %w", ErrConflict, err)
		}
		return 0, err
	}
	if putState {
		c.compRev = res.Revision
	}
	return res.Revision, nil
}

// putState writes the pass's state with ops, in as many transactions as
// the limits need; the state goes with the last one. The caller publishes
// the result in this host's state (published) once its in-memory page index
// matches, so no view of this host sees a revision it has not applied.
func (c *compactor) putState(ctx context.Context, ops []etcdstore.Op) error {
	limits := c.db.p.store.Limits()
	stateOp := etcdstore.OpPut(c.db.p.keys.Compaction(c.db.name), c.comp.marshal())
	batches, err := limits.Batches(nil, append(ops, stateOp))
	if err != nil {
		return err
	}
	for i, b := range batches {
		last := i == len(batches)-1
		if last {
			b = b[:len(b)-1] // txn appends the state itself
		}
		rev, err := c.txn(ctx, b, last)
		if err != nil {
			return err
		}
		c.lastRev = rev
	}
	return nil
}

// published makes this host's state reflect what the pass wrote.
func (c *compactor) published(rev int64) {
	db := c.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if c.compRev > db.compRev {
		db.comp, db.compRev = c.comp.clone(), c.compRev
	}
	db.viewRev = max(db.viewRev, rev)
}

// deleteOrphans deletes shard versions the state does not reference (left
// by a pass that stopped between staging and flipping).
func (c *compactor) deleteOrphans(ctx context.Context) error {
	keys := c.db.p.keys
	var ops []etcdstore.Op
	seen := map[string]bool{}
	_, err := c.db.p.store.Range(ctx, keys.Shards(c.db.name), etcdstore.RangeOptions{KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindShard {
			return nil
		}
		if c.comp.keeps(info.Shard, info.TXID) {
			return nil
		}
		base := keys.ShardVersion(c.db.name, info.Shard, info.TXID)
		if !seen[base] {
			seen[base] = true
			ops = append(ops, etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(base)))
		}
		return nil
	})
	if err != nil || len(ops) == 0 {
		return err
	}
	batches, err := c.db.p.store.Limits().Batches(nil, ops)
	if err != nil {
		return err
	}
	for _, b := range batches {
		if _, err := c.txn(ctx, b, false); err != nil {
			return err
		}
	}
	c.res.OrphansDeleted += len(ops)
	return nil
}

// foldShard writes shard n as of the pass's view and updates the rows.
func (c *compactor) foldShard(ctx context.Context, n uint32, rows map[uint64][]uint32) error {
	db, head, sp := c.db, c.v.head, c.comp.ShardPages
	lo, hi := n*sp+1, (n+1)*sp
	last := min(hi, head.Pages)

	// The shard's pages as of the view: its old version and the deltas.
	var blob []byte
	if lo <= last {
		var buf bytes.Buffer
		w, err := ltx.NewWriter(&buf, ltx.Header{
			PageSize: head.PageSize, Commit: head.Pages,
			MinTXID: ltx.TXID(head.TXID), MaxTXID: ltx.TXID(head.TXID), Timestamp: time.UnixMilli(head.Timestamp),
		})
		if err != nil {
			return err
		}
		page := make([]byte, head.PageSize)
		for p := lo; p <= last; p++ {
			if p == lockPgno(head.PageSize) {
				continue
			}
			if err := db.readPage(ctx, c.v, p, page); err != nil {
				return err
			}
			if err := w.WritePage(p, page); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		blob = buf.Bytes()
	}
	c.step("read", n)

	// Stage the new version (unreferenced until the flip).
	keys, limits := db.p.keys, db.p.store.Limits()
	base := keys.ShardVersion(db.name, n, head.TXID)
	old, hadOld := c.comp.Shards[n]
	if blob != nil && (!hadOld || old != head.TXID) {
		ops, err := etcdstore.ChunkOps(base, blob, limits.ChunkSize(len(base)+5)-reserveBytes)
		if err != nil {
			return err
		}
		batches, err := limits.Batches(nil, ops)
		if err != nil {
			return err
		}
		for _, b := range batches {
			if _, err := c.txn(ctx, b, false); err != nil {
				return err
			}
		}
	}
	c.step("staged", n)

	// Flip the state to the new version.
	oldBytes := int64(0)
	if hadOld {
		size, err := db.blobSize(ctx, blobKey{inc: c.v.inc, txid: old, shard: true, n: n}, c.v.rev)
		if err != nil {
			return err
		}
		oldBytes = size
	}
	if blob != nil {
		c.comp.Shards[n] = head.TXID
	} else {
		delete(c.comp.Shards, n)
	}
	// History keeps the old version while an epoch names it.
	keepOld := hadOld && old != head.TXID && c.historyNeedsVersion(old)
	if keepOld {
		c.comp.Kept[n] = append(c.comp.Kept[n], old)
		c.comp.HistoryBytes += oldBytes
	}
	c.comp.ShardBytes += int64(len(blob)) - oldBytes
	c.res.ShardBytes += int64(len(blob)) - oldBytes
	if err := c.putState(ctx, nil); err != nil {
		return err
	}
	c.published(c.lastRev)
	c.step("flipped", n)

	// Drop the shard's pages (and pages past the end) from the rows.
	var ops []etcdstore.Op
	var freed int64
	for _, txid := range sortedTxids(rows) {
		pgnos := rows[txid]
		keep := make([]uint32, 0, len(pgnos))
		for _, p := range pgnos {
			if (p < lo || p > hi) && p <= head.Pages {
				keep = append(keep, p)
			}
		}
		if len(keep) == len(pgnos) {
			continue
		}
		oldRow := int64(len(encodePgnos(pgnos)))
		rowKey := keys.PIDX(db.name, txid)
		if len(keep) == 0 {
			size, err := db.blobSize(ctx, blobKey{inc: c.v.inc, txid: txid}, c.v.rev)
			if err != nil {
				return err
			}
			ops = append(ops, etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(rowKey)))
			if c.historyNeeds(txid) {
				c.comp.HistoryBytes += size // the delta stays for history
			} else {
				ops = append(ops, etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(keys.Delta(db.name, txid))))
				c.res.DeltasDeleted++
			}
			freed += oldRow + size
		} else {
			row := encodePgnos(keep)
			rops, err := etcdstore.ChunkOps(rowKey, row, limits.ChunkSize(len(rowKey)+5)-reserveBytes)
			if err != nil {
				return err
			}
			ops = append(ops, rops...)
			freed += oldRow - int64(len(row))
			c.res.RowsRewritten++
		}
		rows[txid] = keep
	}
	if len(ops) > 0 {
		c.comp.FreedBytes += freed
		c.res.BytesFreed += freed
		if err := c.putState(ctx, ops); err != nil {
			return err
		}
		for txid, keep := range rows {
			c.v.idx.setRow(txid, keep, c.lastRev)
		}
		db.mu.Lock()
		db.prune = true
		db.mu.Unlock()
		c.published(c.lastRev)
	}
	c.step("rows", n)

	// The old version is no longer referenced (unless history keeps it).
	if hadOld && old != head.TXID && !keepOld {
		if _, err := c.txn(ctx, []etcdstore.Op{etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(keys.ShardVersion(db.name, n, old)))}, false); err != nil {
			return err
		}
	}
	c.step("done", n)
	return nil
}

func sortedTxids(rows map[uint64][]uint32) []uint64 {
	out := make([]uint64, 0, len(rows))
	for t := range rows {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// blobSize returns a blob's stored payload bytes.
func (db *Database) blobSize(ctx context.Context, k blobKey, rev int64) (int64, error) {
	if b, ok := db.p.blobs.get(k); ok {
		return int64(b.Size()), nil
	}
	base := db.blobBase(k)
	info, first, err := db.p.store.GetChunk(ctx, base, 0, rev)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", k, err)
	}
	if info.Count == 1 {
		return int64(len(first)), nil
	}
	_, last, err := db.p.store.GetChunk(ctx, base, info.Count-1, rev)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", k, err)
	}
	return int64(info.Count-1)*int64(info.Size) + int64(len(last)), nil
}
