package ltx

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"io"

	sltx "github.com/superfly/ltx"
)

// Writer streams one blob to an io.Writer, page by page, for transactions too
// big to hold in memory; Encode uses it for blobs in memory. Pages must be
// written in ascending page-number order. Memory use is one compressed
// frame, borrowed from a pool for each WritePage, plus the page index (a few
// bytes a page, the index as it will be written).
//
// The bytes written are exactly those sltx.Encoder writes for the same
// header and pages (TestEncodeMatchesSLTX checks this): the Writer encodes
// frames itself so that it can reuse one LZ4 compressor, with its 128 KiB
// hash table, across pages and blobs, where an sltx.Encoder allocates its
// own.
//
// A WritePage or Close that fails with ErrInvalid has written nothing for
// that call; after any other error (the underlying writer failed) the Writer
// is dead and every later call returns that error. The blob is complete
// only after Close returns nil. A Writer is not safe for concurrent use.
type Writer struct {
	ew    errWriter
	bw    *bufio.Writer // nil when writing straight to memory
	hdr   Header
	sh    sltx.Header
	order pageOrder
	n     int64    // blob bytes written so far
	crc   uint64   // CRC64-ISO of the file checksum's input so far, without ChecksumFlag
	tail  []byte   // the end-of-pages marker, then the page index records so far
	sum   Checksum // XOR of page checksums, for snapshots with tracked checksums
	err   error    // sticky I/O error
	done  bool     // Close succeeded

	// tailBuf is tail's first backing array: the index of a small blob
	// needs no allocation.
	tailBuf [64]byte
}

// NewWriter validates hdr and writes the blob header to w. Errors match
// ErrInvalid when hdr breaks a rule in the package documentation; other
// errors come from w. Output to w is buffered (except to a bytes.Buffer,
// which needs none); Close flushes it.
func NewWriter(w io.Writer, hdr Header) (*Writer, error) {
	if b, ok := w.(*bytes.Buffer); ok {
		return newWriter(b, hdr)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	wr, err := newWriter(bw, hdr)
	if err != nil {
		return nil, err
	}
	wr.bw = bw
	return wr, nil
}

// newWriter returns a Writer writing to w without extra buffering.
func newWriter(w io.Writer, hdr Header) (*Writer, error) {
	sh, err := hdr.toSLTX()
	if err != nil {
		return nil, err
	}
	// The trailer's post-apply checksum is known now; check it before
	// writing anything, as sltx.Encoder.Close would at the end (toSLTX
	// already enforces the same rules, so this cannot fail today).
	tr := sltx.Trailer{PostApplyChecksum: hdr.PostApplyChecksum, FileChecksum: sltx.ChecksumFlag}
	if err := tr.Validate(sh); err != nil {
		return nil, invalid("validate trailer", err)
	}
	hb, err := sh.MarshalBinary()
	if err != nil {
		return nil, invalid("marshal header", err)
	}
	wr := &Writer{ew: errWriter{w: w}, hdr: hdr, sh: sh, order: newPageOrder(sh)}
	wr.tail = wr.tailBuf[:sltx.PageHeaderSize] // zeros: the end-of-pages marker
	if _, err := wr.ew.Write(hb); err != nil {
		wr.err = fmt.Errorf("write header: %w", err)
		return nil, wr.err
	}
	wr.n = int64(len(hb))
	wr.crc = crc64.Update(0, crcTable, hb)
	return wr, nil
}

// WritePage appends page pgno. pgno must be greater than every page number
// written before, at most Header.Commit and not the lock page; data must be
// exactly PageSize bytes and is not retained. In a snapshot, pages must be
// 1, 2, ... in sequence, skipping the lock page.
func (w *Writer) WritePage(pgno uint32, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("write page %d: writer closed", pgno)
	}
	if uint32(len(data)) != w.sh.PageSize {
		return invalidf("page %d is %d bytes, want page size %d", pgno, len(data), w.sh.PageSize)
	}
	o := w.order
	if err := o.next(pgno); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	fc := compressors.Get().(*frameCompressor)
	defer compressors.Put(fc)
	frame, err := fc.appendFrame(fc.buf[:0], pgno, data)
	fc.buf = frame[:0] // keep the grown buffer
	if err != nil {
		return invalid(fmt.Sprintf("encode page %d", pgno), err)
	}
	if _, err := w.ew.Write(frame); err != nil {
		w.err = fmt.Errorf("write page %d: %w", pgno, err)
		return w.err
	}

	// The file checksum covers the frame header and size and the
	// uncompressed page, not the compressed bytes.
	w.crc = crc64.Update(w.crc, crcTable, frame[:frameHeaderSize])
	w.crc = crc64.Update(w.crc, crcTable, data)
	w.tail = binary.AppendUvarint(w.tail, uint64(pgno))
	w.tail = binary.AppendUvarint(w.tail, uint64(w.n))
	w.tail = binary.AppendUvarint(w.tail, uint64(len(frame)))
	w.n += int64(len(frame))
	w.order = o
	if w.sh.IsSnapshot() && !w.sh.NoChecksum() {
		w.sum ^= PageChecksum(pgno, data)
	}
	return nil
}

// Close finishes the blob: it writes the end of the page block, the page
// index and the trailer, and flushes. For a snapshot it checks that every
// page up to Commit was written and, with tracked checksums, that
// Header.PostApplyChecksum equals the checksum of the pages written; both
// are ErrInvalid and leave the blob unfinished. Close after a successful
// Close is a no-op. Close does not close the underlying writer.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if err := w.order.done(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if w.sh.IsSnapshot() && !w.sh.NoChecksum() {
		if got := sltx.ChecksumFlag | w.sum; got != w.hdr.PostApplyChecksum {
			return invalidf("snapshot post-apply checksum %s does not match its pages (%s)", w.hdr.PostApplyChecksum, got)
		}
	}

	// End-of-pages marker and index records (already in tail), the
	// index's end marker, its size, then the trailer: the post-apply
	// checksum and the file checksum over everything before it.
	t := append(w.tail, 0)
	t = binary.BigEndian.AppendUint64(t, uint64(len(t)-sltx.PageHeaderSize))
	t = binary.BigEndian.AppendUint64(t, uint64(w.hdr.PostApplyChecksum))
	crc := crc64.Update(w.crc, crcTable, t)
	t = binary.BigEndian.AppendUint64(t, uint64(sltx.ChecksumFlag|Checksum(crc)))
	if _, err := w.ew.Write(t); err != nil {
		w.err = fmt.Errorf("write page index and trailer: %w", err)
		return w.err
	}
	w.n += int64(len(t))
	if w.bw != nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("flush: %w", err)
			return w.err
		}
	}
	w.done = true
	return nil
}

// N returns the number of blob bytes written so far (before buffering).
func (w *Writer) N() int64 { return w.n }

// errWriter remembers the first error of the writer it wraps.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.err = err
	return n, err
}
