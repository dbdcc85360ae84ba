package fuse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

// dbNode is a database file. Writes go to the database's open write
// transaction (begun on the first write, under this host's write lease);
// the transaction commits at SQLite's commit point (see commitPoint's
// callers) and reads see it on this host until then.
type dbNode struct {
	fs.Inode
	fsys *FS
	name string // the database's id: its pager and fence key (its name, for databases older than directories)
	db   *pager.Database
	// dir and base are where the database is named now (a rename moves
	// them); guarded by fsys.mu.
	dir  *dirNode
	base string

	mu      sync.Mutex
	lease   *fence.Lease
	tx      *pager.Tx
	writer  *dbHandle   // the handle whose writes the open transaction holds
	removed atomic.Bool // set under mu; read without it by gone

	// Locks and the host's read view: SQLite's SHARED lock pins a
	// snapshot shared by every process of this host (they share the
	// kernel's page cache too); it moves to the latest commit when the
	// first SHARED lock is taken after all were released.
	locks      lockTable
	view       *pager.Snapshot
	cachedTXID uint64 // the txid the kernel's page cache reflects

	// With locks left to the kernel (see lockAgent).
	agent       *lockAgent
	holderOther bool      // another host holds the write lease
	doomed      bool      // a local writer past RESERVED cannot commit
	txLocked    bool      // the open transaction's writer held a SQLite lock
	txNonce     uint32    // the journal header's nonce when the open transaction began
	lastWrite   time.Time // of this host's last write activity
	// restorePending: a commit failed, so SQLite will roll its hot journal
	// back, writing the committed pages over themselves. Those writes need
	// no transaction (and so no etcd: they also work while etcd has no
	// quorum, and readers waiting on the rollback read on).
	restorePending bool

	// WAL mode (walnode.go): while the database has a -wal on this host,
	// the file reads as ovl; walTXID is the commit ovl must equal once
	// every frame is checkpointed (the log's last commit, or its base).
	ovl       *pager.Overlay
	walTXID   uint64
	handedOff time.Time // when this host last handed its lease to another that asked
}

var (
	_ fs.NodeGetattrer = (*dbNode)(nil)
	_ fs.NodeSetattrer = (*dbNode)(nil)
	_ fs.NodeOpener    = (*dbNode)(nil)
	_ fs.NodeReader    = (*dbNode)(nil)
	_ fs.NodeWriter    = (*dbNode)(nil)
	_ fs.NodeFsyncer   = (*dbNode)(nil)
	_ fs.NodeFlusher   = (*dbNode)(nil)
	_ fs.NodeGetlker   = (*dbNode)(nil)
	_ fs.NodeSetlker   = (*dbNode)(nil)
	_ fs.NodeSetlkwer  = (*dbNode)(nil)
)

// dbHandle is one open file description of a database.
type dbHandle struct {
	d     *dbNode
	wrote bool
	// notSQLite marks a handle SQLite never opens a database with: write
	// only, or truncating (cp). Its writes are never a WAL checkpoint's.
	notSQLite bool
	// failed is the error of a write or truncate through the handle that
	// was refused (quota, plain-file size limit). A writer that is not
	// SQLite then commits nothing at its fsync or close, which fail too:
	// the file keeps its last commit, never a part of the new content.
	failed error
}

// gone reports whether the database was removed. It takes no lock: the
// lock agent's own opens call it while a handler may hold d.mu.
func (d *dbNode) gone() bool { return d.removed.Load() }

// fill reports the file's attributes: its size as this host sees it (the
// open transaction's, else the host's read view's, else the last commit's),
// that commit's time as mtime. Reporting a size the kernel's cached pages
// do not reflect would make it cut them (and i_size) to that size: a read
// transaction still on the view would then read past the end of the file.
func (d *dbNode) fill(a *gofuse.Attr) {
	// Under mu: a commit in progress holds it, and a head read before the
	// commit with the transaction gone after it would report the old size.
	d.mu.Lock()
	h, size := d.sizeLocked()
	d.mu.Unlock()
	a.Nlink = 1
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
	secs, nsecs := uint64(h.Timestamp/1000), uint32(h.Timestamp%1000)*1e6
	a.Mtime, a.Mtimensec = secs, nsecs
	a.Ctime, a.Ctimensec = secs, nsecs
	a.Atime, a.Atimensec = secs, nsecs
	fillAttrs(a, syscall.S_IFREG, d.db.Attrs())
}

// sizeLocked returns the commit this host sees (its read view's, else the
// latest) and the file's size: the open transaction's, else that commit's.
func (d *dbNode) sizeLocked() (pager.Head, int64) {
	if d.ovl != nil && d.tx == nil {
		return d.ovl.Base(), d.ovl.Size()
	}
	h := d.db.Head()
	if d.view != nil {
		h = d.view.Head()
	}
	if d.tx != nil {
		return h, d.tx.Size()
	}
	return h, h.Size()
}

// size is the file's size as this host sees it (see sizeLocked).
func (d *dbNode) size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, n := d.sizeLocked()
	return n
}

func (d *dbNode) Getattr(ctx context.Context, f fs.FileHandle, out *gofuse.AttrOut) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("getattr", &errno)
	d.fill(&out.Attr)
	return 0
}

func (d *dbNode) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("setattr", &errno)
	ctx = uninterruptible(ctx)
	if size, ok := in.GetSize(); ok {
		if err := d.truncate(ctx, int64(size), f); err != nil {
			return d.fsys.errno("truncate", d.name, err)
		}
	}
	if a, changed := applySetattr(d.db.Attrs(), in, fileModeBits); changed {
		if d.fsys.opts.ReadOnly {
			return syscall.EROFS
		}
		if err := d.db.SetAttrs(ctx, a); err != nil {
			return d.fsys.errno("setattr", d.name, err)
		}
	}
	d.fill(&out.Attr)
	return 0
}

func (d *dbNode) Open(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer d.fsys.recoverErrno("open", &errno)
	ctx = uninterruptible(ctx)
	return d.open(ctx, flags, false)
}

// open opens a handle; O_TRUNC empties the database (in a transaction that
// commits when the handle is flushed, like any non-SQLite writer's).
func (d *dbNode) open(ctx context.Context, flags uint32, created bool) (fs.FileHandle, uint32, syscall.Errno) {
	if d.gone() {
		return nil, 0, syscall.ENOENT
	}
	write := flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0
	caller, _ := gofuse.FromContext(ctx)
	self := caller != nil && d.fsys.isAgentOpen(caller.Pid)
	if self {
		// A lock agent's description: it never writes, and must not be
		// flushed when kvfs closes it (see openOwn).
		return &dbHandle{d: d}, gofuse.FOPEN_KEEP_CACHE | gofuse.FOPEN_NOFLUSH, 0
	}
	if write && d.fsys.opts.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	if !d.fsys.opts.ForwardLocks {
		// Locks are the kernel's: the host's read view moves only when the
		// lock agent applies another host's commit.
		d.mu.Lock()
		if d.view == nil && !d.removed.Load() {
			snap, err := d.db.Snapshot(ctx)
			if err != nil {
				d.mu.Unlock()
				return nil, 0, d.fsys.errno("open", d.name, err)
			}
			d.view, d.cachedTXID = snap, snap.Head().TXID
		}
		d.startAgentLocked()
		d.mu.Unlock()
	}
	h := &dbHandle{d: d, notSQLite: flags&syscall.O_TRUNC != 0 || flags&syscall.O_ACCMODE == syscall.O_WRONLY}
	if flags&syscall.O_TRUNC != 0 && write && (d.db.Head().Pages > 0 || created) {
		if err := d.truncate(ctx, 0, h); err != nil {
			return nil, 0, d.fsys.errno("open", d.name, err)
		}
	}
	// Keep the kernel's page cache across opens; remote commits invalidate it.
	return h, gofuse.FOPEN_KEEP_CACHE, 0
}

// testHookRead, set by tests, runs at the start of every database read.
var testHookRead atomic.Pointer[func()]

func (d *dbNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (_ gofuse.ReadResult, errno syscall.Errno) {
	defer d.fsys.recoverErrno("read", &errno)
	ctx = uninterruptible(ctx)
	if hook := testHookRead.Load(); hook != nil {
		(*hook)()
	}
	n, err := d.readAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, d.fsys.errno("read", d.name, err)
	}
	return gofuse.ReadResultData(dest[:n]), 0
}

func (d *dbNode) readAt(ctx context.Context, dest []byte, off int64) (int, error) {
	d.mu.Lock()
	tx, view := d.tx, d.view
	var ovl *pager.Overlay
	if tx == nil && d.walModeLocked(ctx) {
		ovl = d.ovl
	}
	d.mu.Unlock()
	if ovl != nil {
		n, err := ovl.ReadAt(ctx, dest, off)
		if !errors.Is(err, pager.ErrTxDone) {
			return n, err
		}
	}
	if tx != nil {
		n, err := tx.ReadAt(ctx, dest, off)
		if !errors.Is(err, pager.ErrTxDone) {
			return n, err
		}
	}
	if view != nil {
		// A view closed meanwhile still reads its commit consistently.
		return view.ReadAt(ctx, dest, off)
	}
	snap, err := d.db.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	return snap.ReadAt(ctx, dest, off)
}

func (d *dbNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (_ uint32, errno syscall.Errno) {
	defer d.fsys.recoverErrno("write", &errno)
	ctx = uninterruptible(ctx)
	h, _ := f.(*dbHandle)
	d.awaitAgent()
	d.mu.Lock()
	defer d.mu.Unlock()
	if ovl := d.checkpointTargetLocked(ctx, h); ovl != nil {
		// A checkpoint copying WAL frames into the file: already committed.
		n, err := ovl.WriteAt(ctx, data, off)
		if err != nil {
			return uint32(n), d.fsys.errno("write", d.name, err)
		}
		return uint32(n), 0
	}
	if d.tx != nil && d.txNonce != 0 && d.journalNonce() != d.txNonce {
		// The journal now belongs to a later transaction: the open one
		// ended at a header zeroing kvfs did not see (passthrough, with
		// synchronous=OFF and locking_mode=EXCLUSIVE). Commit it first.
		err := d.commitLocked(ctx, "journal restarted")
		d.transactionEndedLocked()
		if err != nil {
			return 0, d.fsys.errno("write", d.name, err)
		}
	}
	if d.tx == nil && d.restorePending {
		if d.rewritesCommittedLocked(ctx, data, off) {
			return uint32(len(data)), 0
		}
		d.restorePending = false
	}
	begins := d.tx == nil
	tx, err := d.ensureTxLocked(ctx)
	if err != nil {
		return 0, d.fsys.errno("write", d.name, err)
	}
	if begins && !d.fsys.opts.NoPassthrough {
		d.txNonce = d.journalNonce() // see the check above
	}
	if d.agent != nil {
		d.lastWrite = time.Now()
		// A SQLite writer without a journal holds its lock from the first
		// write of its transaction on: its unlock commits. Looked at once,
		// when the transaction begins, not on every write.
		if begins && d.agent.isReady() && d.agent.writerActive() && !d.journalActive() {
			d.txLocked = true
			d.agent.poke()
		}
	}
	n, err := tx.WriteAt(ctx, data, off)
	if h != nil {
		h.wrote = true
		d.writer = h
		if err != nil {
			h.failed = err
		}
	}
	if err != nil {
		if h != nil && !h.notSQLite && d.journalActive() {
			// SQLite rolls its whole transaction back from its journal
			// after a failed write: drop it now, with the spool it holds,
			// so the rollback (committed pages over themselves) needs no
			// room. (A writer without a journal keeps h.failed: its fsync
			// or close fails.)
			d.rollbackLocked()
			d.restorePending = true
			h.failed = nil
		}
		return uint32(n), d.fsys.errno("write", d.name, err)
	}
	return uint32(n), 0
}

// rewritesCommittedLocked reports whether writing data at off leaves the
// database as committed: whole pages, each the same as this host's read
// view of it. Any doubt (a read that fails) is a no.
func (d *dbNode) rewritesCommittedLocked(ctx context.Context, data []byte, off int64) bool {
	head := d.db.Head()
	ps := int64(head.PageSize)
	if ps == 0 || off%ps != 0 || int64(len(data))%ps != 0 || off+int64(len(data)) > head.Size() {
		return false
	}
	view := d.view
	if view == nil {
		snap, err := d.db.Snapshot(ctx)
		if err != nil {
			return false
		}
		defer snap.Close()
		view = snap
	}
	buf := make([]byte, len(data))
	n, err := view.ReadAt(ctx, buf, off)
	return err == nil && n == len(data) && bytes.Equal(buf, data)
}

// checkpointTargetLocked returns the overlay a write of the database file
// through h goes to: in WAL mode, outside a rollback-journal transaction,
// SQLite writes the file only to checkpoint. Nil otherwise, and nil for a
// handle SQLite would never open (cp over a database whose -wal a crash
// left behind) or none (truncate(2) of the path): such writes commit as
// any writer's that is not SQLite.
func (d *dbNode) checkpointTargetLocked(ctx context.Context, h *dbHandle) *pager.Overlay {
	if d.tx != nil || h == nil || h.notSQLite || !d.walModeLocked(ctx) || d.journalActive() {
		return nil
	}
	return d.ovl
}

// truncate sets the file size in the open write transaction.
func (d *dbNode) truncate(ctx context.Context, size int64, f fs.FileHandle) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, _ := f.(*dbHandle)
	if ovl := d.checkpointTargetLocked(ctx, h); ovl != nil {
		return ovl.Truncate(size)
	}
	if size == d.db.Head().Size() && d.tx == nil {
		return nil
	}
	tx, err := d.ensureTxLocked(ctx)
	if err != nil {
		return err
	}
	err = tx.Truncate(ctx, size)
	if h != nil {
		h.wrote = true
		d.writer = h
		if err != nil {
			h.failed = err
		}
	}
	return err
}

// ensureTxLocked returns the open write transaction, taking this host's
// write lease for the database first if needed (waiting up to HandoffWait
// for another host to hand it over).
func (d *dbNode) ensureTxLocked(ctx context.Context) (*pager.Tx, error) {
	if d.fsys.opts.ReadOnly {
		return nil, errReadOnlyMount
	}
	if d.removed.Load() {
		return nil, pager.ErrNotFound
	}
	if d.tx != nil {
		return d.tx, nil
	}
	if err := d.ensureLeaseLocked(ctx, d.fsys.opts.HandoffWait); err != nil {
		return nil, err
	}
	if !d.fsys.opts.ForwardLocks && d.staleLocked() {
		// The writer read an older commit than the head (journal_mode
		// MEMORY or OFF gave no earlier sign of the transaction).
		return nil, errStaleView
	}
	tx, err := d.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	d.tx = tx
	return tx, nil
}

// watchLease hands the lease over when another host asks, at the next
// moment no transaction is open, and forgets it when lost.
func (d *dbNode) watchLease(l *fence.Lease) {
	select {
	case <-l.HandoffRequested():
		d.mu.Lock()
		if !d.fsys.opts.ForwardLocks {
			// The lock agent knows whether a local writer is active.
			if d.agent != nil {
				d.agent.poke()
			}
			d.mu.Unlock()
			return
		}
		if d.lease == l && d.idleLocked() {
			d.dropLeaseLocked(context.Background())
		}
		// Otherwise the end of the transaction releases it.
		d.mu.Unlock()
	case <-l.Done():
		d.mu.Lock()
		if d.lease == l && d.tx == nil {
			d.dropLostLeaseLocked()
		}
		d.mu.Unlock()
	}
}

// dropLostLeaseLocked forgets a lease that ended by itself (expired,
// fenced). Its revocation is only tidying (the lease is gone or about to
// be) and goes on in the background: with etcd unreachable it would hold
// d.mu, and every read of the database, for a request timeout.
func (d *dbNode) dropLostLeaseLocked() {
	l := d.lease
	if l == nil {
		return
	}
	d.db.Release()
	d.lease = nil
	go l.Release(context.Background())
}

// dropLeaseLocked stops writing and releases the lease.
func (d *dbNode) dropLeaseLocked(ctx context.Context) {
	if d.lease == nil {
		return
	}
	select {
	case <-d.lease.HandoffRequested():
		// Another host is about to take the lease and commit; until its
		// holder shows in the watch, act as if it did (see walHandoffGuard).
		d.handedOff = time.Now()
	default:
	}
	d.db.Release()
	d.lease.Release(ctx)
	d.lease = nil
}

// commitPoint commits the open write transaction, if any: SQLite reached
// a commit point (why). On failure the transaction is gone, the database
// reads as its last commit, and the kernel's cached pages of the file are
// dropped.
func (d *dbNode) commitPoint(ctx context.Context, why string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.transactionEndedLocked()
	return d.commitLocked(ctx, why)
}

func (d *dbNode) commitLocked(ctx context.Context, why string) error {
	tx := d.takeTxLocked()
	if tx == nil {
		return nil
	}
	_, err := tx.Commit(ctx)
	if err == nil && d.ovl != nil {
		// A writer that is not SQLite rewrote a database with a -wal here:
		// the file is the new commit (SQLite will recover the log over it,
		// as over a local file).
		d.walFoldLocked(ctx, walApplied)
	}
	return d.afterCommitLocked(ctx, why, err)
}

// takeTxLocked detaches the open transaction, if any, to commit it.
func (d *dbNode) takeTxLocked() *pager.Tx {
	tx := d.tx
	if tx == nil {
		return nil
	}
	d.tx, d.writer, d.txLocked, d.txNonce = nil, nil, false, 0
	d.lastWrite = time.Now()
	return tx
}

// afterCommitLocked finishes the commit of a transaction takeTxLocked
// detached, whose outcome is err.
func (d *dbNode) afterCommitLocked(ctx context.Context, why string, err error) error {
	if d.agent != nil {
		defer d.agent.poke() // the lease's idle timer restarts
	}
	if err != nil {
		d.invalidate()
		// The transaction is gone and the file reads as the last commit,
		// maybe another host's, newer than the originals in the journal:
		// nobody may roll the journal back over it (SQLite takes a journal
		// whose header is zero for no hot journal).
		if s := d.side("-journal"); s != nil && s.live() {
			s.obsolete()
		}
	} else {
		// The kernel's cache holds what was written: it reflects the commit.
		d.cachedTXID = d.db.Head().TXID
	}
	d.restorePending = err != nil
	return d.committedLocked(ctx, why, err)
}

// committedLocked finishes a commit attempt at why: on failure it logs and
// gives up a lease that is lost or stale; on success it moves the host's
// read view to the commit and hands the lease over if asked.
func (d *dbNode) committedLocked(ctx context.Context, why string, err error) error {
	if err != nil {
		d.fsys.log.Warn("commit failed", "db", d.name, "at", why, "err", err)
		if errors.Is(err, pager.ErrFenced) || errors.Is(err, pager.ErrConflict) {
			d.dropLeaseLocked(context.WithoutCancel(ctx))
		}
		return err
	}
	if d.view != nil {
		if snap, err := d.db.Snapshot(ctx); err == nil {
			d.view.Close()
			d.view = snap
		}
	}
	d.handoffIfAskedLocked(ctx)
	return nil
}

// rollback discards the open transaction and the kernel's view of it.
func (d *dbNode) rollbackLocked() {
	if d.tx != nil {
		d.tx.Rollback()
		d.tx, d.writer, d.txLocked, d.txNonce = nil, nil, false, 0
		d.invalidate()
	}
}

// invalidate drops the kernel's cached pages and attributes of the file,
// from another goroutine (a notification from inside a handler of the same
// inode may deadlock).
func (d *dbNode) invalidate() {
	go d.NotifyContent(0, 0)
}

// remoteChange is called when another host committed. With no local read
// transaction open, the kernel's cache is dropped now; otherwise when the
// next read transaction starts (Setlk).
func (d *dbNode) remoteChange(h pager.Head) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.fsys.opts.ForwardLocks {
		// The lock agent applies it at a transaction boundary.
		if d.agent != nil {
			d.agent.poke()
		} else if d.view != nil {
			d.startAgentLocked()
		}
		return
	}
	d.locks.mu.Lock()
	readers := d.locks.sharedOwners()
	d.locks.mu.Unlock()
	if readers == 0 && d.tx == nil {
		d.cachedTXID = h.TXID
		d.invalidate()
	}
}

// side returns the side file of the database with suffix ("-journal",
// "-wal", "-shm") on this host, nil without one.
func (d *dbNode) side(suffix string) *sideNode {
	d.fsys.mu.Lock()
	defer d.fsys.mu.Unlock()
	return d.sideLocked(suffix)
}

// sideLocked is side with fsys.mu held.
func (d *dbNode) sideLocked(suffix string) *sideNode {
	return d.fsys.sides[sideKey(d.dir.id, d.base+suffix)]
}

// path returns the database's path in the mount.
func (d *dbNode) path() string {
	d.fsys.mu.Lock()
	defer d.fsys.mu.Unlock()
	return d.dir.pathOf(d.base)
}

// journalActive reports whether the database has a live rollback journal
// on this host: then the journal's invalidation, not an fsync or a close,
// is the commit point.
func (d *dbNode) journalActive() bool {
	s := d.side("-journal")
	return s != nil && s.live()
}

// journalNonce is the nonce of the database's journal header on this
// host, 0 without one.
func (d *dbNode) journalNonce() uint32 {
	s := d.side("-journal")
	if s == nil {
		return 0
	}
	return s.nonce()
}

func (d *dbNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("fsync", &errno)
	ctx = uninterruptible(ctx)
	// journal_mode=MEMORY/OFF (and non-SQLite writers): the fsync that ends
	// the transaction is its commit point.
	if d.journalActive() {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, _ := f.(*dbHandle)
	if h != nil && d.writer != nil && d.writer != h {
		return 0 // another process's transaction
	}
	if h != nil && h.failed != nil && !d.sqliteWriterLocked() {
		return d.fsys.errno("fsync", d.name, d.refusedLocked(h))
	}
	return d.fsys.errno("fsync", d.name, d.commitLocked(ctx, "fsync"))
}

func (d *dbNode) Flush(ctx context.Context, f fs.FileHandle) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("flush", &errno)
	ctx = uninterruptible(ctx)
	h, _ := f.(*dbHandle)
	d.mu.Lock()
	defer d.mu.Unlock()
	if h == nil || !h.wrote || d.writer != h || d.journalActive() || d.sqliteWriterLocked() {
		// A FLUSH also comes when a process holding the file forks and
		// execs: only a writer without SQLite's locks (cp) commits here.
		return 0
	}
	if h.failed != nil {
		return d.fsys.errno("close", d.name, d.refusedLocked(h))
	}
	// A writer closing the file without a journal: cp, or SQLite with
	// journal_mode=OFF and synchronous=OFF. Commit what it wrote.
	return d.fsys.errno("close", d.name, d.commitLocked(ctx, "close"))
}

// refusedLocked ends the transaction of h, a writer that is not SQLite and
// one of whose writes was refused: nothing of it is committed, and its
// fsync or close fails with that write's error.
func (d *dbNode) refusedLocked(h *dbHandle) error {
	err := h.failed
	h.failed = nil
	d.rollbackLocked()
	d.transactionEndedLocked()
	return err
}

// remove deletes the database from etcd under this host's write lease.
func (d *dbNode) remove(ctx context.Context) error {
	return d.removeWith(ctx, func(f pager.Fence) error {
		d.fsys.mu.Lock()
		dir, base := d.dir.id, d.base
		d.fsys.mu.Unlock()
		return d.fsys.opts.Pager.Unlink(ctx, dir, base, d.name, f)
	})
}

// removeWith runs op, which deletes the database from etcd (an unlink, or
// a rename over it), under this host's write lease, which it takes if
// needed; the open transaction is rolled back first.
func (d *dbNode) removeWith(ctx context.Context, op func(pager.Fence) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed.Load() {
		return pager.ErrNotFound
	}
	d.rollbackLocked()
	if d.lease == nil {
		lease, err := d.fsys.opts.Fence.AcquireWithHandoff(ctx, d.name, d.fsys.opts.HandoffWait)
		if err != nil {
			return err
		}
		d.lease = lease
	}
	err := op(d.lease)
	d.db.Release()
	d.lease.Release(context.WithoutCancel(ctx))
	d.lease = nil
	if err != nil {
		return err
	}
	d.removed.Store(true)
	d.db.Close()
	return nil
}

// close rolls back and releases everything at unmount.
func (d *dbNode) close(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.view != nil {
		d.view.Close()
		d.view = nil
	}
	if d.tx != nil {
		d.tx.Rollback()
		d.tx = nil
	}
	d.dropLeaseLocked(ctx)
	if !d.removed.Load() {
		d.db.Close()
	}
}
