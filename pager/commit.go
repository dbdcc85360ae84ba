package pager

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
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
	tx.db.p.metrics.commit(tx.db.Path(), info, time.Since(start).Seconds(), err)
	if err != nil {
		return info, fmt.Errorf("commit %s: %w", tx.db.name, err)
	}
	return info, nil
}

// CommitAll commits the transactions of several databases of one Pager
// atomically: one etcd transaction, comparing every database's fence and
// head, flips every head (after staging the deltas when they do not all
// fit one request), so that every reader, on any host, sees all of the new
// versions or none. It returns each transaction's CommitInfo, in order.
// Whatever happens every transaction is finished; on error none of them is
// visible. Errors are Commit's, naming the database at fault where known;
// two transactions of one database, or of two Pagers, are refused.
func CommitAll(ctx context.Context, txs ...*Tx) ([]CommitInfo, error) {
	infos := make([]CommitInfo, len(txs))
	if len(txs) == 0 {
		return infos, nil
	}
	// Lock in name order: two CommitAll over the same databases cannot
	// deadlock.
	order := make([]int, len(txs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return txs[order[i]].db.name < txs[order[j]].db.name })
	for k, i := range order {
		tx := txs[i]
		if k > 0 && tx.db.name == txs[order[k-1]].db.name {
			return nil, fmt.Errorf("commit %s: two transactions of one database: %w", tx.db.name, ErrInvalidWrite)
		}
		if tx.db.p != txs[0].db.p {
			return nil, fmt.Errorf("commit %s: databases of two pagers: %w", tx.db.name, ErrInvalidWrite)
		}
	}
	for _, i := range order {
		txs[i].mu.Lock()
		defer txs[i].mu.Unlock()
	}
	for _, tx := range txs {
		if tx.done {
			return nil, fmt.Errorf("commit %s: %w", tx.db.name, ErrTxDone)
		}
	}
	for _, tx := range txs {
		defer tx.finishLocked()
	}
	start := time.Now()
	var pcs []*pending
	at := make([]int, 0, len(txs)) // at[k]: the index in txs of pcs[k]
	var errAt *Tx
	var err error
	for i, tx := range txs {
		var pc *pending
		if pc, infos[i], err = tx.prepare(ctx); err != nil {
			errAt = tx
			break
		}
		if pc != nil {
			defer pc.close()
			pcs, at = append(pcs, pc), append(at, i)
		}
	}
	if len(pcs) > 1 {
		// Every head names the group, so that hosts following the commit
		// apply it to all of its databases at once.
		names := make([]string, len(pcs))
		for i, pc := range pcs {
			names[i] = pc.tx.db.name
		}
		sort.Strings(names)
		for _, pc := range pcs {
			pc.head.Group = groupOf(names)
			pc.info.Head = pc.head
			pc.flip = etcdstore.OpPut(pc.tx.db.p.keys.Head(pc.tx.db.name), pc.head.marshal())
		}
	}
	if err == nil && len(pcs) > 0 {
		err = send(ctx, pcs)
	}
	for k, pc := range pcs {
		infos[at[k]] = pc.info
	}
	for i, tx := range txs {
		if err != nil {
			infos[i] = CommitInfo{}
		}
		tx.db.p.metrics.commit(tx.db.Path(), infos[i], time.Since(start).Seconds(), err)
	}
	if err != nil {
		if errAt != nil {
			return nil, fmt.Errorf("commit %s: %w", errAt.db.name, err)
		}
		return nil, fmt.Errorf("commit %d databases: %w", len(txs), err)
	}
	return infos, nil
}

// pending is a transaction ready to send: its delta encoded, its keys and
// compares known. send lands one or several (CommitAll).
type pending struct {
	tx    *Tx
	head  Head
	info  CommitInfo
	pgnos []uint32
	blob  []byte   // the delta, when in memory
	spool *os.File // the delta, when spooled
	size  int64    // its size either way
	row   []byte   // the page index row (nil without a delta)
	log   []byte   // the log row (nil without history)
	cmps  []etcdstore.Cmp
	flip  etcdstore.Op

	deltaKey, rowKey, logKey string
	chunkSize, rowChunkSize  int
}

// close releases the spooled delta.
func (pc *pending) close() {
	if pc.spool != nil {
		pc.spool.Close()
	}
}

func (tx *Tx) commitLocked(ctx context.Context) (CommitInfo, error) {
	pc, info, err := tx.prepare(ctx)
	if err != nil || pc == nil {
		return info, err
	}
	defer pc.close()
	if err := send(ctx, []*pending{pc}); err != nil {
		return CommitInfo{}, err
	}
	return pc.info, nil
}

// prepare checks the transaction against the quota, encodes its delta and
// returns it ready to send; nil when there is nothing to commit (info then
// is the unchanged head).
func (tx *Tx) prepare(ctx context.Context) (*pending, CommitInfo, error) {
	db, keys := tx.db, tx.db.p.keys
	if tx.pageSize == 0 {
		// Nothing written since the file was empty.
		if tx.base.Pages == 0 {
			return nil, CommitInfo{Head: tx.base}, nil
		}
		tx.pageSize = tx.base.PageSize
	}
	ps := int64(tx.pageSize)
	plain, err := tx.plainLocked(ctx)
	if err != nil {
		return nil, CommitInfo{}, err
	}
	pages := uint32((tx.size + ps - 1) / ps)
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
				return nil, CommitInfo{}, err
			}
		}
	}
	pgnos := tx.dirty.pgnos()
	if len(pgnos) == 0 && pages == tx.base.Pages && tx.size == tx.base.Size() && plain == tx.base.Plain {
		return nil, CommitInfo{Head: tx.base}, nil
	}
	txid := tx.base.TXID + 1
	head := Head{
		TXID: txid, Generation: tx.fence.Generation(), PageSize: tx.pageSize, Pages: pages,
		UsedBytes: tx.base.UsedBytes, Timestamp: db.now().UnixMilli(),
	}
	if plain {
		head.Plain, head.Bytes = true, tx.size
	}

	// Encode the delta: in memory while the dirty pages are (a second copy
	// of at most cache.dirty_mem_bytes), or into a spool file for a
	// transaction that spilled (bounded memory, invariant 7).
	ok := false // the spool, if any, outlives prepare
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
				return nil, CommitInfo{}, fmt.Errorf("spool delta: %w", err)
			}
			os.Remove(f.Name())
			spool, bw = f, bufio.NewWriterSize(f, 1<<20)
			defer func() {
				if !ok {
					f.Close()
				}
			}()
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
			return nil, CommitInfo{}, fmt.Errorf("encode delta: %w", err)
		}
		var scratch []byte // for spooled pages; in-memory ones are not copied
		for _, p := range pgnos {
			page, err := tx.dirty.view(p, &scratch)
			if err != nil {
				return nil, CommitInfo{}, err
			}
			if err := w.WritePage(p, page); err != nil {
				return nil, CommitInfo{}, fmt.Errorf("encode delta page %d: %w", p, err)
			}
		}
		if err := w.Close(); err != nil {
			return nil, CommitInfo{}, fmt.Errorf("encode delta: %w", err)
		}
		if spool != nil {
			if err := bw.Flush(); err != nil {
				return nil, CommitInfo{}, fmt.Errorf("spool delta: %w", err)
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
	var logRow []byte
	if db.p.opts.History > 0 {
		logRow = encodeLogRow(head, size, pgnos)
		head.UsedBytes += int64(len(logRow))
	}
	if used := tx.v.usage() + head.UsedBytes - tx.base.UsedBytes; tx.quota.MaxBytes > 0 && used > tx.quota.MaxBytes && head.UsedBytes > tx.base.UsedBytes {
		return nil, CommitInfo{}, &QuotaError{DB: db.name, What: "bytes", Used: used, Max: tx.quota.MaxBytes}
	}
	if max := tx.quota.MaxPages; max > 0 && int64(pages) > max && pages > tx.base.Pages {
		return nil, CommitInfo{}, &QuotaError{DB: db.name, What: "pages", Used: int64(pages), Max: max}
	}

	fenceCmps, err := tx.fence.Cmps()
	if err != nil {
		return nil, CommitInfo{}, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	headKey := keys.Head(db.name)
	cmps := append(fenceCmps[:len(fenceCmps):len(fenceCmps)], etcdstore.CmpModRevision(headKey, tx.baseRev))

	limits := db.p.store.Limits()
	deltaKey, rowKey := keys.Delta(db.name, txid), keys.PIDX(db.name, txid)
	chunkSize := limits.ChunkSize(len(deltaKey)+5) - reserveBytes
	rowChunkSize := limits.ChunkSize(len(rowKey)+5) - reserveBytes
	flip := etcdstore.OpPut(headKey, head.marshal())

	ok = true
	return &pending{
		tx: tx, head: head, info: CommitInfo{Head: head, Bytes: int(size)}, pgnos: pgnos,
		blob: blob, spool: spool, size: size, row: row, log: logRow, cmps: cmps, flip: flip,
		deltaKey: deltaKey, rowKey: rowKey, logKey: keys.Log(db.name, txid), chunkSize: chunkSize, rowChunkSize: rowChunkSize,
	}, CommitInfo{}, nil
}

// fastOps returns the operations of pc's commit in one transaction, flip
// included, or nil when its delta takes more than one chunk or a spool.
func (pc *pending) fastOps() ([]etcdstore.Op, error) {
	if pc.spool != nil || pc.size > int64(pc.chunkSize) {
		return nil, nil
	}
	db := pc.tx.db
	if pc.blob == nil {
		ops, err := pc.logOps(pc.orphanDeletes())
		if err != nil {
			return nil, err
		}
		return append(ops, pc.flip), nil
	}
	// AppendChunkPuts leaves out the delete of chunks beyond the new
	// count, left by an unfinished staged commit of this txid. Only a
	// staged commit of this host that failed can have left such orphans
	// (takeover deletes any other writer's), so the deletes are sent only
	// then: each is a range scan in etcd.
	db.mu.Lock()
	risk := db.orphanRisk
	db.mu.Unlock()
	all := make([]etcdstore.Op, 0, 2+len(pc.row)/max(pc.rowChunkSize, 1)+4)
	var n int
	var err error
	if all, n, err = etcdstore.AppendChunkPuts(all, pc.deltaKey, pc.blob, pc.chunkSize); err != nil {
		return nil, err
	}
	if risk {
		all = append(all, etcdstore.ChunkTailDelete(pc.deltaKey, n))
	}
	if all, n, err = etcdstore.AppendChunkPuts(all, pc.rowKey, pc.row, pc.rowChunkSize); err != nil {
		return nil, err
	}
	if risk {
		all = append(all, etcdstore.ChunkTailDelete(pc.rowKey, n))
	}
	if pc.log != nil {
		if all, n, err = etcdstore.AppendChunkPuts(all, pc.logKey, pc.log, pc.rowChunkSize); err != nil {
			return nil, err
		}
		if risk {
			all = append(all, etcdstore.ChunkTailDelete(pc.logKey, n))
		}
	}
	return append(all, pc.flip), nil
}

// logOps appends the puts of pc's log row to ops, with the delete of any
// longer orphan's chunks.
func (pc *pending) logOps(ops []etcdstore.Op) ([]etcdstore.Op, error) {
	if pc.log == nil {
		return ops, nil
	}
	lops, err := etcdstore.ChunkOps(pc.logKey, pc.log, pc.rowChunkSize)
	if err != nil {
		return nil, err
	}
	return append(ops, lops...), nil
}

// orphanDeletes returns, for a commit without a delta (a shrink), the
// deletes that keep any orphan of an unfinished commit with its txid from
// becoming visible with the head.
func (pc *pending) orphanDeletes() []etcdstore.Op {
	return []etcdstore.Op{
		etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(pc.deltaKey)),
		etcdstore.OpDeletePrefix(etcdstore.ChunkPrefix(pc.rowKey)),
	}
}

// send lands pcs (of distinct databases of one Pager) in etcd and
// publishes them on this host. When everything fits one transaction, that
// is the commit. Otherwise the deltas' chunks (and page index rows that do
// not fit the flip) are staged under their reserved txids, invisible until
// the heads flip, and one last transaction flips every head: either way
// one etcd transaction, comparing every fence and head, makes all of them
// visible or none. A failure leaves only orphans, deleted at takeover or by
// this host's next commit of the database.
func send(ctx context.Context, pcs []*pending) error {
	p := pcs[0].tx.db.p
	limits := p.store.Limits()
	cmps := pcs[0].cmps // every commit: no copy for one database
	if len(pcs) > 1 {
		cmps = nil
		for _, pc := range pcs {
			cmps = append(cmps, pc.cmps...)
		}
	}
	var all []etcdstore.Op
	for _, pc := range pcs {
		ops, err := pc.fastOps()
		if err != nil {
			return err
		}
		if ops == nil {
			all = nil
			break
		}
		all = append(all, ops...)
	}
	if all != nil && limits.Fits(cmps, all) {
		for _, pc := range pcs {
			pc.info.Txns = 1
		}
		res, err := p.store.Txn(ctx, cmps, all)
		rev, err := flipResult(ctx, pcs, res, err, cmps)
		if err != nil {
			return err
		}
		for _, pc := range pcs {
			pc.tx.landed(pc.head, rev, pc.pgnos, pc.blob)
		}
		return nil
	}

	st := newStager(ctx, p.store, cmps, func(err error) error { return commitFailed(pcs, err) })
	var flipOps, rowOps []etcdstore.Op
	var serr error
	for _, pc := range pcs {
		pc.info.Staged = true
		if pc.blob != nil || pc.spool != nil {
			var src io.ReaderAt = pc.spool
			if pc.spool == nil {
				src = bytes.NewReader(pc.blob)
			}
			if serr = st.sendChunks(pc.deltaKey, src, pc.size, pc.chunkSize); serr != nil {
				break
			}
			ops, err := etcdstore.ChunkOps(pc.rowKey, pc.row, pc.rowChunkSize)
			if err == nil {
				ops, err = pc.logOps(ops)
			}
			if err != nil {
				serr = err
				break
			}
			rowOps = append(rowOps, ops...)
		} else {
			ops, err := pc.logOps(pc.orphanDeletes())
			if err != nil {
				serr = err
				break
			}
			flipOps = append(flipOps, ops...)
		}
		flipOps = append(flipOps, pc.flip)
	}
	if serr == nil {
		if limits.Fits(cmps, append(flipOps, rowOps...)) {
			flipOps = append(flipOps, rowOps...)
		} else {
			serr = st.sendOps(rowOps)
		}
	}
	n, werr := st.wait()
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		for _, pc := range pcs {
			pc.tx.db.setOrphanRisk(true)
		}
		return werr
	}
	if testHookStaged != nil {
		testHookStaged(st.sent)
	}
	if !limits.Fits(cmps, flipOps) {
		return fmt.Errorf("flip %d heads: %w", len(pcs), &etcdstore.LimitError{Bytes: etcdstore.RequestSize(cmps, flipOps), Ops: len(flipOps), Limits: limits})
	}
	res, err := p.store.Txn(ctx, cmps, flipOps)
	rev, err := flipResult(ctx, pcs, res, err, cmps)
	if err != nil {
		return err
	}
	for _, pc := range pcs {
		pc.info.Txns = n + 1
		pc.tx.landed(pc.head, rev, pc.pgnos, pc.blob)
	}
	return nil
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
		// A delta larger than a quarter of the blob cache is left out: it
		// would evict most of what readers use (its pages stay readable
		// chunk by chunk, and compaction folds it soon).
		if int64(len(blob)) <= db.p.blobs.max/4 {
			if b, err := ltx.OpenBlob(blob); err == nil {
				db.p.blobs.put(blobKey{inc: tx.v.inc, txid: head.TXID}, b)
			}
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

// commitFailed turns a failed write of pcs' commit into the error to
// report. A failed compare is charged to the first database whose head
// moved (ErrConflict, or ErrFenced when another generation moved it); with
// every head in place a fence failed (ErrFenced). Every database's state is
// then re-read before its next use.
func commitFailed(pcs []*pending, err error) error {
	if !errors.Is(err, etcdstore.ErrCompareFailed) {
		return err
	}
	out := fmt.Errorf("%w: %w", ErrFenced, err)
	var ce *etcdstore.CompareError
	if errors.As(err, &ce) {
		for _, pc := range pcs {
			db := pc.tx.db
			if cur := ce.Current[db.p.keys.Head(db.name)]; cur == nil || cur.ModRevision != pc.tx.baseRev || len(pcs) == 1 {
				out = db.classifyWriteErr(err, pc.tx.baseRev)
				if len(pcs) > 1 {
					out = fmt.Errorf("%s: %w", db.name, out)
				}
				break
			}
		}
	}
	for _, pc := range pcs {
		pc.tx.db.markStale(out)
	}
	return out
}

// flipResult returns the revision of a head flip, or the error to report.
// When etcd's answer was lost it learns whether the flip landed, from the
// first database's head: the flip wrote all of them or none.
func flipResult(ctx context.Context, pcs []*pending, res etcdstore.TxnResult, err error, cmps []etcdstore.Cmp) (int64, error) {
	if err == nil {
		return res.Revision, nil
	}
	if !errors.Is(err, etcdstore.ErrUnavailable) {
		return 0, commitFailed(pcs, err)
	}
	tx, head := pcs[0].tx, pcs[0].head
	landed, rev, rerr := tx.resolve(ctx, cmps, head)
	if rerr != nil {
		for _, pc := range pcs {
			pc.tx.db.markStale(rerr)
		}
		return 0, fmt.Errorf("%w (and whether it landed is unknown: %v)", err, rerr)
	}
	if landed {
		for _, pc := range pcs {
			pc.tx.db.p.log.Info("commit landed despite a lost answer", "db", pc.tx.db.name, "txid", pc.head.TXID)
		}
		return rev, nil
	}
	// resolve re-put the first head: every database reloads its state.
	for _, pc := range pcs {
		pc.tx.db.markStale(err)
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
