package pager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
)

// Database is one open database. Its methods are safe for concurrent use;
// at most one write transaction is open at a time.
type Database struct {
	p    *Pager
	name string
	refs int // guarded by p.mu
	// path is where the database is named (SetPath), for per-database
	// quotas and metric labels; its id until set.
	path atomic.Pointer[string]

	// compactMu runs one compaction pass at a time: a second pass on the
	// same host (the worker's beside one before a lease release) would
	// delete the first one's staged shard as an orphan just before the
	// first flips its state to it.
	compactMu sync.Mutex

	mu       sync.Mutex
	head     Head
	headRev  int64 // mod revision of the head key
	inc      int64 // create revision of the head key: this incarnation
	comp     *compState
	compRev  int64 // mod revision of the compaction key; 0 when absent
	attrs    Attrs
	attrsRev int64 // mod revision of the attributes key; 0 when absent
	viewRev  int64 // revision at which head, comp and idx are all current
	idx      *pageIndex
	pinRevs  map[int64]int // open snapshots by revision
	prune    bool          // the index holds removals to forget
	// orphanRisk: a staged commit of this host failed, so chunks of the
	// next txid may exist; the next commit deletes them.
	orphanRisk bool
	fence      Fence
	tx         *Tx
	stale      bool // state may be behind etcd: reload before the next use
	removed    bool

	stopWatch context.CancelFunc
	watchDone chan struct{}
	onChange  func(Head)
}

// OnChange sets fn to be called, from a background goroutine, whenever a
// head committed by another host (or another Pager) is applied; the FUSE
// layer uses it to invalidate the kernel's cache of the file. nil clears it.
// fn runs on the goroutine following etcd, which Acquire, reloads and
// Close wait for: it must not wait for a lock held around those calls.
func (db *Database) OnChange(fn func(Head)) {
	db.mu.Lock()
	db.onChange = fn
	db.mu.Unlock()
}

func newDatabase(p *Pager, name string) *Database {
	return &Database{p: p, name: name, idx: newPageIndex(), pinRevs: map[int64]int{}}
}

// Name returns the database's id: the name its etcd keys and write lease
// are under (its name, for a database older than directories).
func (db *Database) Name() string { return db.name }

// SetPath records where the database is named now (its path in the
// mount): quotas (Options.QuotaFor) and metric labels use it.
func (db *Database) SetPath(path string) { db.path.Store(&path) }

// Path returns what SetPath recorded, else the id.
func (db *Database) Path() string {
	if p := db.path.Load(); p != nil {
		return *p
	}
	return db.name
}

// Close releases this handle; the last Close stops following etcd.
func (db *Database) Close() error {
	db.p.release(db)
	return nil
}

func (db *Database) markRemoved() {
	db.mu.Lock()
	db.removed = true
	db.mu.Unlock()
}

func (db *Database) isRemoved() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.removed
}

// load reads the head and the page index rows at one revision and starts
// following later changes.
func (db *Database) load(ctx context.Context) error {
	db.stopFollowing()
	keys, store := db.p.keys, db.p.store
	kv, rev, err := store.Get(ctx, keys.Head(db.name), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return fmt.Errorf("open %s: %w", db.name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("open %s: %w", db.name, err)
	}
	head, err := parseHead(kv.Value)
	if err != nil {
		return fmt.Errorf("open %s: %w", db.name, err)
	}
	// The compaction state and the attributes, in one round trip.
	kvs, err := store.GetMany(ctx, []string{keys.Compaction(db.name), keys.Attrs(db.name)}, rev)
	if err != nil {
		return fmt.Errorf("open %s: %w", db.name, err)
	}
	var comp *compState
	var compRev, attrsRev int64
	if ckv := kvs[0]; ckv != nil {
		if comp, err = parseCompState(ckv.Value); err != nil {
			return fmt.Errorf("open %s: %w", db.name, err)
		}
		compRev = ckv.ModRevision
	}
	attrs := DefaultAttrs
	if akv := kvs[1]; akv != nil {
		if attrs, err = parseAttrs(akv.Value); err != nil {
			return fmt.Errorf("open %s: %w", db.name, err)
		}
		attrsRev = akv.ModRevision
	}
	idx := newPageIndex()
	if err := db.loadRows(ctx, idx, rev, head.TXID); err != nil {
		return fmt.Errorf("open %s: %w", db.name, err)
	}
	db.mu.Lock()
	db.head, db.headRev, db.inc, db.idx, db.stale = head, kv.ModRevision, kv.CreateRevision, idx, false
	db.comp, db.compRev, db.viewRev = comp, compRev, rev
	db.attrs, db.attrsRev = attrs, attrsRev
	db.mu.Unlock()
	db.preload(ctx, head, rev, kv.CreateRevision)
	db.startFollowing(rev + 1)
	return nil
}

// maxPreload bounds the deltas one open preloads.
const maxPreload = 256

// preload fetches, in one round trip, the deltas holding page 1 and the
// configured ranges, and caches those that are one chunk (the others open
// on first read). Failures only cost the round trip: reads fetch as usual.
func (db *Database) preload(ctx context.Context, head Head, rev, inc int64) {
	if head.TXID == 0 {
		return
	}
	seen := map[uint64]bool{}
	var txids []uint64
	add := func(pgno uint32) bool {
		if t, ok := db.idx.lookup(pgno, head.TXID, rev); ok && !seen[t] {
			if _, cached := db.p.blobs.get(blobKey{inc: inc, txid: t}); !cached {
				seen[t] = true
				txids = append(txids, t)
			}
		}
		return len(txids) < maxPreload
	}
	add(1)
	for _, r := range db.p.opts.Preload {
		for p := max(r.First, 1); p <= min(r.Last, head.Pages) && add(p); p++ {
		}
	}
	if len(txids) == 0 {
		return
	}
	keys := make([]string, len(txids))
	for i, t := range txids {
		keys[i] = etcdstore.ChunkKey(db.p.keys.Delta(db.name, t), 0)
	}
	kvs, err := db.p.store.GetMany(ctx, keys, rev)
	if err != nil {
		db.p.log.Warn("preload", "db", db.name, "err", err)
		return
	}
	for i, kv := range kvs {
		if kv == nil {
			continue
		}
		n, payload, err := etcdstore.DecodeChunk(kv.Value)
		if err != nil || n != 1 {
			continue
		}
		if blob, err := ltx.OpenBlob(payload); err == nil {
			db.p.blobs.put(blobKey{inc: inc, txid: txids[i]}, blob)
		}
	}
}

// loadRows reads every page index row with txid ≤ maxTXID at rev into idx.
// Rows above are orphans of an unfinished staged commit.
func (db *Database) loadRows(ctx context.Context, idx *pageIndex, rev int64, maxTXID uint64) error {
	keys := db.p.keys
	return db.rangeRows(ctx, keys.PIDXs(db.name), "", rev, etcdstore.KindPIDX, "page index row", maxTXID, func(txid uint64, row []byte) error {
		pgnos, err := decodePgnos(row)
		if err != nil {
			return fmt.Errorf("page index row %d: %w", txid, err)
		}
		idx.add(txid, pgnos)
		return nil
	})
}

// rangeRows calls fn, in txid order, with each whole row (its chunks
// joined) of kind stored from start to end (a prefix when end is "") at
// rev, up to txid maxTXID; what names the rows in errors.
func (db *Database) rangeRows(ctx context.Context, start, end string, rev int64, kind etcdstore.KeyKind, what string, maxTXID uint64, fn func(txid uint64, row []byte) error) error {
	keys := db.p.keys
	var (
		cur    uint64
		chunks [][]byte
		want   int
	)
	flush := func() error {
		if chunks == nil {
			return nil
		}
		if len(chunks) != want {
			return fmt.Errorf("%s %d: %d of %d chunks: %w", what, cur, len(chunks), want, ErrCorrupt)
		}
		row := chunks[0]
		if len(chunks) > 1 {
			row = slices.Concat(chunks...)
		}
		chunks = nil
		return fn(cur, row)
	}
	_, err := db.p.store.Range(ctx, start, etcdstore.RangeOptions{Rev: rev, End: end}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != kind {
			return fmt.Errorf("unexpected key %q: %w", kv.Key, ErrCorrupt)
		}
		if info.TXID > maxTXID {
			return nil
		}
		if info.TXID != cur || chunks == nil {
			if err := flush(); err != nil {
				return err
			}
			cur = info.TXID
		}
		n, payload, err := etcdstore.DecodeChunk(kv.Value)
		if err != nil || info.Chunk != len(chunks) {
			return fmt.Errorf("%s %d chunk %d: %w", what, info.TXID, info.Chunk, ErrCorrupt)
		}
		want = n
		chunks = append(chunks, payload)
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// startFollowing watches the database's keys from rev, applying commits of
// other hosts (head and page index rows) as they land.
func (db *Database) startFollowing(rev int64) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	db.mu.Lock()
	db.stopWatch, db.watchDone = cancel, done
	db.mu.Unlock()
	go func() {
		defer close(done)
		for b := range db.p.store.Watch(ctx, db.p.keys.DB(db.name), rev) {
			if b.Err != nil {
				// Missed history: reload on next use.
				db.p.log.Warn("following database stopped", "db", db.name, "err", b.Err)
				db.mu.Lock()
				db.stale = true
				db.mu.Unlock()
				return
			}
			db.apply(ctx, b)
		}
	}()
}

// apply applies one watch batch: page index rows first, then the head and
// the compaction state, then the batch's revision becomes the host's view
// revision, so a head never points at rows this host has not indexed.
func (db *Database) apply(ctx context.Context, b etcdstore.WatchBatch) {
	keys := db.p.keys
	var (
		newHead *Head
		newRev  int64
		newComp *compState
		compRev int64
	)
	setRow := func(txid uint64, pgnos []uint32, rev int64) {
		db.idx.mu.RLock()
		_, known := db.idx.rows[txid]
		db.idx.mu.RUnlock()
		if known {
			db.idx.setRow(txid, pgnos, rev) // compaction shrank the row
			db.mu.Lock()
			db.prune = true
			db.mu.Unlock()
		} else {
			db.idx.add(txid, pgnos)
		}
	}
	for _, ev := range b.Events {
		info, ok := keys.Parse(ev.KV.Key)
		if !ok {
			continue
		}
		switch {
		case info.Kind == etcdstore.KindPIDX && ev.Type == etcdstore.EventDelete && info.Chunk == 0:
			db.idx.setRow(info.TXID, nil, ev.KV.ModRevision)
			db.mu.Lock()
			db.prune = true
			db.mu.Unlock()
		case info.Kind == etcdstore.KindPIDX && ev.Type == etcdstore.EventPut:
			n, payload, err := etcdstore.DecodeChunk(ev.KV.Value)
			if err != nil {
				db.markStale(err)
				continue
			}
			if n == 1 {
				pgnos, err := decodePgnos(payload)
				if err != nil {
					db.markStale(err)
					continue
				}
				setRow(info.TXID, pgnos, ev.KV.ModRevision)
			} else if info.Chunk == n-1 {
				row, err := db.p.store.GetChunked(ctx, keys.PIDX(db.name, info.TXID), ev.KV.ModRevision)
				if err == nil {
					var pgnos []uint32
					if pgnos, err = decodePgnos(row); err == nil {
						setRow(info.TXID, pgnos, ev.KV.ModRevision)
					}
				}
				if err != nil {
					db.markStale(err)
				}
			}
		case info.Kind == etcdstore.KindHead && ev.Type == etcdstore.EventPut:
			h, err := parseHead(ev.KV.Value)
			if err != nil {
				db.markStale(err)
				continue
			}
			newHead, newRev = &h, ev.KV.ModRevision
		case info.Kind == etcdstore.KindHead && ev.Type == etcdstore.EventDelete:
			db.markRemoved()
		case info.Kind == etcdstore.KindCompaction && ev.Type == etcdstore.EventPut:
			c, err := parseCompState(ev.KV.Value)
			if err != nil {
				db.markStale(err)
				continue
			}
			newComp, compRev = c, ev.KV.ModRevision
		case info.Kind == etcdstore.KindAttrs && ev.Type == etcdstore.EventPut:
			a, err := parseAttrs(ev.KV.Value)
			if err != nil {
				db.markStale(err)
				continue
			}
			db.setAttrs(a, ev.KV.ModRevision)
		}
	}
	db.mu.Lock()
	var notify func(Head)
	if newHead != nil && newRev > db.headRev {
		db.head, db.headRev = *newHead, newRev
		notify = db.onChange
	}
	if newComp != nil && compRev > db.compRev {
		db.comp, db.compRev = newComp, compRev
	}
	if b.Revision > db.viewRev {
		db.viewRev = b.Revision
	}
	db.mu.Unlock()
	if notify != nil {
		notify(*newHead)
	}
}

func (db *Database) markStale(err error) {
	db.p.log.Warn("database state stale", "db", db.name, "err", err)
	db.mu.Lock()
	db.stale = true
	db.mu.Unlock()
}

func (db *Database) stopFollowing() {
	db.mu.Lock()
	stop, done := db.stopWatch, db.watchDone
	db.stopWatch, db.watchDone = nil, nil
	db.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// refresh reloads the database state when following etcd broke.
func (db *Database) refresh(ctx context.Context) error {
	db.mu.Lock()
	stale, removed := db.stale, db.removed
	db.mu.Unlock()
	if removed {
		return fmt.Errorf("database %s: %w", db.name, ErrNotFound)
	}
	if stale {
		return db.load(ctx)
	}
	return nil
}

// HeadRevision returns the etcd revision of the latest committed head this
// host knows: the revision of the transaction that committed it.
func (db *Database) HeadRevision() int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.headRev
}

// Head returns the latest committed head this host knows.
func (db *Database) Head() Head {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.head
}

// Acquire makes this host the database's writer under f: it deletes the
// orphans an unfinished staged commit of a previous writer left (deltas and
// page index rows above the head, in one fenced transaction) and reloads the
// state, so this host's page index is authoritative.
func (db *Database) Acquire(ctx context.Context, f Fence) error {
	cmps, err := f.Cmps()
	if err != nil {
		return fmt.Errorf("acquire %s: %w: %w", db.name, ErrFenced, err)
	}
	db.mu.Lock()
	if db.tx != nil {
		db.mu.Unlock()
		return fmt.Errorf("acquire %s: %w", db.name, ErrTxOpen)
	}
	db.mu.Unlock()
	keys := db.p.keys
	kv, _, err := db.p.store.Get(ctx, keys.Head(db.name), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return fmt.Errorf("acquire %s: %w", db.name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("acquire %s: %w", db.name, err)
	}
	head, err := parseHead(kv.Value)
	if err != nil {
		return fmt.Errorf("acquire %s: %w", db.name, err)
	}
	first := fmt.Sprintf("%016x", head.TXID+1)
	_, err = db.p.store.Txn(ctx,
		append(cmps, etcdstore.CmpModRevision(keys.Head(db.name), kv.ModRevision)),
		[]etcdstore.Op{
			etcdstore.OpDeleteRange(keys.Deltas(db.name)+first, etcdstore.PrefixEnd(keys.Deltas(db.name))),
			etcdstore.OpDeleteRange(keys.PIDXs(db.name)+first, etcdstore.PrefixEnd(keys.PIDXs(db.name))),
			etcdstore.OpDeleteRange(keys.Logs(db.name)+first, etcdstore.PrefixEnd(keys.Logs(db.name))),
		})
	if err != nil {
		return fmt.Errorf("acquire %s: delete orphans: %w", db.name, db.classifyWriteErr(err, kv.ModRevision))
	}
	if err := db.load(ctx); err != nil {
		return err
	}
	db.mu.Lock()
	db.fence = f
	db.mu.Unlock()
	// Under the fence nobody else changes the database's keys, and this
	// host applies its own commits and compaction passes as it makes them:
	// following etcd would only bring each commit back (its delta too).
	// Release follows again from the last revision applied.
	db.stopFollowing()
	return nil
}

// Release stops writing under the current fence (the caller releases the
// lease itself). It fails with ErrTxOpen while a transaction is open.
func (db *Database) Release() error {
	db.mu.Lock()
	if db.tx != nil {
		db.mu.Unlock()
		return ErrTxOpen
	}
	db.fence = nil
	resume := db.stopWatch == nil && !db.removed && !db.stale
	rev := db.viewRev
	db.mu.Unlock()
	if resume {
		// Another host's commits from here on (a lost lease's successor's
		// too) arrive as before Acquire.
		db.startFollowing(rev + 1)
	}
	return nil
}

// Writable reports whether the database has a fence (Acquire succeeded).
func (db *Database) Writable() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.fence != nil
}

// classifyWriteErr turns a failed compare into ErrFenced or ErrConflict:
// the head unchanged means the fence failed; a head written under another
// generation means another writer took over.
func (db *Database) classifyWriteErr(err error, baseRev int64) error {
	var ce *etcdstore.CompareError
	if !errors.As(err, &ce) {
		return err
	}
	cur := ce.Current[db.p.keys.Head(db.name)]
	if cur == nil {
		return fmt.Errorf("%w: database removed: %w", ErrConflict, err)
	}
	if cur.ModRevision == baseRev {
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	if h, perr := parseHead(cur.Value); perr == nil {
		db.mu.Lock()
		f := db.fence
		db.mu.Unlock()
		if f != nil && h.Generation != f.Generation() {
			return fmt.Errorf("%w: generation %d committed txid %d: %w", ErrFenced, h.Generation, h.TXID, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrConflict, err)
}

// Snapshot pins the latest committed state this host knows. Reads through it
// see exactly that txid until Close, whatever commits land meanwhile.
func (db *Database) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := db.refresh(ctx); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	v := db.viewLocked()
	db.pinRevs[v.rev]++
	return &Snapshot{db: db, v: v}, nil
}

// Stats describes a database's in-memory state.
type Stats struct {
	Head       Head
	Usage      int64  // bytes stored in etcd (quota counts this)
	ShardBytes int64  // of which in shards
	Shards     int    // live shard versions
	Folded     uint64 // txid the last complete compaction pass folded up to
	Rows       int    // page index rows (deltas with live pages)
	Pages      int    // pages indexed in deltas
	Snapshots  int    // open snapshots
	// History (Options.History): bytes kept only for past versions (not
	// in Usage), epochs kept, and the oldest epoch's txid after the last
	// expiry.
	HistoryBytes int64
	Epochs       int
	HistoryFrom  uint64
	// ExpiryDue says a compaction pass would expire history (some of it
	// left the window, or history was turned off), even with nothing to
	// fold.
	ExpiryDue bool
	Writable  bool
	TxOpen    bool
}

// Stats returns the database's in-memory state.
func (db *Database) Stats() Stats {
	db.mu.Lock()
	defer db.mu.Unlock()
	rows, pages := db.idx.len()
	pins := 0
	for _, n := range db.pinRevs {
		pins += n
	}
	st := Stats{Head: db.head, Usage: db.viewLocked().usage(), Rows: rows, Pages: pages, Snapshots: pins, Writable: db.fence != nil, TxOpen: db.tx != nil}
	if db.comp != nil {
		st.ShardBytes, st.Shards, st.Folded = db.comp.ShardBytes, len(db.comp.Shards), db.comp.Materialized
		st.HistoryBytes, st.Epochs, st.HistoryFrom = db.comp.HistoryBytes, len(db.comp.Epochs), db.comp.HistoryFrom
		st.ExpiryDue = db.expiryDueLocked()
	}
	return st
}

// viewLocked returns the database's current view.
func (db *Database) viewLocked() view {
	return view{head: db.head, comp: db.comp, rev: max(db.viewRev, db.headRev, db.compRev), inc: db.inc, idx: db.idx}
}

// unpin releases a snapshot's pin at rev and forgets index removals no
// open snapshot can need.
func (db *Database) unpin(rev int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.pinRevs[rev]--; db.pinRevs[rev] <= 0 {
		delete(db.pinRevs, rev)
	}
	db.pruneLocked()
}

// pruneLocked forgets index removals older than every open snapshot.
func (db *Database) pruneLocked() {
	if !db.prune {
		return
	}
	oldest := db.viewLocked().rev
	for rev := range db.pinRevs {
		oldest = min(oldest, rev)
	}
	db.idx.prune(oldest)
	db.prune = false
}

// readPage reads page pgno as of view v into dst (one page long): the newest
// copy in a delta the page index lists at v, else the page's shard. Pages
// not stored anywhere (past the end, the lock page) read as zeros.
func (db *Database) readPage(ctx context.Context, v view, pgno uint32, dst []byte) error {
	head := v.head
	if pgno == 0 || pgno > head.Pages || (pgno == lockPgno(head.PageSize) && !head.Plain) {
		clear(dst)
		return nil
	}
	var bk blobKey
	if txid, ok := v.idx.lookup(pgno, head.TXID, v.rev); ok {
		bk = blobKey{inc: v.inc, txid: txid}
	} else if v.comp != nil {
		n := (pgno - 1) / v.comp.ShardPages
		t, ok := v.comp.Shards[n]
		if !ok {
			return fmt.Errorf("read %s page %d at txid %d: no delta or shard holds it: %w", db.name, pgno, head.TXID, ErrCorrupt)
		}
		bk = blobKey{inc: v.inc, txid: t, shard: true, n: n}
	} else {
		return fmt.Errorf("read %s page %d at txid %d: no stored copy: %w", db.name, pgno, head.TXID, ErrCorrupt)
	}
	// A page of a delta at txid t, and of a shard folded up to t, is the
	// newest copy as of t: either way (txid, pgno) names its content.
	pk := pageKey{v.inc, bk.txid, pgno}
	if b, ok := db.p.pages.get(pk); ok {
		copy(dst, b)
		db.p.metrics.pageRead(fromCache)
		return nil
	}
	if bk.shard {
		db.p.metrics.pageRead(fromShard)
	} else {
		db.p.metrics.pageRead(fromDelta)
	}
	blob, ok := db.p.blobs.get(bk)
	if !ok {
		var err error
		blob, err = db.p.fetch.do(bk, func() (*ltx.Blob, error) {
			blob, err := db.openBlob(ctx, bk, v.rev)
			if err == nil {
				db.p.blobs.put(bk, blob)
			}
			return blob, err
		})
		if err != nil {
			return err
		}
	}
	page, err := blob.ReadPage(pgno, dst[:0:len(dst)])
	if err != nil {
		return fmt.Errorf("read %s page %d from %s: %w: %w", db.name, pgno, bk, ErrCorrupt, err)
	}
	if &page[0] != &dst[0] {
		copy(dst, page)
	}
	db.p.pages.put(pk, append([]byte(nil), dst...))
	return nil
}

// lockPgno returns the page holding byte 0x40000000, which SQLite never
// writes; 0 when the page size is unknown.
func lockPgno(pageSize uint32) uint32 {
	if pageSize == 0 {
		return 0
	}
	return 0x40000000/pageSize + 1
}

// now is the pager's clock, for timestamps.
var now = time.Now
