package pager

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
)

// reserveBytes is the part of a request kept free of delta chunks in a
// fast-path commit, for the page index row, the head and the compares.
const reserveBytes = 64 << 10

// deltaBufs recycles the buffers small deltas are encoded into (see
// commitLocked).
var deltaBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledDelta is the largest size guess of a delta encoded into a
// recycled buffer; bigger ones get their own.
const maxPooledDelta = 256 << 10

// putDeltaBuf returns b to deltaBufs unless it grew beyond
// 2*maxPooledDelta, so that one big delta does not stay in memory.
func putDeltaBuf(b *bytes.Buffer) {
	if b.Cap() <= 2*maxPooledDelta {
		deltaBufs.Put(b)
	}
}

// testHookStaged, when set by a test, runs before staged batch i and, with
// i equal to the number of batches, before the head flip.
var testHookStaged func(i int)

// CommitInfo describes a commit that landed.
type CommitInfo struct {
	Head   Head
	Staged bool // written in several transactions before the head flip
	Txns   int  // etcd transactions used
	Bytes  int  // LTX bytes of the delta
}

// Commit makes the transaction durable in etcd and visible: one fenced
// transaction when it fits etcd's limits, otherwise staged transactions and
// a final head flip. It returns only after etcd acknowledged the head.
// Whatever happens the transaction is finished: on error nothing of it is
// visible and the database stays at its last committed head.
//
// Errors: ErrFenced (lease lost), ErrConflict (head moved), *QuotaError,
// ErrInvalidWrite (file size not a whole number of pages), or a store error
// (etcdstore.ErrUnavailable when etcd's answer stayed unknown, ErrNoSpace).
func (tx *Tx) Commit(ctx context.Context) (CommitInfo, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return CommitInfo{}, ErrTxDone
	}
	defer tx.finishLocked()
	if bp := tx.db.p.opts.Backpressure; bp != nil {
		if d := bp(tx.db.name, tx.db.Stats()); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
	}
	start := time.Now()
	info, err := tx.commitLocked(ctx)
	tx.db.p.metrics.commit(tx.db.name, info, time.Since(start).Seconds(), err)
	if err != nil {
		return info, fmt.Errorf("commit %s: %w", tx.db.name, err)
	}
	return info, nil
}

func (tx *Tx) commitLocked(ctx context.Context) (CommitInfo, error) {
	db, keys := tx.db, tx.db.p.keys
	if tx.pageSize == 0 {
		// Nothing written since the file was empty.
		if tx.base.Pages == 0 {
			return CommitInfo{Head: tx.base}, nil
		}
		tx.pageSize = tx.base.PageSize
	}
	ps := int64(tx.pageSize)
	if tx.size%ps != 0 {
		return CommitInfo{}, fmt.Errorf("file size %d is not a whole number of %d-byte pages: %w", tx.size, ps, ErrInvalidWrite)
	}
	pages := uint32(tx.size / ps)
	// Pages exposed by growth and not written read as zeros; store them so
	// that no older copy above a past shrink can come back.
	var zero []byte
	zeroFrame := 0
	for p := tx.low + 1; p <= pages; p++ {
		if !tx.dirty.has(p) && p != lockPgno(tx.pageSize) {
			if zero == nil {
				zero = make([]byte, ps)
				zeroFrame = ltx.FrameSize(zero)
			}
			if err := tx.dirty.put(p, zero, zeroFrame); err != nil {
				return CommitInfo{}, err
			}
		}
	}
	pgnos := tx.dirty.pgnos()
	if len(pgnos) == 0 && pages == tx.base.Pages {
		return CommitInfo{Head: tx.base}, nil
	}
	txid := tx.base.TXID + 1
	head := Head{
		TXID: txid, Generation: tx.fence.Generation(), PageSize: tx.pageSize, Pages: pages,
		UsedBytes: tx.base.UsedBytes, Timestamp: now().UnixMilli(),
	}

	// Encode the delta: in memory while the dirty pages are (a second copy
	// of at most cache.dirty_mem_bytes), or into a spool file for a
	// transaction that spilled (bounded memory, invariant 7).
	var (
		blob  []byte   // the delta, when in memory
		spool *os.File // the delta, when spooled
		size  int64    // its size either way
		row   []byte
	)
	if len(pgnos) > 0 {
		var out io.Writer
		var buf *bytes.Buffer
		var bw *bufio.Writer
		// Pages compress; about half a page each is a fair first size.
		hint := 256 + len(pgnos)*(int(ps)/2+32)
		if tx.dirty.spilled() {
			f, err := os.CreateTemp(db.p.opts.SpoolDir, "kvfs-delta-*")
			if err != nil {
				return CommitInfo{}, fmt.Errorf("spool delta: %w", err)
			}
			os.Remove(f.Name())
			defer f.Close()
			spool, bw = f, bufio.NewWriterSize(f, 1<<20)
			out = bw
		} else if hint <= maxPooledDelta {
			// A small delta is encoded into a recycled buffer and copied
			// out at its exact size: no regrowth when the guess is short,
			// no slack kept in the blob cache.
			buf = deltaBufs.Get().(*bytes.Buffer)
			defer putDeltaBuf(buf)
			buf.Reset()
			buf.Grow(hint)
			out = buf
		} else {
			buf = bytes.NewBuffer(make([]byte, 0, hint))
			out = buf
		}
		w, err := ltx.NewWriter(out, ltx.Header{
			PageSize: tx.pageSize, Commit: pages, MinTXID: ltx.TXID(txid), MaxTXID: ltx.TXID(txid),
			Timestamp: time.UnixMilli(head.Timestamp),
		})
		if err != nil {
			return CommitInfo{}, fmt.Errorf("encode delta: %w", err)
		}
		var scratch []byte // for spooled pages; in-memory ones are not copied
		for _, p := range pgnos {
			page, err := tx.dirty.view(p, &scratch)
			if err != nil {
				return CommitInfo{}, err
			}
			if err := w.WritePage(p, page); err != nil {
				return CommitInfo{}, fmt.Errorf("encode delta page %d: %w", p, err)
			}
		}
		if err := w.Close(); err != nil {
			return CommitInfo{}, fmt.Errorf("encode delta: %w", err)
		}
		if spool != nil {
			if err := bw.Flush(); err != nil {
				return CommitInfo{}, fmt.Errorf("spool delta: %w", err)
			}
			size = w.N()
		} else {
			blob = buf.Bytes()
			if hint <= maxPooledDelta {
				blob = bytes.Clone(blob)
			}
			size = int64(len(blob))
		}
		row = encodePgnos(pgnos)
		head.UsedBytes += size + int64(len(row))
	}
	if used := tx.v.usage() + head.UsedBytes - tx.base.UsedBytes; tx.quota.MaxBytes > 0 && used > tx.quota.MaxBytes && head.UsedBytes > tx.base.UsedBytes {
		return CommitInfo{}, &QuotaError{DB: db.name, What: "bytes", Used: used, Max: tx.quota.MaxBytes}
	}
	if max := tx.quota.MaxPages; max > 0 && int64(pages) > max && pages > tx.base.Pages {
		return CommitInfo{}, &QuotaError{DB: db.name, What: "pages", Used: int64(pages), Max: max}
	}

	fenceCmps, err := tx.fence.Cmps()
	if err != nil {
		return CommitInfo{}, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	headKey := keys.Head(db.name)
	cmps := append(fenceCmps[:len(fenceCmps):len(fenceCmps)], etcdstore.CmpModRevision(headKey, tx.baseRev))

	limits := db.p.store.Limits()
	deltaKey, rowKey := keys.Delta(db.name, txid), keys.PIDX(db.name, txid)
	info := CommitInfo{Head: head, Bytes: int(size)}
	chunkSize := limits.ChunkSize(len(deltaKey)+5) - reserveBytes
	rowChunkSize := limits.ChunkSize(len(rowKey)+5) - reserveBytes
	flip := etcdstore.OpPut(headKey, head.marshal())

	// The fast path: the whole commit in one transaction, when it fits.
	if spool == nil && size <= int64(chunkSize) {
		var all []etcdstore.Op
		if blob != nil {
			// AppendChunkPuts leaves out the delete of chunks beyond the
			// new count, left by an unfinished staged commit of this txid.
			// Only a staged commit of this host that failed can have left
			// such orphans (takeover deletes any other writer's), so the
			// deletes are sent only then: each is a range scan in etcd.
			db.mu.Lock()
			risk := db.orphanRisk
			db.mu.Unlock()
			all = make([]etcdstore.Op, 0, 2+len(row)/max(rowChunkSize, 1)+4)
			var n int
			if all, n, err = etcdstore.AppendChunkPuts(all, deltaKey, blob, chunkSize); err != nil {
				return CommitInfo{}, err
			}
			if risk {
				all = append(all, etcdstore.ChunkTailDelete(deltaKey, n))
			}
			if all, n, err = etcdstore.AppendChunkPuts(all, rowKey, row, rowChunkSize); err != nil {
				return CommitInfo{}, err
			}
			if risk {
				all = append(all, etcdstore.ChunkTailDelete(rowKey, n))
			}
		} else {
			// No delta (a shrink): no orphan of an unfinished commit with
			// this txid may become visible with the head.
			all = append(all,
				etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(deltaKey)),
				etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(rowKey)))
		}
		all = append(all, flip)
		if limits.Fits(cmps, all) {
			info.Txns = 1
			res, err := db.p.store.Txn(ctx, cmps, all)
			rev, err := tx.flipResult(ctx, res, err, cmps, head)
			if err != nil {
				return CommitInfo{}, err
			}
			tx.landed(head, rev, pgnos, blob)
			return info, nil
		}
	}

	// Staged: the delta's chunks (and the page index row, when it does not
	// fit the flip) under the reserved txid, invisible until the head
	// flips; a failure leaves only orphans, deleted at takeover or by
	// this host's next commit.
	info.Staged = true
	st := newStager(ctx, tx, cmps)
	var src io.ReaderAt = spool
	if spool == nil {
		src = bytes.NewReader(blob)
	}
	serr := st.sendChunks(deltaKey, src, size, chunkSize)
	rowOps, err := etcdstore.ChunkOps(rowKey, row, rowChunkSize)
	if err != nil && serr == nil {
		serr = err
	}
	flipOps := append(rowOps, flip)
	if serr == nil && !limits.Fits(cmps, flipOps) {
		serr = st.sendOps(rowOps)
		flipOps = []etcdstore.Op{flip}
	}
	n, werr := st.wait()
	info.Txns += n
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		db.setOrphanRisk(true)
		return CommitInfo{}, werr
	}
	if testHookStaged != nil {
		testHookStaged(st.sent)
	}
	info.Txns++
	res, err := db.p.store.Txn(ctx, cmps, flipOps)
	rev, err := tx.flipResult(ctx, res, err, cmps, head)
	if err != nil {
		return CommitInfo{}, err
	}
	tx.landed(head, rev, pgnos, blob)
	return info, nil
}

// setOrphanRisk records whether a failed staged commit may have left
// chunks of the next txid behind.
func (db *Database) setOrphanRisk(v bool) {
	db.mu.Lock()
	db.orphanRisk = v
	db.mu.Unlock()
}

// landed publishes a commit in this host's state.
func (tx *Tx) landed(head Head, rev int64, pgnos []uint32, blob []byte) {
	db := tx.db
	if len(pgnos) > 0 {
		db.mu.Lock()
		idx := db.idx
		db.mu.Unlock()
		idx.add(head.TXID, pgnos)
		if b, err := ltx.OpenBlob(blob); err == nil {
			db.p.blobs.put(blobKey{inc: tx.v.inc, txid: head.TXID}, b)
		}
	}
	db.mu.Lock()
	if rev > db.headRev {
		db.head, db.headRev = head, rev
		db.viewRev = max(db.viewRev, rev)
	}
	db.orphanRisk = false // this commit overwrote or deleted them
	db.mu.Unlock()
}

// commitFailed turns a failed staging write into the error to report.
func (tx *Tx) commitFailed(_ context.Context, err error, _ []etcdstore.Cmp, _ Head) error {
	if errors.Is(err, etcdstore.ErrCompareFailed) {
		err = tx.db.classifyWriteErr(err, tx.baseRev)
		tx.db.markStale(err)
	}
	return err
}

// flipResult returns the revision of a head flip, or the error to report.
// When etcd's answer was lost it learns whether the flip landed.
func (tx *Tx) flipResult(ctx context.Context, res etcdstore.TxnResult, err error, cmps []etcdstore.Cmp, head Head) (int64, error) {
	if err == nil {
		return res.Revision, nil
	}
	if !errors.Is(err, etcdstore.ErrUnavailable) {
		return 0, tx.commitFailed(ctx, err, cmps, head)
	}
	landed, rev, rerr := tx.resolve(ctx, cmps, head)
	if rerr != nil {
		tx.db.markStale(rerr)
		return 0, fmt.Errorf("%w (and whether it landed is unknown: %v)", err, rerr)
	}
	if landed {
		tx.db.p.log.Info("commit landed despite a lost answer", "db", tx.db.name, "txid", head.TXID)
		return rev, nil
	}
	return 0, err
}

// resolve learns whether a head flip whose answer was lost landed. If the
// head still is the base, it re-puts the base head under the same compares:
// once that succeeds the lost transaction can never apply (its head compare
// is stale), so it did not land.
func (tx *Tx) resolve(ctx context.Context, cmps []etcdstore.Cmp, head Head) (bool, int64, error) {
	db, key := tx.db, tx.db.p.keys.Head(tx.db.name)
	ctx, cancel := context.WithTimeout(ctx, db.p.opts.ResolveTimeout)
	defer cancel()
	var last error
	for backoff := 50 * time.Millisecond; ; backoff = min(backoff*2, time.Second) {
		kv, _, err := db.p.store.Get(ctx, key, 0)
		if err == nil {
			cur, perr := parseHead(kv.Value)
			switch {
			case perr != nil:
				return false, 0, perr
			case kv.ModRevision != tx.baseRev:
				if cur.TXID == head.TXID && cur.Generation == head.Generation && cur.Timestamp == head.Timestamp {
					return true, kv.ModRevision, nil
				}
				return false, 0, nil // someone else moved the head: ours never lands
			}
			_, err = db.p.store.Txn(ctx, cmps, []etcdstore.Op{etcdstore.OpPut(key, kv.Value)})
			if err == nil || errors.Is(err, etcdstore.ErrCompareFailed) && !isFenceFailure(err, key, tx.baseRev) {
				if err == nil {
					return false, 0, nil
				}
				continue // the head moved meanwhile: look again
			}
			if errors.Is(err, etcdstore.ErrCompareFailed) {
				return false, 0, nil // fenced: the lost txn carried the same fence
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return false, 0, fmt.Errorf("resolve commit: %w", last)
		case <-time.After(backoff):
		}
	}
}

// isFenceFailure reports whether a compare failure left the head at baseRev
// (so the fence, not the head, failed).
func isFenceFailure(err error, headKey string, baseRev int64) bool {
	var ce *etcdstore.CompareError
	if !errors.As(err, &ce) {
		return false
	}
	cur := ce.Current[headKey]
	return cur != nil && cur.ModRevision == baseRev
}
