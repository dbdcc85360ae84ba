package ltx

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"math"

	"github.com/pierrec/lz4/v4"
	sltx "github.com/superfly/ltx"
)

// frameHeaderSize is the fixed part of a page frame: the sltx page header
// (pgno, flags) and the 4-byte compressed size that follows it.
const frameHeaderSize = sltx.PageHeaderSize + 4

// indexTailSize is the page-index size field plus the trailer, the fixed
// bytes at the end of every blob.
const indexTailSize = 8 + sltx.TrailerSize

// minBlobSize is the size of a blob with no pages: header, end-of-pages
// marker, empty index (one zero byte), index size and trailer.
const minBlobSize = sltx.HeaderSize + sltx.PageHeaderSize + 1 + indexTailSize

// crcTable is the CRC64-ISO table LTX file checksums use.
var crcTable = crc64.MakeTable(crc64.ISO)

// Decode decodes the blob b and verifies it completely: header, every page
// frame, the page index, the file checksum and, for snapshots with tracked
// checksums, the post-apply checksum. Pages are returned in ascending page
// number order, each in its own slice. Any problem with b returns an error
// matching ErrCorrupt.
func Decode(b []byte) (Header, []Page, error) {
	var pages []Page
	hdr, err := decodeStream(bytes.NewReader(b), func(pgno uint32, data []byte) {
		pages = append(pages, Page{Pgno: pgno, Data: bytes.Clone(data)})
	})
	if err != nil {
		return Header{}, nil, err
	}
	return hdr, pages, nil
}

// Verify reads one blob from r to its end and verifies it as Decode does,
// holding only one page in memory. Bytes after the blob's trailer are
// corruption. Problems with the blob return an error matching ErrCorrupt;
// a read error from r is returned wrapped, not as ErrCorrupt.
func Verify(r io.Reader) (Header, error) {
	return decodeStream(bufio.NewReaderSize(&readErrReader{r: r}, 64<<10), nil)
}

// readErrReader marks read errors other than io.EOF so that decodeStream can
// tell a failing reader from a truncated blob.
type readErrReader struct{ r io.Reader }

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err: err}
	}
	return n, err
}

// readError is a failure of the reader given to Verify.
type readError struct{ err error }

func (e *readError) Error() string { return "read blob: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// streamReader is what decodeStream reads from.
type streamReader interface {
	io.Reader
	io.ByteReader
}

// decodeStream reads and verifies one blob from r, calling fn (if not nil)
// with each page; data is only valid during the call.
func decodeStream(r streamReader, fn func(pgno uint32, data []byte)) (Header, error) {
	d := decoder{r: r, hash: crc64.New(crcTable), seq: crc64.New(crcTable)}
	hdr, err := d.decode(fn)
	var rerr *readError
	if errors.As(err, &rerr) {
		return Header{}, rerr
	}
	return hdr, err
}

// decoder holds the state of one decodeStream.
type decoder struct {
	r     streamReader
	pos   int64       // file offset of the next byte of r
	hash  hash.Hash64 // file checksum over the logical content
	seq   hash.Hash64 // (pgno, frame size) of every frame, compared with the index
	n     int         // frames read
	sh    sltx.Header
	order pageOrder
	sum   Checksum // XOR of page checksums, for snapshots with tracked checksums
	buf   [sltx.HeaderSize]byte
}

// readFull reads len(b) bytes, reporting EOF as io.ErrUnexpectedEOF: a blob
// ends only after its trailer.
func (d *decoder) readFull(op string, b []byte) error {
	n, err := io.ReadFull(d.r, b)
	d.pos += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		var rerr *readError
		if errors.As(err, &rerr) {
			return rerr
		}
		return corrupt(op, err)
	}
	return nil
}

func (d *decoder) decode(fn func(pgno uint32, data []byte)) (Header, error) {
	// Header.
	hb := d.buf[:sltx.HeaderSize]
	if err := d.readFull("read header", hb); err != nil {
		return Header{}, err
	}
	sh, err := parseHeader(hb)
	if err != nil {
		return Header{}, err
	}
	d.sh = sh
	d.order = newPageOrder(sh)
	_, _ = d.hash.Write(hb)
	tracked := sh.IsSnapshot() && !sh.NoChecksum()

	// Page frames, up to the empty page header that ends the page block.
	data := make([]byte, sh.PageSize)
	comp := make([]byte, maxFrameSize(sh.PageSize)-frameHeaderSize)
	for {
		pgno, err := d.readFrame(data, comp)
		if err != nil {
			return Header{}, err
		}
		if pgno == 0 {
			break
		}
		if tracked {
			d.sum ^= PageChecksum(pgno, data)
		}
		if fn != nil {
			fn(pgno, data)
		}
	}
	if err := d.order.done(); err != nil {
		return Header{}, corrupt("read pages", err)
	}
	endOfPages := d.pos - sltx.PageHeaderSize

	// Page index: must name exactly the frames read, back to back.
	ir := &recordingByteReader{r: d.r}
	off := int64(sltx.HeaderSize)
	seq := crc64.New(crcTable)
	n := 0
	err = parseIndex(ir, maxFrameSize(sh.PageSize), func(pgno uint32, o, size int64) error {
		if o != off {
			return fmt.Errorf("page %d frame at offset %d, want %d", pgno, o, off)
		}
		if size > endOfPages-off {
			return fmt.Errorf("page %d frame [%d,+%d) overruns the page block", pgno, o, size)
		}
		off += size
		hashFrame(seq, pgno, size)
		n++
		return nil
	})
	d.pos += int64(len(ir.b))
	if err != nil {
		var rerr *readError
		if errors.As(err, &rerr) {
			return Header{}, rerr
		}
		return Header{}, corrupt("read page index", err)
	}
	if n != d.n || off != endOfPages || seq.Sum64() != d.seq.Sum64() {
		return Header{}, corruptf("read page index", "index does not match the %d page frames", d.n)
	}
	_, _ = d.hash.Write(ir.b)

	// Trailer, then nothing.
	tb := d.buf[:sltx.TrailerSize]
	if err := d.readFull("read trailer", tb); err != nil {
		return Header{}, err
	}
	_, _ = d.hash.Write(tb[:sltx.TrailerChecksumOffset])
	var tr sltx.Trailer
	if err := tr.UnmarshalBinary(tb); err != nil {
		return Header{}, corrupt("read trailer", err)
	}
	if _, err := d.r.ReadByte(); err == nil {
		return Header{}, corruptf("read trailer", "data after trailer at offset %d", d.pos)
	} else if err != io.EOF {
		var rerr *readError
		if errors.As(err, &rerr) {
			return Header{}, rerr
		}
		return Header{}, corrupt("read trailer", err)
	}
	if got := sltx.ChecksumFlag | Checksum(d.hash.Sum64()); got != tr.FileChecksum {
		return Header{}, corrupt(fmt.Sprintf("file checksum %s, computed %s", tr.FileChecksum, got), sltx.ErrChecksumMismatch)
	}
	if err := checkTrailer(sh, tr); err != nil {
		return Header{}, err
	}
	if tracked {
		if got := sltx.ChecksumFlag | d.sum; got != tr.PostApplyChecksum {
			return Header{}, corrupt(fmt.Sprintf("snapshot post-apply checksum %s, computed %s", tr.PostApplyChecksum, got), sltx.ErrChecksumMismatch)
		}
	}
	return headerFromSLTX(sh, tr), nil
}

// readFrame reads one page frame, decompressing its page into data. It
// returns page number 0 at the end-of-pages marker.
func (d *decoder) readFrame(data, comp []byte) (uint32, error) {
	start := d.pos
	fb := d.buf[:sltx.PageHeaderSize]
	if err := d.readFull(fmt.Sprintf("read page frame %d header", d.n), fb); err != nil {
		return 0, err
	}
	_, _ = d.hash.Write(fb)
	var ph sltx.PageHeader
	if err := ph.UnmarshalBinary(fb); err != nil {
		return 0, corrupt("read page frame header", err)
	}
	if ph.IsZero() {
		return 0, nil
	}
	op := fmt.Sprintf("read page %d at offset %d", ph.Pgno, start)
	if ph.Flags != sltx.PageHeaderFlagSize {
		return 0, corruptf(op, "page flags 0x%04x, want 0x%04x (LZ4 block with size)", ph.Flags, sltx.PageHeaderFlagSize)
	}
	if err := d.order.next(ph.Pgno); err != nil {
		return 0, corrupt(op, err)
	}
	sb := d.buf[:4]
	if err := d.readFull(op, sb); err != nil {
		return 0, err
	}
	_, _ = d.hash.Write(sb)
	size := binary.BigEndian.Uint32(sb)
	if size == 0 || uint64(size) > uint64(len(comp)) {
		return 0, corruptf(op, "compressed size %d outside [1,%d]", size, len(comp))
	}
	if err := d.readFull(op, comp[:size]); err != nil {
		return 0, err
	}
	if err := decompressPage(comp[:size], data); err != nil {
		return 0, corrupt(op, err)
	}
	_, _ = d.hash.Write(data)
	d.n++
	hashFrame(d.seq, ph.Pgno, int64(frameHeaderSize)+int64(size))
	return ph.Pgno, nil
}

// decompressPage decompresses one LZ4 block into data, which it must fill
// exactly.
func decompressPage(src, data []byte) error {
	n, err := lz4.UncompressBlock(src, data)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if n != len(data) {
		return fmt.Errorf("decompressed %d bytes, want page size %d", n, len(data))
	}
	return nil
}

// maxFrameSize is the largest page frame for pageSize: the frame header plus
// LZ4's bound for an incompressible page.
func maxFrameSize(pageSize uint32) int64 {
	return frameHeaderSize + int64(lz4.CompressBlockBound(int(pageSize)))
}

// hashFrame feeds a frame's page number and size into a sequence hash.
func hashFrame(h hash.Hash64, pgno uint32, size int64) {
	var b [12]byte
	binary.BigEndian.PutUint32(b[0:], pgno)
	binary.BigEndian.PutUint64(b[4:], uint64(size))
	_, _ = h.Write(b[:])
}

// recordingByteReader reads bytes one at a time and keeps them, so the
// index bytes can be hashed after parsing.
type recordingByteReader struct {
	r io.ByteReader
	b []byte
}

func (r *recordingByteReader) ReadByte() (byte, error) {
	c, err := r.r.ReadByte()
	if err == nil {
		r.b = append(r.b, c)
	}
	return c, err
}

// parseIndex reads sltx's page index from r: uvarint (pgno, offset, size)
// records, a zero pgno as end marker, then the index size as a big-endian
// uint64 that must equal the bytes read. Page numbers must ascend; fn checks
// each record further. Frame sizes must be in [frameHeaderSize+1, maxFrame],
// so offset+size cannot overflow. io.EOF inside the index is
// io.ErrUnexpectedEOF.
func parseIndex(r io.ByteReader, maxFrame int64, fn func(pgno uint32, offset, size int64) error) error {
	cr := &countingByteReader{r: r}
	var consumed = &cr.n
	var prev uint32
	for {
		pgno, err := binary.ReadUvarint(cr)
		if err != nil {
			return indexErr("pgno", err)
		}
		if pgno == 0 {
			break
		}
		if pgno > math.MaxUint32 || uint32(pgno) <= prev {
			return fmt.Errorf("index pgno %d after %d: want ascending 32-bit page numbers", pgno, prev)
		}
		offset, err := binary.ReadUvarint(cr)
		if err != nil {
			return indexErr("offset", err)
		}
		size, err := binary.ReadUvarint(cr)
		if err != nil {
			return indexErr("size", err)
		}
		if offset > math.MaxInt64/2 || size < frameHeaderSize+1 || size > uint64(maxFrame) {
			return fmt.Errorf("index pgno %d: offset %d size %d out of range", pgno, offset, size)
		}
		prev = uint32(pgno)
		if err := fn(uint32(pgno), int64(offset), int64(size)); err != nil {
			return err
		}
	}
	var sb [8]byte
	for i := range sb {
		c, err := r.ReadByte()
		if err != nil {
			return indexErr("size field", err)
		}
		sb[i] = c
	}
	if got := binary.BigEndian.Uint64(sb[:]); got != uint64(*consumed) {
		return fmt.Errorf("index size field %d, index is %d bytes", got, *consumed)
	}
	return nil
}

// indexErr wraps an error reading part of the index.
func indexErr(what string, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read index %s: %w", what, err)
}

// countingByteReader counts the bytes read through it.
type countingByteReader struct {
	r io.ByteReader
	n int64
}

func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
