package ltx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pierrec/lz4/v4"
	sltx "github.com/superfly/ltx"
)

// compressors recycles LZ4 compressors and their output buffers: a
// compressor holds a 128 KiB hash table, too much to allocate per page or
// per blob. Writer.WritePage and FrameSize borrow one for a single page.
var compressors = sync.Pool{New: func() any { return &frameCompressor{} }}

// frameCompressor is an LZ4 compressor with a scratch buffer for one frame.
// Reusing it does not change its output: lz4.Compressor.CompressBlock
// forgets its hash table on every call.
type frameCompressor struct {
	c   lz4.Compressor
	buf []byte
}

// appendFrame appends the page frame of page pgno holding data to dst, as
// sltx.Encoder.EncodePage writes it: the page header (pgno, flags
// PageHeaderFlagSize), the LZ4 block's size and the block. It compresses
// straight into dst's spare capacity, growing dst to the largest frame
// possible first. On error dst is returned unchanged.
func (fc *frameCompressor) appendFrame(dst []byte, pgno uint32, data []byte) ([]byte, error) {
	bound := lz4.CompressBlockBound(len(data))
	start := len(dst)
	dst = slices.Grow(dst, frameHeaderSize+bound)
	block := dst[start+frameHeaderSize : start+frameHeaderSize+bound]
	n, err := fc.c.CompressBlock(data, block)
	if err != nil {
		return dst[:start], fmt.Errorf("compress page data: %w", err)
	}
	if n == 0 {
		// Cannot happen with a destination of CompressBlockBound bytes.
		return dst[:start], errors.New("lz4 block compression failed")
	}
	dst = binary.BigEndian.AppendUint32(dst, pgno)
	dst = binary.BigEndian.AppendUint16(dst, sltx.PageHeaderFlagSize)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	return dst[:start+frameHeaderSize+n], nil
}

// FrameSize returns the bytes page data takes in a blob: its frame header
// and LZ4-compressed bytes (the page index adds a few bytes more per page).
// Callers use it to account for a page before encoding, e.g. for quota.
func FrameSize(data []byte) int {
	fc := compressors.Get().(*frameCompressor)
	defer compressors.Put(fc)
	frame, err := fc.appendFrame(fc.buf[:0], 1, data)
	fc.buf = frame[:0]
	if err != nil {
		return frameHeaderSize + len(data)
	}
	return len(frame)
}
