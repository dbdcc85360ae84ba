package fuse

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// SQLite's locks on the -shm of a WAL-mode database (os_unix.c): the
// writer's, the checkpointer's, recovery's and the five readers' bytes.
// walHandoffGuard is how long after handing its lease to a host that asked
// this host keeps its WAL guard up even before the watch shows the new
// holder (which takes milliseconds).
const walHandoffGuard = time.Second

const (
	shmWriteByte  = 120
	shmLockBytes  = 8 // 120..127: WRITE, CKPT, RECOVER, READ0..READ4
	walIndexMagic = 3007000
)

// The lock agent in WAL mode (with a -shm; a wal-index in heap memory,
// locking_mode=EXCLUSIVE, keeps the database locked instead):
//
//   - walGuard: a write lock on the -shm's WRITE byte while another host
//     holds the write lease, or while another host's commit is not applied
//     here. A local writer's BEGIN of a write transaction then gets
//     SQLITE_BUSY, and its busy handler retries.
//   - applying another host's commit: once no local connection is in a
//     read or write transaction or a checkpoint (kvfs holds every lock byte
//     from WRITE to READ4), kvfs empties this host's -wal and writes the
//     wal-index header of an empty log (as SQLite's own log restart does),
//     and the database file becomes the latest commit. Connections see the
//     header change at their next transaction and drop their page caches.

// syncSHM keeps the agent's description of the database's -shm (s, nil if
// none) open: a new -shm (SQLite deletes it at the last close) is opened
// again. The caller must not hold d.mu.
func (a *lockAgent) syncSHM(s *sideNode) {
	if a.shmNode == s {
		return
	}
	if a.shm != nil {
		a.shm.Close() // drops its locks
		a.shm, a.shmNode, a.walGuardUp = nil, nil, false
	}
	if s == nil {
		return
	}
	f, err := a.d.fsys.openOwn(filepath.Join(a.d.fsys.mnt, s.path()), s.StableAttr().Ino)
	if err != nil {
		if renamedAway(err) {
			// SQLite deleted (or renamed) it meanwhile, as at its last
			// close; the agent's next look opens the next one.
			a.d.fsys.log.Debug("lock agent: -shm gone before it opened", "db", a.d.name, "err", err)
		} else {
			a.d.fsys.log.Warn("lock agent: open -shm", "db", a.d.name, "err", err)
		}
		return
	}
	a.shm, a.shmNode = f, s
}

// walWriterActive reports whether a local connection holds the -shm's
// WRITE lock: a WAL write transaction is open.
func (a *lockAgent) walWriterActive() bool {
	return a.shm != nil && lockedByOthers(a.shm, shmWriteByte, 1)
}

// setWALGuard raises or lowers the WAL guard and reports whether it is as
// asked.
func (a *lockAgent) setWALGuard(up bool) bool {
	if a.shm == nil {
		return !up
	}
	if up {
		a.walGuardUp = setlk(a.shm, unix.F_WRLCK, shmWriteByte, 1)
	} else {
		a.walGuardUp = !setlk(a.shm, unix.F_UNLCK, shmWriteByte, 1)
	}
	return a.walGuardUp == up
}

// applyRemoteWAL makes the latest head this host's view in WAL mode, if no
// local connection is in a transaction (false otherwise: try again soon).
func (a *lockAgent) applyRemoteWAL(ctx context.Context) bool {
	if a.shm == nil || !setlk(a.shm, unix.F_WRLCK, shmWriteByte, shmLockBytes) {
		return false
	}
	defer func() {
		if a.walGuardUp {
			setlk(a.shm, unix.F_UNLCK, shmWriteByte+1, shmLockBytes-1)
		} else {
			setlk(a.shm, unix.F_UNLCK, shmWriteByte, shmLockBytes)
		}
	}()
	d := a.d
	if !a.resetWAL(ctx) {
		return false
	}
	// While every lock byte is held, no connection can read the file's
	// cached pages of the older commit (the fold's own invalidation runs
	// asynchronously).
	d.NotifyContent(0, 0)
	return true
}

// resetWAL empties the log, resets the wal-index and folds the overlay
// into the latest commit (see applyRemoteWAL).
func (a *lockAgent) resetWAL(ctx context.Context) bool {
	d := a.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx != nil || d.ovl == nil {
		return false
	}
	head := d.db.Head()
	wal := d.side("-wal")
	if wal != nil {
		if err := wal.resetLog(); err != nil {
			d.fsys.log.Warn("apply remote commit: empty the -wal", "db", d.name, "err", err)
			return false
		}
	}
	if err := writeEmptyWALIndex(a.shm, head.PageSize, head.Pages); err != nil {
		d.fsys.log.Warn("apply remote commit: reset the wal-index", "db", d.name, "err", err)
		return false
	}
	d.walFoldLocked(ctx, walApplied)
	d.fsys.log.Debug("applied remote commit (WAL)", "db", d.name, "txid", head.TXID)
	return true
}

// resetLog empties the -wal: its transactions are all in etcd and in the
// database file's new view.
func (s *sideNode) resetLog() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	s.wal.reset()
	return s.f.Truncate(0)
}

// writeEmptyWALIndex writes, through f, the wal-index header of an empty
// log over a database of pages pages of pageSize bytes: both copies of the
// header (a changed change counter, the log's salts moved on as SQLite's
// log restart moves them, mxFrame 0) and the checkpoint information
// (nothing backfilled, read mark 1 at 0, the others unused). The wal-index
// is in the host's native byte order, but for the salts, which are copied
// from the log header. The lock bytes (120 and up) are not touched.
func writeEmptyWALIndex(f *os.File, pageSize, pages uint32) error {
	ne := binary.NativeEndian
	old := make([]byte, 48)
	if n, _ := f.ReadAt(old, 0); n < len(old) {
		clear(old) // a -shm not yet initialised
	}
	h := make([]byte, 48)
	ne.PutUint32(h[0:], walIndexMagic)
	ne.PutUint32(h[8:], ne.Uint32(old[8:])+1) // iChange
	h[12] = 1                                 // isInit
	h[13] = old[13]                           // bigEndCksum: the log's checksum order
	ne.PutUint16(h[14:], uint16(pageSize&0xff00|pageSize>>16))
	ne.PutUint32(h[20:], pages) // nPage; mxFrame (16) and aFrameCksum (24) stay 0
	binary.BigEndian.PutUint32(h[32:], binary.BigEndian.Uint32(old[32:])+1)
	if _, err := rand.Read(h[36:40]); err != nil {
		return err
	}
	c1, c2 := walChecksum(ne, 0, 0, h[:40])
	ne.PutUint32(h[40:], c1)
	ne.PutUint32(h[44:], c2)
	block := make([]byte, 120)
	copy(block, h)
	copy(block[48:], h)
	// Checkpoint info at 96: nBackfill 0, aReadMark[0] and [1] 0, the rest unused.
	for i := 2; i < 5; i++ {
		ne.PutUint32(block[100+4*i:], 0xffffffff)
	}
	if _, err := f.WriteAt(block, 0); err != nil {
		return err
	}
	// nBackfillAttempted, after the lock bytes.
	_, err := f.WriteAt(make([]byte, 4), 128)
	return err
}
