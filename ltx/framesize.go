package ltx

import (
	"sync"

	"github.com/pierrec/lz4/v4"
)

// compressors recycles LZ4 compressors and their output buffers: a
// compressor holds a 64 KiB hash table, too much to allocate per page.
var compressors = sync.Pool{New: func() any { return &frameCompressor{} }}

type frameCompressor struct {
	c   lz4.Compressor
	buf []byte
}

// FrameSize returns the bytes page data takes in a blob: its frame header
// and LZ4-compressed bytes (the page index adds a few bytes more per page).
// Callers use it to account for a page before encoding, e.g. for quota.
func FrameSize(data []byte) int {
	fc := compressors.Get().(*frameCompressor)
	defer compressors.Put(fc)
	if bound := lz4.CompressBlockBound(len(data)); cap(fc.buf) < bound {
		fc.buf = make([]byte, bound)
	}
	n, err := fc.c.CompressBlock(data, fc.buf[:cap(fc.buf)])
	if err != nil || n == 0 {
		n = len(data)
	}
	return int(frameHeaderSize) + n
}
