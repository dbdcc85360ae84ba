package ltx

import "github.com/pierrec/lz4/v4"

// FrameSize returns the bytes page data takes in a blob: its frame header
// and LZ4-compressed bytes (the page index adds a few bytes more per page).
// Callers use it to account for a page before encoding, e.g. for quota.
func FrameSize(data []byte) int {
	var c lz4.Compressor
	buf := make([]byte, lz4.CompressBlockBound(len(data)))
	n, err := c.CompressBlock(data, buf)
	if err != nil || n == 0 {
		n = len(data)
	}
	return int(frameHeaderSize) + n
}
