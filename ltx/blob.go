package ltx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	sltx "github.com/superfly/ltx"
)

// Blob gives random access to the pages of one encoded blob without decoding
// the others. OpenBlob checks the blob's structure (header, trailer, page
// index, frame layout); ReadPage checks the one frame it decodes. Neither
// verifies the file checksum, which covers every page: a flipped bit inside
// a page's compressed data, the timestamp or a checksum field can go
// unnoticed. Use Verify or Decode when the bytes are not already trusted.
//
// A Blob opened with OpenBlob keeps a reference to its bytes; they must not
// change while the Blob is in use. One opened with OpenBlobAt reads its
// header and index once and each page's frame when asked, so a page of a
// blob too large to fetch whole costs one small read. A Blob is safe for
// concurrent use if its ReaderAt is.
type Blob struct {
	b     []byte      // the whole blob, when in memory
	r     io.ReaderAt // otherwise, where to read frames
	size  int64
	hdr   Header
	pgnos []uint32 // ascending
	offs  []int64  // offs[i] is the offset of page pgnos[i]'s frame; offs[len(pgnos)] is the end of the page block
}

// OpenBlob parses the header, trailer and page index of b. It checks that
// the header and trailer are valid, that the index records ascending page
// numbers allowed by the header (see the package documentation) and that
// their frames tile the page block exactly, from the end of the header to
// the end-of-pages marker. It does not decompress any page. Problems return
// an error matching ErrCorrupt.
func OpenBlob(b []byte) (*Blob, error) {
	return openBlob(nil, b, int64(len(b)))
}

// OpenBlobAt is OpenBlob for a blob of size bytes read through r: it reads
// the header, then the page index and trailer at the end, and nothing else.
// An error from r is returned as is; bad bytes match ErrCorrupt.
func OpenBlobAt(r io.ReaderAt, size int64) (*Blob, error) {
	return openBlob(r, nil, size)
}

// openBlob opens the blob in b when r is nil, without copying any of it,
// and otherwise the blob of size bytes behind r.
func openBlob(r io.ReaderAt, b []byte, size int64) (*Blob, error) {
	if size < minBlobSize {
		return nil, corruptf("open blob", "%d bytes, want at least %d", size, minBlobSize)
	}
	// read returns n bytes at off, which the checks below keep in bounds.
	read := func(n int64, off int64) ([]byte, error) {
		if r == nil {
			return b[off : off+n], nil
		}
		buf := make([]byte, n)
		_, err := r.ReadAt(buf, off)
		return buf, err
	}
	hb, err := read(sltx.HeaderSize, 0)
	if err != nil {
		return nil, fmt.Errorf("open blob: read header: %w", err)
	}
	sh, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	last, err := read(indexTailSize, size-indexTailSize)
	if err != nil {
		return nil, fmt.Errorf("open blob: read trailer: %w", err)
	}
	var tr sltx.Trailer
	if err := tr.UnmarshalBinary(last[8:]); err != nil {
		return nil, corrupt("read trailer", err)
	}
	if err := checkTrailer(sh, tr); err != nil {
		return nil, err
	}

	// Locate the index from its size field, just before the trailer.
	sizeAt := size - indexTailSize
	isize := binary.BigEndian.Uint64(last)
	if isize == 0 || isize > uint64(sizeAt) || sizeAt-sltx.PageHeaderSize-int64(isize) < sltx.HeaderSize {
		return nil, corruptf("read page index", "index size %d does not fit in a %d-byte blob", isize, size)
	}
	endOfPages := sizeAt - sltx.PageHeaderSize - int64(isize)
	tail, err := read(size-endOfPages, endOfPages)
	if err != nil {
		return nil, fmt.Errorf("open blob: read page index: %w", err)
	}
	if !isZero(tail[:sltx.PageHeaderSize]) {
		return nil, corruptf("read page index", "no end-of-pages marker at offset %d", endOfPages)
	}

	// The index must cover every frame, back to back. Each frame holds at
	// least frameHeaderSize+1 bytes, which bounds the number of entries.
	blob := &Blob{b: b, r: r, size: size, hdr: headerFromSLTX(sh, tr)}
	maxPages := int((endOfPages - sltx.HeaderSize) / (frameHeaderSize + 1))
	blob.pgnos = make([]uint32, 0, min(maxPages, int(isize)/3))
	blob.offs = make([]int64, 0, min(maxPages, int(isize)/3)+1)
	order := newPageOrder(sh)
	off := int64(sltx.HeaderSize)
	ir := bytes.NewReader(tail[sltx.PageHeaderSize : len(tail)-sltx.TrailerSize])
	err = parseIndex(ir, maxFrameSize(sh.PageSize), func(pgno uint32, o, size int64) error {
		if err := order.next(pgno); err != nil {
			return err
		}
		if o != off {
			return fmt.Errorf("page %d frame at offset %d, want %d", pgno, o, off)
		}
		if size > endOfPages-off {
			return fmt.Errorf("page %d frame [%d,+%d) overruns the page block ending at %d", pgno, o, size, endOfPages)
		}
		blob.pgnos = append(blob.pgnos, pgno)
		blob.offs = append(blob.offs, o)
		off += size
		return nil
	})
	if err != nil {
		return nil, corrupt("read page index", err)
	}
	if ir.Len() != 0 {
		return nil, corruptf("read page index", "%d bytes after the index size field", ir.Len())
	}
	if off != endOfPages {
		return nil, corruptf("read page index", "frames end at offset %d, page block ends at %d", off, endOfPages)
	}
	if err := order.done(); err != nil {
		return nil, corrupt("read page index", err)
	}
	blob.offs = append(blob.offs, endOfPages)
	return blob, nil
}

// Header returns the blob's header.
func (b *Blob) Header() Header { return b.hdr }

// Pgnos returns the page numbers in the blob, ascending, in a new slice.
func (b *Blob) Pgnos() []uint32 { return slices.Clone(b.pgnos) }

// Has reports whether the blob holds page pgno.
func (b *Blob) Has(pgno uint32) bool {
	_, ok := slices.BinarySearch(b.pgnos, pgno)
	return ok
}

// Len returns the number of pages in the blob.
func (b *Blob) Len() int { return len(b.pgnos) }

// Size returns the size of the encoded blob in bytes.
func (b *Blob) Size() int { return int(b.size) }

// Resident returns the bytes the Blob keeps in memory: the whole blob for
// OpenBlob, only its index for OpenBlobAt.
func (b *Blob) Resident() int {
	if b.b != nil {
		return len(b.b) + 12*len(b.pgnos)
	}
	return 12 * len(b.pgnos)
}

// ReadPage decodes page pgno into dst and returns it: dst[:PageSize] if dst
// has the capacity, otherwise a new slice. It decodes only that page's
// frame, checking that the frame's page header names pgno, that its size
// field matches the index and that it decompresses to exactly one page.
// It returns ErrPageNotFound if the blob does not hold pgno, and an error
// matching ErrCorrupt if the frame is bad.
func (b *Blob) ReadPage(pgno uint32, dst []byte) ([]byte, error) {
	i, ok := slices.BinarySearch(b.pgnos, pgno)
	if !ok {
		return nil, fmt.Errorf("read page %d: %w", pgno, ErrPageNotFound)
	}
	var frame []byte // at least frameHeaderSize+1 bytes, checked by OpenBlob
	if b.b != nil {
		frame = b.b[b.offs[i]:b.offs[i+1]]
	} else {
		frame = make([]byte, b.offs[i+1]-b.offs[i])
		if _, err := b.r.ReadAt(frame, b.offs[i]); err != nil {
			return nil, fmt.Errorf("read page %d: %w", pgno, err)
		}
	}
	op := func() string { return fmt.Sprintf("read page %d at offset %d", pgno, b.offs[i]) }
	var ph sltx.PageHeader
	if err := ph.UnmarshalBinary(frame); err != nil {
		return nil, corrupt(op(), err)
	}
	if ph.Pgno != pgno || ph.Flags != sltx.PageHeaderFlagSize {
		return nil, corruptf(op(), "frame header says page %d flags 0x%04x", ph.Pgno, ph.Flags)
	}
	if size := binary.BigEndian.Uint32(frame[sltx.PageHeaderSize:]); uint64(size) != uint64(len(frame)-frameHeaderSize) {
		return nil, corruptf(op(), "compressed size %d, index says %d", size, len(frame)-frameHeaderSize)
	}
	ps := int(b.hdr.PageSize)
	if cap(dst) >= ps {
		dst = dst[:ps]
	} else {
		dst = make([]byte, ps)
	}
	if err := decompressPage(frame[frameHeaderSize:], dst); err != nil {
		return nil, corrupt(op(), err)
	}
	return dst, nil
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
