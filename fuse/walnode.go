package fuse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// WAL mode (see doc.go, "WAL mode"): the -wal is a side file kvfs reads
// frames from; its commit frames are commit points. The database file
// shows what SQLite's checkpoints wrote over the commit the log began from
// (pager.Overlay), never a commit SQLite has not checkpointed yet.

// errWALBusyRollback refuses a WAL commit while a rollback-journal
// transaction is open on the same database (SQLite never does both).
var errWALBusyRollback = errors.New("a rollback-journal transaction is open beside the WAL")

// writeWAL writes bytes into the -wal. Those SQLite writes (sqlite, false
// for a handle SQLite never opens: write-only or truncating, that is a
// copy) are followed: the write that completes a commit frame commits its
// transaction before returning. A header write (32 bytes at offset 0)
// starts a new generation of the log: SQLite restarts the log only once
// every frame is checkpointed, so the database file then equals the latest
// commit. Any other write — a copy, a header that is not one, a frame
// before the log has a header — is kept as written, as a local disk keeps
// it, and commits nothing: SQLite's recovery judges it (recoverWAL).
func (s *sideNode) writeWAL(ctx context.Context, data []byte, off int64, sqlite bool) (int, error) {
	s.mu.Lock()
	if s.f == nil {
		s.mu.Unlock()
		return 0, syscall.EBADF
	}
	w := s.wal
	if first := w.firstTouched(off); first > 0 && first <= w.committed {
		s.mu.Unlock()
		return 0, fmt.Errorf("write of WAL frame %d (%d committed): %w", first, w.committed, errWALRewind)
	}
	follow := sqlite && w.valid && off >= walHeaderSize
	restart := false
	if sqlite && off == 0 && len(data) == walHeaderSize {
		if h, err := parseWALHeader(data); err == nil {
			restart = w.valid
			w.setHeader(h)
			follow = true
		}
	}
	n, err := s.f.WriteAt(data, off)
	if err != nil || !follow {
		if !follow {
			s.fsys.log.Debug("WAL bytes kept for recovery", "db", s.dbName(), "off", off, "len", len(data), "sqlite", sqlite)
		}
		s.mu.Unlock()
		return n, err
	}
	k := w.touched(off, len(data))
	w.wrote(off, len(data))
	var txn *walTxn
	if k > w.committed && w.commitFrame(s.f, k) {
		if txn, err = w.next(s.f, s.sizeLocked()); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		w.pending = txn == nil
	}
	s.mu.Unlock()

	d := s.database()
	if d == nil {
		return n, nil
	}
	if restart {
		d.walFold(ctx, walRestarted)
	}
	if txn == nil {
		return n, nil
	}
	if err := s.commitTxn(ctx, d, w, txn); err != nil {
		return 0, err
	}
	return n, nil
}

// commitTxn commits txn, the transaction after the committed frames of log
// w. If it fails, the transaction must not stay in the log: a later
// recovery (a connection rebuilding the wal-index from the -wal) would
// publish it on this host. Breaking the chain at its first frame ends the
// log there, as SQLite's recovery reads it.
func (s *sideNode) commitTxn(ctx context.Context, d *dbNode, w *walLog, txn *walTxn) error {
	if err := d.commitWAL(ctx, s, txn); err != nil {
		s.mu.Lock()
		if s.wal == w && w.valid && w.hdr == txn.hdr && s.f != nil {
			s.f.WriteAt(make([]byte, walFrameHeaderSize), w.frameOffset(w.committed+1))
		}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	if s.wal == w && w.valid && w.hdr == txn.hdr {
		w.landed(txn)
	}
	s.mu.Unlock()
	return nil
}

// recoverWAL commits what SQLite's recovery is about to count as committed:
// the transactions after the committed ones whose frames chain from the
// header the file holds now. SQLite reads the 32-byte header at offset 0
// only when it rebuilds its wal-index from the log (after the last
// connection closed or died, or bytes were copied in) or checks the salts
// of one it cannot map: from then on it reads the frames as committed.
// Bytes SQLite did not write (a copied -wal, a frame written by hand) are
// committed here, or not at all: a header that is not one is the end of
// the log, as for SQLite. A commit that fails fails the read, so SQLite
// reports an I/O error and reads none of it.
func (s *sideNode) recoverWAL(ctx context.Context) error {
	s.mu.Lock()
	if s.f == nil {
		s.mu.Unlock()
		return syscall.EBADF
	}
	w := s.wal
	b := make([]byte, walHeaderSize)
	_, err := s.f.ReadAt(b, 0)
	h, herr := parseWALHeader(b)
	if err != nil || herr != nil {
		// No log (empty, short or not a header): SQLite reads the file.
		if w.valid {
			s.fsys.log.Debug("WAL recovery: no valid header", "db", s.dbName(), "err", errors.Join(err, herr))
		}
		w.reset()
		s.mu.Unlock()
		return nil
	}
	restart := false
	if !w.valid || h != w.hdr {
		restart = w.valid
		w.setHeader(h)
	}
	s.mu.Unlock()
	d := s.database()
	if d == nil {
		return nil
	}
	if restart {
		d.walFold(ctx, walRestarted)
	}
	for {
		s.mu.Lock()
		if s.f == nil || !w.valid || w.hdr != h {
			s.mu.Unlock()
			return nil // the log changed meanwhile
		}
		txn, err := w.next(s.f, s.sizeLocked())
		s.mu.Unlock()
		if err != nil || txn == nil {
			return err
		}
		s.fsys.log.Debug("WAL recovery commits a transaction", "db", s.dbName(), "frames", txn.end)
		if err := s.commitTxn(ctx, d, w, txn); err != nil {
			return err
		}
	}
}

// truncateWAL sets the -wal's size. SQLite truncates the log to zero after
// a TRUNCATE checkpoint and at its last close (every frame checkpointed):
// the database file then equals the latest commit. A log cut below its
// committed frames starts over at its next header.
func (s *sideNode) truncateWAL(ctx context.Context, size int64) error {
	s.mu.Lock()
	if s.f == nil {
		s.mu.Unlock()
		return syscall.EBADF
	}
	if err := s.f.Truncate(size); err != nil {
		s.mu.Unlock()
		return err
	}
	w := s.wal
	fold := size < walHeaderSize || (w.valid && size < w.frameOffset(w.committed+1))
	if fold {
		if w.valid && size >= walHeaderSize {
			s.fsys.log.Warn("WAL truncated below its committed frames", "db", s.dbName(), "size", size, "committed", w.committed)
		}
		w.reset()
	}
	s.mu.Unlock()
	if d := s.database(); d != nil && fold {
		d.walFold(ctx, walRestarted)
	}
	return nil
}

// readPage reads size bytes of the -wal at off.
func (s *sideNode) readAt(p []byte, off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return syscall.EBADF
	}
	_, err := s.f.ReadAt(p, off)
	return err
}

// walModeLocked reports whether the database has a -wal on this host, and
// then makes sure the host's view of the database file is an overlay: over
// the host's read view when the log appears (SQLite opens it before it
// writes a frame), so that no WAL commit shows in the file before a
// checkpoint copies it there.
func (d *dbNode) walModeLocked(ctx context.Context) bool {
	s := d.side("-wal")
	if s == nil {
		return false
	}
	if d.ovl == nil {
		// The overlay takes over the host's read view (the view of
		// rollback-mode bookkeeping is opened anew when needed).
		snap := d.view
		d.view = nil
		if snap == nil {
			var err error
			if snap, err = d.db.Snapshot(ctx); err != nil {
				d.fsys.log.Warn("WAL mode: read the database", "db", d.name, "err", err)
				return true
			}
		}
		d.ovl = d.db.NewOverlay(snap)
		d.walTXID = snap.Head().TXID
		d.fsys.log.Debug("WAL mode", "db", d.name, "base", d.walTXID)
	}
	return true
}

// walStarted puts database db of dir, if open, in WAL mode: SQLite created
// its -wal.
func (fsys *FS) walStarted(ctx context.Context, dir *dirNode, db string) {
	fsys.mu.Lock()
	d := fsys.byName[sideKey(dir.id, db)]
	fsys.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	d.walModeLocked(ctx)
	d.mu.Unlock()
	if d.agent != nil {
		d.agent.poke()
	}
}

// walFold is why the database's overlay is folded (walFoldLocked).
type walFold int

const (
	// walEnded: SQLite deleted its -wal, so no connection is open here and
	// the file may become the latest commit.
	walEnded walFold = iota
	// walRestarted: SQLite restarted or truncated its log with every frame
	// checkpointed. Its connections still trust what they read, so the
	// file stays at the commit this host's log reached.
	walRestarted
	// walApplied: the lock agent reset the wal-index to apply another
	// host's commit; every connection reads the file anew.
	walApplied
)

// walFold drops the database's overlay (see walFoldLocked).
func (d *dbNode) walFold(ctx context.Context, why walFold) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.walFoldLocked(ctx, why)
}

// walFoldLocked drops the database's overlay: every frame of the log is in
// the database file. When the log ended, the host's view becomes the
// latest commit; otherwise a new overlay starts over it. After a restart,
// another host's commit that this host's log has not caught up with is
// left to the lock agent (applyRemoteWAL): SQLite began the transaction
// it now logs from the file as it was, and moving the file under it
// would let that transaction commit over a state it never read (a lost
// update) — its commit instead fails with errStaleView.
func (d *dbNode) walFoldLocked(ctx context.Context, why walFold) {
	if d.ovl == nil {
		return
	}
	snap, err := d.db.Snapshot(ctx)
	if err != nil {
		d.fsys.log.Warn("WAL checkpointed: read the database", "db", d.name, "err", err)
		if why == walEnded {
			d.ovl.Close()
			d.ovl = nil
		}
		return
	}
	if snap.Head().TXID != d.walTXID {
		if why == walRestarted {
			snap.Close()
			d.fsys.log.Debug("WAL restarted behind another host's commit", "db", d.name, "txid", d.walTXID, "head", snap.Head().TXID)
			return
		}
		// Another host's commit: the file's contents change.
		d.invalidate()
	}
	d.ovl.Close()
	d.ovl = nil
	d.cachedTXID = snap.Head().TXID
	if why == walEnded {
		if d.view != nil {
			d.view.Close()
		}
		d.view = snap
		d.fsys.log.Debug("WAL mode ended", "db", d.name, "txid", snap.Head().TXID)
		return
	}
	d.ovl = d.db.NewOverlay(snap)
	d.walTXID = snap.Head().TXID
}

// commitWAL commits a transaction SQLite wrote to the -wal: its pages (the
// newest frame of each, those within the database's new size) and size, in
// one pager transaction on top of the commit the log's previous
// transaction made, under this host's write lease.
func (d *dbNode) commitWAL(ctx context.Context, s *sideNode, t *walTxn) error {
	d.awaitAgent()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fsys.opts.ReadOnly {
		return errReadOnlyMount
	}
	if d.removed.Load() {
		return pager.ErrNotFound
	}
	d.walModeLocked(ctx)
	if d.tx != nil {
		return errWALBusyRollback
	}
	if err := d.ensureLeaseLocked(ctx, d.fsys.opts.HandoffWait); err != nil {
		return err
	}
	if h := d.db.Head(); h.TXID != d.walTXID {
		// Another host committed since this host's log began: SQLite built
		// the transaction without that commit.
		return errStaleView
	}
	tx, err := d.db.Begin(ctx)
	if err != nil {
		return err
	}
	if ps := tx.PageSize(); ps != 0 && ps != t.pageSize {
		tx.Rollback()
		return fmt.Errorf("WAL page size %d, database has %d: %w", t.pageSize, ps, pager.ErrInvalidWrite)
	}
	pgnos := make([]uint32, 0, len(t.pages))
	for p := range t.pages {
		if p <= t.dbPages {
			pgnos = append(pgnos, p)
		}
	}
	slices.Sort(pgnos) // page 1 first: a new database learns its page size from it
	page := make([]byte, t.pageSize)
	for _, p := range pgnos {
		if err := s.readAt(page, t.pages[p]); err != nil {
			tx.Rollback()
			return fmt.Errorf("read WAL frame of page %d: %w", p, err)
		}
		if err := tx.WritePage(ctx, p, page); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Truncate(ctx, int64(t.dbPages)*int64(t.pageSize)); err != nil {
		tx.Rollback()
		return err
	}
	info, err := tx.Commit(ctx)
	d.lastWrite = time.Now()
	if d.agent != nil {
		defer d.agent.poke() // the lease's idle timer restarts
	}
	if err == nil {
		d.walTXID = info.Head.TXID
	}
	// The host's read view (rollback-mode bookkeeping, staleLocked) follows
	// the head; reads go to the overlay, and the kernel's cache of the file
	// stays right either way.
	return d.committedLocked(ctx, "WAL commit frame", err)
}
