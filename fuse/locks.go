package fuse

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/pager"
)

// SQLite's lock bytes in a database file (os_unix.c).
const (
	pendingByte  = 0x40000000
	reservedByte = pendingByte + 1
	sharedFirst  = pendingByte + 2
	sharedSize   = 510
)

// lockTable holds the POSIX byte-range locks of one file on this host, by
// lock owner (the kernel's id of a process's file table). It gives the
// semantics a local file has: a lock conflicts with another owner's
// overlapping lock when either is a write lock; an owner's new lock
// replaces its own locks on the range; F_UNLCK removes them.
type lockTable struct {
	mu    sync.Mutex
	locks []heldLock
}

type heldLock struct {
	owner      uint64
	start, end uint64 // inclusive
	typ        uint32 // syscall.F_RDLCK or F_WRLCK
	pid        uint32
}

func overlaps(a0, a1, b0, b1 uint64) bool { return a0 <= b1 && b0 <= a1 }

// conflict returns a lock of another owner that blocks lk, if any.
func (t *lockTable) conflict(owner uint64, lk *gofuse.FileLock) (heldLock, bool) {
	for _, h := range t.locks {
		if h.owner != owner && overlaps(h.start, h.end, lk.Start, lk.End) &&
			(h.typ == syscall.F_WRLCK || lk.Typ == syscall.F_WRLCK) {
			return h, true
		}
	}
	return heldLock{}, false
}

// set applies lk for owner; the caller checked conflicts.
func (t *lockTable) set(owner uint64, lk *gofuse.FileLock) {
	out := t.locks[:0:0]
	for _, h := range t.locks {
		if h.owner != owner || !overlaps(h.start, h.end, lk.Start, lk.End) {
			out = append(out, h)
			continue
		}
		// Keep the parts of the owner's lock outside lk's range.
		if h.start < lk.Start {
			l := h
			l.end = lk.Start - 1
			out = append(out, l)
		}
		if h.end > lk.End {
			r := h
			r.start = lk.End + 1
			out = append(out, r)
		}
	}
	if lk.Typ != syscall.F_UNLCK {
		out = append(out, heldLock{owner: owner, start: lk.Start, end: lk.End, typ: lk.Typ, pid: lk.Pid})
	}
	t.locks = out
}

// holds reports whether owner holds a lock of type typ (or any, with
// typ == F_UNLCK) overlapping [start, end].
func (t *lockTable) holds(owner uint64, start, end uint64, typ uint32) bool {
	for _, h := range t.locks {
		if h.owner == owner && overlaps(h.start, h.end, start, end) && (typ == syscall.F_UNLCK || h.typ == typ) {
			return true
		}
	}
	return false
}

// sharedOwners counts owners holding a lock in SQLite's SHARED range. It
// runs on every lock call: the table is small, so it counts without
// allocating.
func (t *lockTable) sharedOwners() int {
	n := 0
	for i, h := range t.locks {
		if !overlaps(h.start, h.end, sharedFirst, sharedFirst+sharedSize-1) {
			continue
		}
		counted := false
		for _, e := range t.locks[:i] {
			if e.owner == h.owner && overlaps(e.start, e.end, sharedFirst, sharedFirst+sharedSize-1) {
				counted = true
				break
			}
		}
		if !counted {
			n++
		}
	}
	return n
}

// writeLocked reports whether anyone holds a write lock on RESERVED or
// PENDING: a write transaction is open.
func (t *lockTable) writeLocked() bool {
	for _, h := range t.locks {
		if h.typ == syscall.F_WRLCK && overlaps(h.start, h.end, pendingByte, reservedByte) {
			return true
		}
	}
	return false
}

// getlk implements F_GETLK.
func (t *lockTable) getlk(owner uint64, lk *gofuse.FileLock, out *gofuse.FileLock) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.conflict(owner, lk); ok {
		*out = gofuse.FileLock{Start: h.start, End: h.end, Typ: h.typ, Pid: h.pid}
		return
	}
	*out = *lk
	out.Typ = syscall.F_UNLCK
}

// setlkw waits for setlk to stop returning EAGAIN, until ctx ends (EINTR).
func setlkw(ctx context.Context, setlk func() syscall.Errno) syscall.Errno {
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		if errno := setlk(); errno != syscall.EAGAIN {
			return errno
		}
		select {
		case <-ctx.Done():
			return syscall.EINTR
		case <-time.After(wait):
		}
	}
}

func (d *dbNode) Getlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32, out *gofuse.FileLock) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("getlk", &errno)
	d.locks.getlk(owner, lk, out)
	return 0
}

func (d *dbNode) Setlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("setlk", &errno)
	ctx = uninterruptible(ctx)
	return d.setlk(ctx, owner, lk)
}

func (d *dbNode) Setlkw(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) (errno syscall.Errno) {
	defer d.fsys.recoverErrno("setlkw", &errno)
	return setlkw(ctx, func() syscall.Errno { return d.setlk(ctx, owner, lk) })
}

// setlk applies a lock change and what it means to kvfs:
//   - a write lock on RESERVED or PENDING (SQLite starting to write) needs
//     this host's write lease: EAGAIN, which SQLite reports as SQLITE_BUSY,
//     while another host holds it (the holder is asked to hand it over);
//   - the first SHARED lock after none (a read transaction starting) pins
//     the latest commit as the host's read view, dropping the kernel's
//     cached pages first if another host committed since;
//   - releasing the write lock with a transaction open and no live journal
//     (journal_mode=OFF or MEMORY with synchronous=OFF) is a commit point.
func (d *dbNode) setlk(ctx context.Context, owner uint64, lk *gofuse.FileLock) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := &d.locks
	t.mu.Lock()
	if lk.Typ != syscall.F_UNLCK {
		if _, blocked := t.conflict(owner, lk); blocked {
			t.mu.Unlock()
			return syscall.EAGAIN
		}
	}
	wantsWrite := lk.Typ == syscall.F_WRLCK && overlaps(lk.Start, lk.End, pendingByte, reservedByte)
	wasWriter := t.holds(owner, pendingByte, reservedByte, syscall.F_WRLCK)
	readersBefore := t.sharedOwners()
	t.mu.Unlock()

	if wantsWrite && !wasWriter && !d.fsys.opts.ReadOnly {
		if err := d.ensureLeaseLocked(ctx, d.fsys.opts.LockHandoffWait); err != nil {
			return d.fsys.errno("lock", d.name, err)
		}
		// The transaction will write pages computed from what it read at
		// the host's read view: if another host committed after that
		// view, writing would lose that commit. SQLITE_BUSY makes the
		// application retry with a fresh read transaction.
		if d.view != nil && d.view.Head().TXID != d.db.Head().TXID {
			return syscall.EAGAIN
		}
	}

	t.mu.Lock()
	if lk.Typ != syscall.F_UNLCK {
		if _, blocked := t.conflict(owner, lk); blocked {
			t.mu.Unlock()
			return syscall.EAGAIN
		}
	}
	t.set(owner, lk)
	readers := t.sharedOwners()
	isWriter := t.holds(owner, pendingByte, reservedByte, syscall.F_WRLCK)
	t.mu.Unlock()

	if readersBefore == 0 && readers > 0 {
		d.refreshViewLocked(ctx)
	}
	if wasWriter && !isWriter {
		if d.tx != nil && !d.journalActive() {
			if err := d.commitLocked(ctx, "unlock"); err != nil {
				return d.fsys.errno("unlock", d.name, err)
			}
		}
		d.handoffIfAskedLocked(ctx)
	}
	if readers == 0 && d.view != nil {
		d.view.Close()
		d.view = nil
	}
	return 0
}

// refreshViewLocked pins the latest commit as the host's read view. If the
// kernel's cache reflects an older commit it is dropped, synchronously, so
// the read transaction that is starting cannot see stale pages.
func (d *dbNode) refreshViewLocked(ctx context.Context) {
	snap, err := d.db.Snapshot(ctx)
	if err != nil {
		d.fsys.log.Warn("pin read view", "db", d.name, "err", err)
		return
	}
	if d.view != nil {
		d.view.Close()
	}
	d.view = snap
	if txid := snap.Head().TXID; txid != d.cachedTXID && d.tx == nil {
		d.NotifyContent(0, 0)
		d.cachedTXID = txid
	}
}

// ensureLeaseLocked takes this host's write lease for the database if it
// does not hold it, waiting up to wait for another host to hand it over.
func (d *dbNode) ensureLeaseLocked(ctx context.Context, wait time.Duration) error {
	if d.removed.Load() {
		return pager.ErrNotFound
	}
	if d.lease != nil {
		select {
		case <-d.lease.Done():
			d.dropLostLeaseLocked()
		default:
			return nil
		}
	}
	// While etcd was just found unreachable, a probe: the caller holds
	// d.mu, and so keeps every read of the database waiting.
	actx, cancel := d.fsys.metaCtx(ctx)
	lease, err := d.fsys.opts.Fence.AcquireWithHandoff(actx, d.name, wait)
	cancel()
	d.fsys.noteMeta(err)
	if err != nil {
		return err
	}
	if err := d.db.Acquire(ctx, lease); err != nil {
		lease.Release(context.WithoutCancel(ctx))
		return err
	}
	d.lease = lease
	go d.watchLease(lease)
	return nil
}

// handoffIfAskedLocked releases the write lease if another host asked for
// it and no write transaction is open on this host (no pager transaction,
// no SQLite write lock).
func (d *dbNode) handoffIfAskedLocked(ctx context.Context) {
	if d.lease == nil || !d.idleLocked() {
		return
	}
	select {
	case <-d.lease.HandoffRequested():
		d.dropLeaseLocked(context.WithoutCancel(ctx))
	default:
	}
}

// idleLocked reports whether no write transaction is open on this host.
func (d *dbNode) idleLocked() bool {
	d.locks.mu.Lock()
	defer d.locks.mu.Unlock()
	return d.tx == nil && !d.locks.writeLocked()
}
