package ltx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	sltx "github.com/superfly/ltx"
)

// Writer streams one blob to an io.Writer, page by page, for transactions too
// big to hold in memory. Pages must be written in ascending page-number
// order. Memory use is one page plus sltx's page index (24 bytes a page).
//
// A WritePage or Close that fails with ErrInvalid has written nothing for
// that call; after any other error (the underlying writer failed) the Writer
// is dead and every later call returns that error. The blob is complete
// only after Close returns nil. A Writer is not safe for concurrent use.
type Writer struct {
	ew    *errWriter
	bw    *bufio.Writer // nil when writing straight to memory
	enc   *sltx.Encoder
	hdr   Header
	sh    sltx.Header
	order pageOrder
	sum   Checksum // XOR of page checksums, for snapshots with tracked checksums
	err   error    // sticky I/O error
	done  bool     // Close succeeded
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
	ew := &errWriter{w: w}
	enc, err := sltx.NewEncoder(ew)
	if err != nil {
		return nil, fmt.Errorf("new encoder: %w", err)
	}
	wr := &Writer{ew: ew, enc: enc, hdr: hdr, sh: sh, order: newPageOrder(sh)}
	if err := enc.EncodeHeader(sh); err != nil {
		return nil, wr.mapErr("encode header", err)
	}
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
	if err := w.enc.EncodePage(sltx.PageHeader{Pgno: pgno}, data); err != nil {
		return w.mapErr(fmt.Sprintf("encode page %d", pgno), err)
	}
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
	w.enc.SetPostApplyChecksum(w.hdr.PostApplyChecksum)
	if err := w.enc.Close(); err != nil {
		err = w.mapErr("close encoder", err)
		w.err = err // sltx aborts the encoder on a failed Close
		return err
	}
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
func (w *Writer) N() int64 { return w.enc.N() }

// mapErr classifies an sltx encoder error: if the underlying writer failed,
// the Writer is dead and the I/O error is returned; otherwise sltx refused
// the input and the error matches ErrInvalid.
func (w *Writer) mapErr(op string, err error) error {
	if w.ew.err != nil {
		w.err = fmt.Errorf("%s: %w", op, errors.Join(w.ew.err, err))
		return w.err
	}
	return invalid(op, err)
}

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
