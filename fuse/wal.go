package fuse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SQLite's write-ahead log format (https://sqlite.org/fileformat.html#the_write_ahead_log):
// a 32-byte header, then frames of a 24-byte header and one page. Every
// frame carries the header's two salts and a checksum over the log so far
// (header, then each frame's first 8 bytes and page); a frame whose
// "database size after commit" field is non-zero ends a transaction.
const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682 // checksums over little-endian words
	walMagicBE         = 0x377f0683 // over big-endian words
	walVersion         = 3007000
)

var (
	// errWALHeader: bytes at the start of a -wal that are not a header;
	// SQLite's recovery reads no frame after them.
	errWALHeader = errors.New("not a valid SQLite WAL header")
	// errWALChain is returned by the fsync of a -wal whose last commit
	// frame does not chain (salt or checksum): SQLite would not count that
	// transaction as committed, and neither does kvfs.
	errWALChain = errors.New("the WAL's last commit frame does not chain (salt or checksum mismatch): the transaction is not committed")
	// errWALRewind refuses a frame written over a transaction already
	// committed, in the same log generation: SQLite on this host did not
	// learn of that commit (its writer died between the commit frame and
	// the wal-index), and a transaction built without it must not land.
	errWALRewind = errors.New("WAL frame written over a committed transaction (its writer died before publishing it); close every connection to the database on this host and retry")
)

// walChecksum extends the running checksum (s1, s2) over b, whose length is
// a multiple of 8, read as 32-bit words in order.
func walChecksum(order binary.ByteOrder, s1, s2 uint32, b []byte) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += order.Uint32(b[i:]) + s2
		s2 += order.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}

// walHeader is a parsed -wal header.
type walHeader struct {
	order        binary.ByteOrder
	pageSize     uint32
	salt1, salt2 uint32
	cks1, cks2   uint32
}

// parseWALHeader parses and checks a -wal header.
func parseWALHeader(b []byte) (walHeader, error) {
	if len(b) < walHeaderSize {
		return walHeader{}, fmt.Errorf("%w: %d bytes", errWALHeader, len(b))
	}
	var h walHeader
	switch binary.BigEndian.Uint32(b) {
	case walMagicLE:
		h.order = binary.LittleEndian
	case walMagicBE:
		h.order = binary.BigEndian
	default:
		return walHeader{}, fmt.Errorf("%w: magic %#x", errWALHeader, binary.BigEndian.Uint32(b))
	}
	if v := binary.BigEndian.Uint32(b[4:]); v != walVersion {
		return walHeader{}, fmt.Errorf("%w: version %d", errWALHeader, v)
	}
	h.pageSize = binary.BigEndian.Uint32(b[8:])
	if h.pageSize < 512 || h.pageSize > 65536 || h.pageSize&(h.pageSize-1) != 0 {
		return walHeader{}, fmt.Errorf("%w: page size %d", errWALHeader, h.pageSize)
	}
	h.salt1, h.salt2 = binary.BigEndian.Uint32(b[16:]), binary.BigEndian.Uint32(b[20:])
	h.cks1, h.cks2 = walChecksum(h.order, 0, 0, b[:24])
	if h.cks1 != binary.BigEndian.Uint32(b[24:]) || h.cks2 != binary.BigEndian.Uint32(b[28:]) {
		return walHeader{}, fmt.Errorf("%w: header checksum mismatch", errWALHeader)
	}
	return h, nil
}

// walTxn is one transaction found in a -wal: the newest frame of each page
// it wrote, and the database size after it.
type walTxn struct {
	pages    map[uint32]int64 // pgno → offset of the page data in the log
	dbPages  uint32           // database size in pages after the commit
	end      int64            // frames in the log through its commit frame
	cks1     uint32
	cks2     uint32
	pageSize uint32
	hdr      walHeader // of the log generation it belongs to
}

// walLog follows one -wal file as SQLite writes it and finds the
// transactions it commits. A transaction is committed once its commit frame
// is written and chains to the log before it (salts and checksums): that
// is what SQLite's recovery would count as committed, so kvfs commits it to
// etcd before that write returns. Frames of a transaction SQLite rewrites
// before committing (a page changed again after the cache spilled) get
// their checksums rewritten after the commit frame; the rewrite of the
// commit frame's header completes the chain then.
//
// A walLog is not safe for concurrent use; its sideNode's mu guards it.
type walLog struct {
	hdr       walHeader
	valid     bool  // hdr holds a valid header
	committed int64 // frames of this generation committed (in etcd)
	written   int64 // highest frame whose page this generation wrote
	cks1      uint32
	cks2      uint32
	pending   bool // a commit frame past committed does not chain yet
}

func (w *walLog) frameSize() int64 { return walFrameHeaderSize + int64(w.hdr.pageSize) }

// frameOffset returns the offset of frame n (1-based).
func (w *walLog) frameOffset(n int64) int64 { return walHeaderSize + (n-1)*w.frameSize() }

// reset forgets the log: it was truncated or deleted.
func (w *walLog) reset() { *w = walLog{} }

// setHeader starts a new generation of the log with header h.
func (w *walLog) setHeader(h walHeader) {
	*w = walLog{hdr: h, valid: true, cks1: h.cks1, cks2: h.cks2}
}

// touched returns the frame (1-based) whose header a write of n bytes at
// off rewrites, or whose page it completes; 0 if neither. A header write
// counts only over a frame whose page this generation wrote already
// (walRewriteChecksums): SQLite writes every new frame as its header, then
// its page, and what lies beyond the header until the page lands is an
// older generation's frame, which may even hold the same bytes (an empty
// b-tree page): taking that for the frame committed it a write early.
func (w *walLog) touched(off int64, n int) int64 {
	if !w.valid || off < walHeaderSize {
		return 0
	}
	fs := w.frameSize()
	rel := off - walHeaderSize
	frame, in := rel/fs+1, rel%fs
	switch {
	case in == 0 && n == walFrameHeaderSize:
		if frame <= w.written {
			return frame // a header rewrite (walRewriteChecksums)
		}
	case (rel+int64(n))%fs == 0:
		return (rel + int64(n)) / fs // the write ends frame k's page
	}
	return 0
}

// wrote records a write of n bytes at off: the frames whose pages it ends.
func (w *walLog) wrote(off int64, n int) {
	if !w.valid || off < walHeaderSize {
		return
	}
	if end := off + int64(n) - walHeaderSize; end >= w.frameSize() {
		w.written = max(w.written, end/w.frameSize())
	}
}

// firstTouched returns the first frame a write of n bytes at off reaches.
func (w *walLog) firstTouched(off int64) int64 {
	if !w.valid || off < walHeaderSize {
		return 0
	}
	return (off-walHeaderSize)/w.frameSize() + 1
}

// commitFrame reports whether frame n of f is a commit frame of this
// generation (its size field set, its salts the header's).
func (w *walLog) commitFrame(f io.ReaderAt, n int64) bool {
	var h [walFrameHeaderSize]byte
	if _, err := f.ReadAt(h[:], w.frameOffset(n)); err != nil {
		return false
	}
	return binary.BigEndian.Uint32(h[4:]) != 0 &&
		binary.BigEndian.Uint32(h[8:]) == w.hdr.salt1 && binary.BigEndian.Uint32(h[12:]) == w.hdr.salt2
}

// next returns the transaction that follows the committed frames in f (of
// size bytes), if its commit frame is written and the chain holds through
// it; nil if not (yet).
func (w *walLog) next(f io.ReaderAt, size int64) (*walTxn, error) {
	fs := w.frameSize()
	t := &walTxn{pages: map[uint32]int64{}, cks1: w.cks1, cks2: w.cks2, pageSize: w.hdr.pageSize, hdr: w.hdr}
	frame := make([]byte, fs)
	for n := w.committed + 1; w.frameOffset(n)+fs <= size; n++ {
		off := w.frameOffset(n)
		if _, err := f.ReadAt(frame, off); err != nil {
			return nil, fmt.Errorf("read WAL frame %d: %w", n, err)
		}
		if binary.BigEndian.Uint32(frame[8:]) != w.hdr.salt1 || binary.BigEndian.Uint32(frame[12:]) != w.hdr.salt2 {
			return nil, nil
		}
		t.cks1, t.cks2 = walChecksum(w.hdr.order, t.cks1, t.cks2, frame[:8])
		t.cks1, t.cks2 = walChecksum(w.hdr.order, t.cks1, t.cks2, frame[walFrameHeaderSize:])
		if t.cks1 != binary.BigEndian.Uint32(frame[16:]) || t.cks2 != binary.BigEndian.Uint32(frame[20:]) {
			return nil, nil
		}
		t.pages[binary.BigEndian.Uint32(frame)] = off + walFrameHeaderSize
		if commit := binary.BigEndian.Uint32(frame[4:]); commit != 0 {
			t.dbPages, t.end = commit, n
			return t, nil
		}
	}
	return nil, nil
}

// landed records t as committed.
func (w *walLog) landed(t *walTxn) {
	w.committed, w.cks1, w.cks2, w.pending = t.end, t.cks1, t.cks2, false
	w.written = max(w.written, t.end)
}
