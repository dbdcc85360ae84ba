package pager

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/kvfs/kvfs/ltx"
)

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// Tx is a database's open write transaction: the pages written since Begin,
// on top of the head it began from. Nothing reaches etcd before Commit.
// Its methods are safe for concurrent use.
//
// Writes are file-style (WriteAt) or whole pages (WritePage). A write that
// covers part of a page is a read-modify-write of that page. The first
// write of an empty file sets the page size: a SQLite header's at offset
// 0, else PlainPageSize, and the file is plain (Head.Plain). A later
// header with another page size (VACUUM or a backup changing it) keeps
// the stored page size and makes the file plain. Any content and size are
// accepted; the commit finds whether the result is
// a database or a plain file (plainLocked). A plain file's last page is
// zero past its size.
type Tx struct {
	mu       sync.Mutex
	db       *Database
	base     Head
	baseRev  int64 // mod revision of the base head, compared at commit
	v        view  // what the transaction reads beneath its own writes
	fence    Fence
	pageSize uint32
	size     int64
	low      uint32 // fewest pages the file had during the transaction
	dirty    *dirtySet
	quota    Quota
	plain    bool // the file is plain: its first write was not a SQLite header, or a size cut a page
	done     bool
}

// Begin opens the write transaction. It fails with ErrReadOnly without a
// fence (see Acquire) and ErrTxOpen while another is open.
func (db *Database) Begin(ctx context.Context) (*Tx, error) {
	if err := db.refresh(ctx); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.fence == nil {
		return nil, fmt.Errorf("begin %s: %w", db.name, ErrReadOnly)
	}
	if db.tx != nil {
		return nil, fmt.Errorf("begin %s: %w", db.name, ErrTxOpen)
	}
	v := db.viewLocked()
	db.pinRevs[v.rev]++
	tx := &Tx{
		db: db, base: db.head, baseRev: db.headRev, v: v, fence: db.fence,
		pageSize: db.head.PageSize, size: db.head.Size(), low: db.head.Pages, quota: db.p.quota(db.Path()),
		plain: db.head.Plain,
	}
	tx.dirty = newDirtySet(int(tx.pageSize), db.p.opts.DirtyMemBytes, db.p.opts.SpoolDir)
	db.tx = tx
	return tx, nil
}

// Base returns the head the transaction started from.
func (tx *Tx) Base() Head { return tx.base }

// PageSize returns the page size, 0 until the first write of a new database.
func (tx *Tx) PageSize() uint32 {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.pageSize
}

// Size returns the file size in bytes as the transaction sees it.
func (tx *Tx) Size() int64 {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.size
}

// DirtyPages returns the number of pages written.
func (tx *Tx) DirtyPages() int {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.dirty.len()
}

// ReadPage reads page pgno as the transaction sees it.
func (tx *Tx) ReadPage(ctx context.Context, pgno uint32, dst []byte) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	return tx.readPageLocked(ctx, pgno, dst[:tx.pageSize])
}

func (tx *Tx) readPageLocked(ctx context.Context, pgno uint32, dst []byte) error {
	if ok, err := tx.dirty.get(pgno, dst); ok || err != nil {
		return err
	}
	// A page not written in this transaction that was past the end at
	// some point of it (a shrink, then growth) reads as zeros.
	if pgno > tx.low {
		clear(dst)
		return nil
	}
	return tx.db.readPage(ctx, tx.v, pgno, dst)
}

// ReadAt reads as from the file the transaction has written so far.
func (tx *Tx) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return 0, ErrTxDone
	}
	return readAt(p, off, tx.size, tx.pageSize, func(pgno uint32, dst []byte) error {
		return tx.readPageLocked(ctx, pgno, dst)
	})
}

// WritePage writes one whole page.
func (tx *Tx) WritePage(ctx context.Context, pgno uint32, data []byte) error {
	if pgno == 0 {
		return fmt.Errorf("write page 0: %w", ErrInvalidWrite)
	}
	_, err := tx.WriteAt(ctx, data, int64(pgno-1)*int64(len(data)))
	return err
}

// WriteAt writes p at off, extending the file as needed.
func (tx *Tx) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return 0, ErrTxDone
	}
	if off < 0 {
		return 0, fmt.Errorf("write at %d: %w", off, ErrInvalidWrite)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if tx.pageSize == 0 {
		ps, err := headerPageSize(p, off)
		if err != nil {
			ps, tx.plain = PlainPageSize, true // not a SQLite header: a plain file
		}
		tx.pageSize = ps
		tx.dirty = newDirtySet(int(ps), tx.db.p.opts.DirtyMemBytes, tx.db.p.opts.SpoolDir)
	}
	ps := int64(tx.pageSize)
	end := off + int64(len(p))
	if max := tx.db.p.opts.PlainMaxBytes; tx.plain && end > max && end > tx.size {
		return 0, fmt.Errorf("write %d bytes at %d: plain files are at most %d bytes: %w", len(p), off, max, ErrFileTooLarge)
	}
	if off == 0 && len(p) >= 18 && !tx.plain {
		if got, err := headerPageSize(p, 0); err == nil && got != tx.pageSize {
			// SQLite changing the page size (VACUUM, a backup into this
			// file): the file keeps its pages of tx.pageSize bytes and is
			// stored as plain, byte for byte, until it is emptied.
			tx.plain = true
		}
	}
	if last := (end + ps - 1) / ps; tx.quota.MaxPages > 0 && last > tx.quota.MaxPages && last > int64(tx.base.Pages) {
		return 0, &QuotaError{DB: tx.db.name, What: "pages", Used: last, Max: tx.quota.MaxPages}
	}
	if end > int64(^uint32(0))*ps {
		return 0, fmt.Errorf("write at %d: beyond the largest database: %w", off, ErrInvalidWrite)
	}
	var page []byte // for partial pages only: whole ones go in as they are
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		pgno := uint32(pos/ps) + 1
		in := int(pos % ps)
		k := len(p) - n
		if k > int(ps)-in {
			k = int(ps) - in
		}
		data := p[n : n+k]
		if k < int(ps) {
			if page == nil {
				page = make([]byte, ps)
			}
			if err := tx.readPageLocked(ctx, pgno, page); err != nil {
				return n, err
			}
			copy(page[in:], data)
			data = page
		}
		if err := tx.putPage(ctx, pgno, data); err != nil {
			return n, err
		}
		n += k
		if pos+int64(k) > tx.size {
			tx.size = pos + int64(k)
		}
	}
	return n, nil
}

// putPage stores a dirty page, enforcing the byte quota.
func (tx *Tx) putPage(ctx context.Context, pgno uint32, page []byte) error {
	if pgno == lockPgno(tx.pageSize) && !tx.plain {
		// SQLite never writes the lock page; anyone else gets zeros back.
		return nil
	}
	// The encoded size matters only under a byte quota.
	frame := int(tx.pageSize)
	if tx.quota.MaxBytes > 0 {
		frame = ltx.FrameSize(page)
	}
	if max := tx.quota.MaxBytes; max > 0 {
		old := 0
		if tx.dirty.has(pgno) {
			old = tx.dirty.frames[pgno]
		}
		used := tx.v.usage() + tx.dirty.estimate() - int64(old) + int64(frame) + commitOverhead
		if used > max {
			// A write that puts back the committed content (SQLite rolling
			// back after SQLITE_FULL) is always accepted: it undoes dirt.
			if tx.restoresBase(ctx, pgno, page) {
				tx.dirty.drop(pgno)
				return nil
			}
			return &QuotaError{DB: tx.db.name, What: "bytes", Used: used, Max: max}
		}
	}
	return tx.dirty.put(pgno, page, frame)
}

// commitOverhead approximates the bytes of a commit beyond its page frames:
// LTX header, trailer and index, and the page index row.
const commitOverhead = 256

func (tx *Tx) restoresBase(ctx context.Context, pgno uint32, page []byte) bool {
	if pgno > tx.base.Pages {
		return false
	}
	base := make([]byte, tx.pageSize)
	if err := tx.db.readPage(ctx, tx.v, pgno, base); err != nil {
		return false
	}
	return bytes.Equal(base, page)
}

// Truncate sets the file size. Shrinking drops pages above the new end;
// growing exposes zeros. A size that is not a whole number of pages makes
// the file plain.
func (tx *Tx) Truncate(ctx context.Context, size int64) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	if size < 0 {
		return fmt.Errorf("truncate to %d bytes: %w", size, ErrInvalidWrite)
	}
	if size == 0 {
		// An empty file has no page size: the next write of a SQLite
		// header may bring another (cp over an existing database).
		tx.dirty.close()
		tx.pageSize, tx.size, tx.low, tx.plain = 0, 0, 0, false
		tx.dirty = newDirtySet(0, tx.db.p.opts.DirtyMemBytes, tx.db.p.opts.SpoolDir)
		return nil
	}
	if tx.pageSize == 0 {
		tx.pageSize, tx.plain = PlainPageSize, true
		tx.dirty = newDirtySet(PlainPageSize, tx.db.p.opts.DirtyMemBytes, tx.db.p.opts.SpoolDir)
	}
	ps := int64(tx.pageSize)
	if size%ps != 0 {
		tx.plain = true
	}
	if max := tx.db.p.opts.PlainMaxBytes; tx.plain && size > max && size > tx.size {
		return fmt.Errorf("truncate to %d bytes: plain files are at most %d bytes: %w", size, max, ErrFileTooLarge)
	}
	pages := (size + ps - 1) / ps
	if tx.quota.MaxPages > 0 && pages > tx.quota.MaxPages && pages > int64(tx.base.Pages) {
		return &QuotaError{DB: tx.db.name, What: "pages", Used: pages, Max: tx.quota.MaxPages}
	}
	tx.dirty.truncate(uint32(pages))
	tx.low = min(tx.low, uint32(pages))
	if cut := size % ps; size < tx.size && cut != 0 {
		// The new last page is zero past the end, so that growing the file
		// again exposes zeros.
		page := make([]byte, ps)
		if err := tx.readPageLocked(ctx, uint32(pages), page); err != nil {
			return err
		}
		clear(page[cut:])
		if err := tx.putPage(ctx, uint32(pages), page); err != nil {
			return err
		}
	}
	tx.size = size
	return nil
}

// plainLocked reports whether the file as written is plain rather than a
// database: its size is not a whole number of pages, or its page 1 lacks a
// SQLite header giving the page size. A database whose page 1 is not
// rewritten stays one (no page read at every commit).
func (tx *Tx) plainLocked(ctx context.Context) (bool, error) {
	ps := int64(tx.pageSize)
	switch {
	case tx.size == 0:
		return false, nil
	case tx.size%ps != 0:
		return true, nil
	case !tx.plain && !tx.base.Plain && !tx.dirty.has(1):
		return false, nil
	}
	var page []byte
	if tx.dirty.has(1) {
		// In place when in memory: nearly every commit rewrites page 1.
		var err error
		if page, err = tx.dirty.view(1, new([]byte)); err != nil {
			return false, err
		}
	} else {
		page = make([]byte, ps)
		if err := tx.readPageLocked(ctx, 1, page); err != nil {
			return false, err
		}
	}
	got, err := headerPageSize(page, 0)
	return err != nil || got != tx.pageSize, nil
}

// Rollback discards the transaction. It is safe after Commit.
func (tx *Tx) Rollback() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.finishLocked()
}

func (tx *Tx) finishLocked() {
	if tx.done {
		return
	}
	tx.done = true
	tx.dirty.close()
	tx.db.mu.Lock()
	if tx.db.tx == tx {
		tx.db.tx = nil
	}
	tx.db.mu.Unlock()
	tx.db.unpin(tx.v.rev)
}

// headerPageSize reads the page size from a SQLite header written at off.
func headerPageSize(p []byte, off int64) (uint32, error) {
	if off != 0 || len(p) < 100 || !bytes.Equal(p[:16], sqliteMagic) {
		return 0, fmt.Errorf("first write of a new database must be a SQLite header at offset 0 (got %d bytes at %d): %w",
			len(p), off, ErrInvalidWrite)
	}
	ps := uint32(binary.BigEndian.Uint16(p[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return 0, fmt.Errorf("SQLite header page size %d: %w", ps, ErrInvalidWrite)
	}
	return ps, nil
}
