package pager

import (
	"context"
	"fmt"
	"sync"
)

// Overlay is a database file as a WAL-mode SQLite sees it on this host: a
// snapshot (the commit the host's write-ahead log began from) with the
// pages SQLite's checkpoints copied from the log written over it.
//
// In WAL mode SQLite reads a page from the database file only when the log
// has no frame for it in the reader's snapshot, and a checkpoint copies a
// frame into the file only once no reader can need the older copy; so the
// file must show exactly what the checkpoints wrote, not the latest commit
// (a reader whose snapshot is older than a later frame would otherwise read
// that frame's page from the file). Every page an overlay holds is already
// committed (it came from a frame this host committed), so an overlay is
// never committed: it is dropped once SQLite restarts, truncates or deletes
// the log, when the file equals the latest commit. Its pages stay in memory
// up to Options.DirtyMemBytes and spill to the spool beyond. Its methods are
// safe for concurrent use.
type Overlay struct {
	mu       sync.Mutex
	snap     *Snapshot
	pageSize uint32
	size     int64
	low      uint32 // fewest pages the file had: pages above it not written read as zeros
	dirty    *dirtySet
	closed   bool
}

// NewOverlay returns an empty overlay over snap, which it owns from then on
// (Close closes it).
func (db *Database) NewOverlay(snap *Snapshot) *Overlay {
	h := snap.Head()
	return &Overlay{
		snap: snap, pageSize: h.PageSize, size: h.Size(), low: h.Pages,
		dirty: newDirtySet(int(h.PageSize), db.p.opts.DirtyMemBytes, db.p.opts.SpoolDir),
	}
}

// Base returns the commit the overlay lies over.
func (o *Overlay) Base() Head { return o.snap.Head() }

// Size returns the file's size in bytes.
func (o *Overlay) Size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size
}

// Pages returns how many pages were written over the base.
func (o *Overlay) Pages() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0
	}
	return o.dirty.len()
}

// ReadAt reads as from the file: written pages, else the base's.
func (o *Overlay) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrTxDone
	}
	return readAt(p, off, o.size, o.pageSize, func(pgno uint32, dst []byte) error {
		return o.readPageLocked(ctx, pgno, dst)
	})
}

func (o *Overlay) readPageLocked(ctx context.Context, pgno uint32, dst []byte) error {
	if ok, err := o.dirty.get(pgno, dst); ok || err != nil {
		return err
	}
	if pgno > o.low {
		clear(dst)
		return nil
	}
	return o.snap.ReadPage(ctx, pgno, dst)
}

// WriteAt writes p at off, extending the file as needed. A write of part
// of a page is a read-modify-write of that page. The overlay's database
// must have a page size (WAL mode needs one).
func (o *Overlay) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrTxDone
	}
	if o.pageSize == 0 {
		return 0, fmt.Errorf("write at %d of a database without a page size: %w", off, ErrInvalidWrite)
	}
	if off < 0 {
		return 0, fmt.Errorf("write at %d: %w", off, ErrInvalidWrite)
	}
	ps := int64(o.pageSize)
	var page []byte
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		pgno := uint32(pos/ps) + 1
		in := int(pos % ps)
		k := min(len(p)-n, int(ps)-in)
		data := p[n : n+k]
		if k < int(ps) {
			if page == nil {
				page = make([]byte, ps)
			}
			if err := o.readPageLocked(ctx, pgno, page); err != nil {
				return n, err
			}
			copy(page[in:], data)
			data = page
		}
		if pgno != lockPgno(o.pageSize) {
			if err := o.dirty.put(pgno, data, int(ps)); err != nil {
				return n, err
			}
		}
		n += k
		o.size = max(o.size, pos+int64(k))
	}
	return n, nil
}

// Truncate sets the file's size, a whole number of pages.
func (o *Overlay) Truncate(size int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrTxDone
	}
	if size < 0 || o.pageSize == 0 || size%int64(o.pageSize) != 0 {
		return fmt.Errorf("truncate to %d bytes (page size %d): %w", size, o.pageSize, ErrInvalidWrite)
	}
	pages := uint32(size / int64(o.pageSize))
	o.dirty.truncate(pages)
	o.low = min(o.low, pages)
	o.size = size
	return nil
}

// Close drops the written pages and unpins the base.
func (o *Overlay) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	o.dirty.close()
	o.snap.Close()
}
