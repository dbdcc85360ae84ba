package fuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvfs/kvfs/fence"
)

// errStaleView refuses a write transaction that started from a read view
// older than the database's head: another host committed after this host's
// processes last read, so the transaction's pages would lose that commit.
var errStaleView = errors.New("another host committed since this transaction read the database; it must be retried")

// lockAgent takes part in SQLite's locking on behalf of kvfs when the
// kernel arbitrates locks (the default, Options.ForwardLocks unset). The
// kernel never tells kvfs who locks what, so kvfs locks too, through two
// file descriptions of its own on the database file (open file description
// locks, which conflict with SQLite's POSIX locks like another process's):
//
//   - guard: a write lock on RESERVED while another host holds the write
//     lease, or while another host's commit is not yet applied here. A
//     local SQLite writer gets SQLITE_BUSY at its RESERVED lock; its busy
//     handler retries from a fresh read transaction.
//   - blocker: a read lock on the SHARED range (on the guard's
//     description) while a local writer that got past RESERVED cannot
//     commit (its journal appeared but the lease was taken, or its reads
//     are older than the head). Its EXCLUSIVE lock then fails with
//     SQLITE_BUSY until it rolls back, so it never writes the database.
//   - apply: another host's commit becomes this host's read view under
//     PENDING and EXCLUSIVE, exactly like a local writer's commit: no
//     SQLite read transaction on this host sees it land in its middle.
//
// The lease holder releases the lease once idle (no write transaction, no
// local RESERVED lock) for Options.IdleRelease, or at once when another
// host asks for it, so the other hosts' guards come down.
type lockAgent struct {
	d       *dbNode
	ready   chan struct{} // closed once guard and apply are open (or failed)
	guard   *os.File
	apply   *os.File
	applyMu sync.Mutex // held while apply's locks are in use (by this agent or a group's)
	err     error
	kick    chan struct{}
	cancel  context.CancelFunc
	done    sync.WaitGroup
	closed  sync.Once

	// Owned by the run goroutine.
	guardUp bool

	// WAL mode (walagent.go), owned by the run goroutine.
	shm        *os.File  // the agent's description of the -shm
	shmNode    *sideNode // the -shm it is of
	walGuardUp bool
}

// startAgentLocked starts the database's lock agent if it has none. It opens
// its file descriptions through the mount from another goroutine: opening
// from inside a FUSE handler would wait on the handler itself.
func (d *dbNode) startAgentLocked() {
	if d.agent != nil || d.fsys.opts.ForwardLocks || d.fsys.closing.Load() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &lockAgent{d: d, ready: make(chan struct{}), kick: make(chan struct{}, 1), cancel: cancel}
	d.agent = a
	a.done.Add(2)
	go func() {
		defer a.done.Done()
		// A rename here or on another host can leave the path naming
		// another file, or none, for a moment: the kernel's stale entry
		// goes when kvfs hears of the rename (WatchNames).
		for wait := 10 * time.Millisecond; ; wait *= 2 {
			a.open()
			if a.err == nil || wait > 2*time.Second || ctx.Err() != nil || d.gone() || !renamedAway(a.err) {
				break
			}
			time.Sleep(wait)
		}
		close(a.ready)
		if a.err != nil {
			if d.gone() || ctx.Err() != nil {
				// Removed (or replaced) before its agent opened it: nothing to guard.
				d.fsys.log.Debug("lock agent: database gone before it opened", "db", d.name, "err", a.err)
			} else {
				d.fsys.log.Error("lock agent: open database", "db", d.name, "err", a.err)
			}
			return
		}
		a.run(ctx)
		a.close() // the database was removed, or the mount is closing
	}()
	go func() {
		defer a.done.Done()
		a.watchHolder(ctx)
	}()
}

func (a *lockAgent) open() {
	path := filepath.Join(a.d.fsys.mnt, a.d.path())
	ino := a.d.StableAttr().Ino
	if a.guard, a.err = a.d.fsys.openOwn(path, ino); a.err != nil {
		return
	}
	if a.apply, a.err = a.d.fsys.openOwn(path, ino); a.err != nil {
		a.guard.Close()
		a.guard = nil
	}
}

// openOwn opens path, a file of this mount, read-write without kvfs making
// the FUSE request itself: a helper process opens it and kvfs takes a
// duplicate of the helper's descriptor (pidfd_getfd). A kvfs thread waiting
// on its own mount when kvfs is killed would never be answered, and the
// process could never exit. The descriptions kvfs keeps are opened without
// FLUSH on close (FOPEN_NOFLUSH) for the same reason.
//
// The helper reports the inode it opened: path may name another file by
// then (a rename), and openOwn fails unless it is ino. A helper never
// creates a file (dirNode.Create refuses it).
func (fsys *FS) openOwn(path string, ino uint64) (*os.File, error) {
	cmd := exec.Command("/bin/sh", "-c", `read go && exec 3<>"$1" && stat -L -c '%i ok' /dev/fd/3 && read done`, "kvfs-lock-agent", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("open %s for kvfs's locks: %w", path, err)
	}
	pid := cmd.Process.Pid
	fsys.agentPids.Store(uint32(pid), true)
	defer fsys.agentPids.Delete(uint32(pid))
	defer cmd.Wait()
	defer stdin.Close()
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		return nil, fmt.Errorf("open %s for kvfs's locks: %w", path, err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var got uint64
	if _, serr := fmt.Sscanf(line, "%d ok\n", &got); err != nil || serr != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("open %s for kvfs's locks: %s", path, strings.TrimSpace(stderr.String()))
	}
	if got != ino {
		return nil, fmt.Errorf("open %s for kvfs's locks: inode %d there, not %d: %w", path, got, ino, errRenamed)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s for kvfs's locks: pidfd_open: %w", path, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, 3, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s for kvfs's locks: pidfd_getfd: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// errRenamed: a file kvfs opens for itself by path was renamed meanwhile.
var errRenamed = errors.New("renamed while kvfs opened it")

// renamedAway reports whether openOwn failed because its path names another
// file, or none (the helper's shell says so in its own words).
func renamedAway(err error) bool {
	msg := err.Error()
	return errors.Is(err, errRenamed) || strings.Contains(msg, "No such file") || strings.Contains(msg, "nonexistent")
}

// isAgentOpen reports whether pid is a helper opening a file for kvfs's
// own locks (see openOwn).
func (fsys *FS) isAgentOpen(pid uint32) bool {
	_, ok := fsys.agentPids.Load(pid)
	return ok
}

// wait returns whether the agent's descriptions are open, waiting briefly.
// The caller must not hold d.mu: the agent's opens may need it.
func (a *lockAgent) wait() bool {
	select {
	case <-a.ready:
		return a.err == nil
	case <-time.After(time.Second):
		return false
	}
}

// isReady returns whether the agent's descriptions are open, without
// waiting.
func (a *lockAgent) isReady() bool {
	select {
	case <-a.ready:
		return a.err == nil
	default:
		return false
	}
}

// awaitAgent waits (without d.mu) until the database's lock agent, if it
// has one, has opened its descriptions.
func (d *dbNode) awaitAgent() {
	d.mu.Lock()
	a := d.agent
	d.mu.Unlock()
	if a != nil {
		a.wait()
	}
}

// stop ends the agent and closes its descriptions (dropping its locks). The
// caller must not hold d.mu: closing a file is a FUSE request.
func (a *lockAgent) stop() {
	a.cancel()
	a.done.Wait()
	a.close()
}

func (a *lockAgent) close() {
	a.closed.Do(func() {
		if a.shm != nil {
			a.shm.Close()
		}
		if a.guard != nil {
			a.guard.Close()
			a.apply.Close()
		}
	})
}

// poke asks the agent to look at the database's state again.
func (a *lockAgent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// setlk sets an open file description lock without waiting.
func setlk(f *os.File, typ int16, start, n int64) bool {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: n}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk) == nil
}

// lockedByOthers reports whether anyone but f's description holds a lock
// conflicting with a write lock on [start, start+n).
func lockedByOthers(f *os.File, start, n int64) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: start, Len: n}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return true
	}
	return lk.Type != unix.F_UNLCK
}

// writerActive reports whether a local process holds RESERVED or PENDING:
// a SQLite write transaction is open on this host.
func (a *lockAgent) writerActive() bool {
	return lockedByOthers(a.guard, pendingByte, 2)
}

// sqliteWriterLocked reports whether a local process holds SQLite's
// RESERVED or PENDING lock on the database (d.mu held).
func (d *dbNode) sqliteWriterLocked() bool {
	if d.fsys.opts.ForwardLocks {
		d.locks.mu.Lock()
		defer d.locks.mu.Unlock()
		return d.locks.writeLocked()
	}
	return d.txLocked || (d.agent != nil && d.agent.isReady() && d.agent.writerActive())
}

// setBlockerLocked raises or lowers the blocker (see lockAgent).
func (a *lockAgent) setBlockerLocked(up bool) {
	if !a.isReady() {
		return
	}
	if up {
		if !setlk(a.guard, unix.F_RDLCK, sharedFirst, sharedSize) {
			// The writer holds EXCLUSIVE already: its database writes
			// meet the lease and fail.
			a.d.fsys.log.Warn("cannot hold back a local writer", "db", a.d.name)
		}
	} else {
		setlk(a.guard, unix.F_UNLCK, sharedFirst, sharedSize)
	}
}

func (a *lockAgent) watchHolder(ctx context.Context) {
	d := a.d
	if d.fsys.opts.Fence == nil {
		return // a read-only mount: nobody writes here
	}
	me := d.fsys.opts.Fence.Options().Owner
	for info := range d.fsys.opts.Fence.WatchHolder(ctx, d.name) {
		d.mu.Lock()
		d.holderOther = info.Lease != 0 && info.Owner != me
		d.mu.Unlock()
		a.poke()
	}
}

// run reconciles the agent's locks with the database's state whenever
// poked, and polls while something waits on a local lock.
func (a *lockAgent) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := a.step(ctx)
		if !ok {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-timer.C:
		}
	}
}

// step does what the state asks for now and returns when to look again (0:
// only when poked); false once the database is gone.
func (a *lockAgent) step(ctx context.Context) (time.Duration, bool) {
	d := a.d
	const poll = 2 * time.Millisecond
	hook := d.fsys.opts.BeforeRelease
	release := false
	d.mu.Lock()
	if d.removed.Load() {
		d.mu.Unlock()
		return 0, false
	}
	mine := d.leaseLiveLocked()
	stale := d.staleLocked() && d.tx == nil
	holderOther := d.holderOther
	wantGuard := (!mine && holderOther) || stale
	// WAL mode: the same, on the -shm's WRITE byte.
	walMode := d.walModeLocked(ctx) && d.ovl != nil
	walStale := walMode && d.tx == nil && d.db.Head().TXID != d.walTXID
	wantWALGuard := walMode && ((!mine && holderOther) || walStale)
	var shmNode *sideNode
	if walMode {
		shmNode = d.side("-shm")
	}
	var next time.Duration
	switch {
	case d.tx != nil && d.txLocked && !d.journalActive():
		// journal_mode=MEMORY or OFF with synchronous=OFF: the writer's
		// unlock is the commit point.
		if !a.writerActive() {
			if err := d.commitLocked(ctx, "unlock"); err != nil {
				d.fsys.log.Warn("commit at unlock", "db", d.name, "err", err)
			}
		} else {
			next = poll
		}
	case mine:
		next = d.maybeReleaseLocked(ctx, hook == nil)
		release = next < 0
	}
	d.mu.Unlock()
	if release {
		// Fold what compaction wants folded while this host can still
		// write, then release if still idle.
		hook(ctx, d.db)
		next = 0
		d.mu.Lock()
		if d.leaseLiveLocked() {
			next = d.maybeReleaseLocked(ctx, true)
		}
		d.mu.Unlock()
	}

	if wantGuard != a.guardUp {
		d.fsys.log.Debug("guard", "db", d.name, "want", wantGuard, "holderOther", holderOther, "stale", stale)
		if wantGuard {
			// Fails while a local writer holds RESERVED: it meets the
			// lease at its journal; try again.
			a.guardUp = setlk(a.guard, unix.F_WRLCK, reservedByte, 1)
		} else {
			a.guardUp = !setlk(a.guard, unix.F_UNLCK, reservedByte, 1)
		}
		if wantGuard != a.guardUp {
			next = pollMin(next, poll)
		}
	}
	if stale {
		if retry := a.applyRemote(ctx); retry > 0 {
			next = pollMin(next, retry)
		} else {
			next = pollMin(next, time.Microsecond) // the guard may come down
		}
	}
	if walMode {
		// A lease handed over just now: the taker's commit is coming, and
		// a local writer starting before this host learns of it would
		// write on stale pages (an I/O error at its commit frame).
		d.mu.Lock()
		since := time.Since(d.handedOff)
		mine = d.leaseLiveLocked()
		d.mu.Unlock()
		if since < walHandoffGuard && !mine {
			wantWALGuard = true
			next = pollMin(next, walHandoffGuard-since)
		}
	}
	a.syncSHM(shmNode)
	if wantWALGuard != a.walGuardUp && !a.setWALGuard(wantWALGuard) {
		next = pollMin(next, poll) // a local writer is in a transaction
	}
	if walStale {
		if !a.applyRemoteWAL(ctx) {
			next = pollMin(next, poll)
		} else {
			next = pollMin(next, time.Microsecond) // the guard may come down
		}
	}
	return next, true
}

func pollMin(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

// applyHold is how long applyRemote holds PENDING waiting for local read
// transactions to end, as a local writer's busy handler would; new read
// transactions meanwhile get SQLITE_BUSY (their busy handlers retry).
const applyHold = time.Second

// applyBackoff is how long the agent leaves the locks alone after holding
// PENDING for applyHold in vain: longer than the longest sleep of SQLite's
// busy handler (100 ms), so that the readers it shut out get their turn
// instead of finding PENDING taken again at every retry.
const applyBackoff = 150 * time.Millisecond

// applyRemote makes the latest head this host's read view under PENDING
// and EXCLUSIVE, and drops the kernel's cached pages (applyViews). It
// returns 0 once applied, else when to try again.
func (a *lockAgent) applyRemote(ctx context.Context) time.Duration {
	group, ok := a.d.group()
	if !ok {
		return 2 * time.Millisecond
	}
	if len(group) < 2 {
		group = []*dbNode{a.d}
	}
	switch applyViews(ctx, a.d, group) {
	case applied:
		return 0
	case heldInVain:
		return applyBackoff
	}
	return 2 * time.Millisecond
}

// leaseLiveLocked reports whether this host holds a live write lease.
func (d *dbNode) leaseLiveLocked() bool {
	if d.lease == nil {
		return false
	}
	select {
	case <-d.lease.Done():
		return false
	default:
		return true
	}
}

// staleLocked reports whether the host's read view is older than the
// database's head (another host committed and it is not applied yet).
//
// In WAL mode it is false: the file reads as the log's overlay, and another
// host's commit is not applied while the log is open (see doc.go).
func (d *dbNode) staleLocked() bool {
	return d.ovl == nil && d.view != nil && d.view.Head().TXID != d.db.Head().TXID
}

// maybeReleaseLocked releases the lease when this host has been idle for
// IdleRelease, or is idle and another host asked for it; otherwise it
// returns when to check again. Unless release is set it returns -1 instead
// of releasing (the caller runs Options.BeforeRelease first).
func (d *dbNode) maybeReleaseLocked(ctx context.Context, release bool) time.Duration {
	if d.tx != nil || d.journalActive() || d.doomed {
		// A transaction is open; its end pokes the agent, but the journal
		// may still look live at that moment: look again soon anyway.
		return 10 * time.Millisecond
	}
	asked := false
	select {
	case <-d.lease.HandoffRequested():
		asked = true
	default:
	}
	idleFor := time.Since(d.lastWrite)
	if !asked && idleFor < d.fsys.opts.IdleRelease {
		return d.fsys.opts.IdleRelease - idleFor
	}
	if d.agent.writerActive() || d.agent.walWriterActive() {
		d.fsys.log.Debug("lease idle but a local writer holds RESERVED or the WAL's write lock", "db", d.name)
		return 2 * time.Millisecond
	}
	if !release {
		return -1
	}
	d.fsys.log.Debug("releasing idle write lease", "db", d.name, "asked", asked)
	d.dropLeaseLocked(context.WithoutCancel(ctx))
	return 0
}

// writeIntentLocked is called when a local SQLite writer's rollback journal
// starts a transaction (kernel-arbitrated locks only). The writer already
// holds RESERVED; it may go on if this host holds, or can take, the write
// lease and its read view is the head. If another host keeps the lease, or
// the writer read an older commit, the blocker keeps it from ever taking
// EXCLUSIVE: SQLite reports SQLITE_BUSY and rolls back. Any other failure
// (etcd unreachable, say) is returned: the journal write fails, which
// SQLite reports as an I/O error.
func (d *dbNode) writeIntentLocked(ctx context.Context) error {
	if d.fsys.opts.ForwardLocks || d.fsys.opts.ReadOnly || d.removed.Load() {
		return nil
	}
	d.lastWrite = time.Now()
	err := d.ensureLeaseLocked(ctx, d.fsys.opts.LockHandoffWait)
	if err == nil && d.staleLocked() {
		err = errStaleView
	}
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fence.ErrHeld) && !errors.Is(err, errStaleView):
		return err
	}
	d.fsys.log.Debug("local writer cannot commit; it gets SQLITE_BUSY", "db", d.name, "err", err)
	if !d.doomed && d.agent != nil {
		d.doomed = true
		d.agent.setBlockerLocked(true)
	}
	return nil
}

// transactionEndedLocked is called when a rollback journal is invalidated:
// a doomed writer has rolled back.
func (d *dbNode) transactionEndedLocked() {
	if d.doomed && d.agent != nil {
		d.doomed = false
		d.agent.setBlockerLocked(false)
	}
	if d.agent != nil {
		d.agent.poke()
	}
}
