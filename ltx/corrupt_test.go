package ltx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
	sltx "github.com/superfly/ltx"
)

// corruptCase is a valid blob to damage.
type corruptCase struct {
	name  string
	hdr   Header
	pages []Page
	blob  []byte
}

func corruptCases(t *testing.T, rng *rand.Rand) []corruptCase {
	real := realisticPages(t)
	var cases []corruptCase
	add := func(name string, hdr Header, pages []Page) {
		b, err := Encode(hdr, pages)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cases = append(cases, corruptCase{name, hdr, pages, b})
	}
	var rnd []Page
	for _, pgno := range []uint32{2, 3, 7, 8, 20} {
		rnd = append(rnd, Page{pgno, incompressiblePage(rng, 4096)})
	}
	add("delta-random-tracked", Header{PageSize: 4096, Commit: 30, MinTXID: 4, MaxTXID: 4, Timestamp: testTime,
		PreApplyChecksum: sltx.ChecksumFlag | 1234, PostApplyChecksum: sltx.ChecksumFlag | 5678}, rnd)

	var snap []Page
	for i := range 12 {
		snap = append(snap, Page{uint32(i + 1), real[i]})
	}
	add("snapshot-realistic", snapshotHeader(t, 4096, snap, 3), snap)

	var shard []Page
	for _, pgno := range []uint32{65, 66, 70, 127} {
		shard = append(shard, Page{pgno, randomPage(rng, 512)})
	}
	add("shard-512-untracked", Header{PageSize: 512, Commit: 200, MinTXID: 8, MaxTXID: 8, Timestamp: testTime}, shard)
	return cases
}

// regions returns the byte ranges of b: the header, each frame's fixed
// header, each frame's compressed data, the end-of-pages marker, the index
// and its size field, and the trailer.
type region struct {
	name       string
	start, end int
	data       bool // compressed page data: a flip may decode to the same page
	structural bool // Blob must notice a flip here
}

func regions(t *testing.T, b []byte) []region {
	rs := []region{
		{"header magic", 0, 4, false, true},
		{"header flags", 4, 8, false, false},
		{"header page size", 8, 12, false, true},
		{"header rest", 12, sltx.HeaderSize, false, false},
	}
	off := sltx.HeaderSize
	for i := 0; ; i++ {
		if isZero(b[off : off+sltx.PageHeaderSize]) {
			rs = append(rs, region{"end-of-pages marker", off, off + sltx.PageHeaderSize, false, true})
			off += sltx.PageHeaderSize
			break
		}
		size := int(binary.BigEndian.Uint32(b[off+sltx.PageHeaderSize:]))
		rs = append(rs,
			region{fmt.Sprintf("frame %d header", i), off, off + frameHeaderSize, false, true},
			region{fmt.Sprintf("frame %d data", i), off + frameHeaderSize, off + frameHeaderSize + size, true, false})
		off += frameHeaderSize + size
	}
	rs = append(rs,
		region{"index", off, len(b) - indexTailSize, false, true},
		region{"index size", len(b) - indexTailSize, len(b) - sltx.TrailerSize, false, true},
		region{"trailer", len(b) - sltx.TrailerSize, len(b), false, false})
	if rs[len(rs)-3].start >= rs[len(rs)-3].end {
		t.Fatal("bad region layout")
	}
	return rs
}

// readAllPages opens b as a Blob and reads every page, returning the first
// error.
func readAllPages(b []byte) ([]Page, error) {
	blob, err := OpenBlob(b)
	if err != nil {
		return nil, err
	}
	var pages []Page
	for _, pgno := range blob.Pgnos() {
		data, err := blob.ReadPage(pgno, nil)
		if err != nil {
			return nil, err
		}
		pages = append(pages, Page{pgno, data})
	}
	return pages, nil
}

func samePages(a, b []Page) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Pgno != b[i].Pgno || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// TestCorruptFlip flips bits in every byte of each region and checks that
// Decode and Verify refuse the blob (or, for a flip in compressed data that
// LZ4 decodes to the same page, return exactly the original), and that
// OpenBlob+ReadPage refuse every flip in the structural regions and never
// return an error other than ErrCorrupt.
func TestCorruptFlip(t *testing.T) {
	rng := newRand(t)
	for _, c := range corruptCases(t, rng) {
		t.Run(c.name, func(t *testing.T) {
			_, want, err := Decode(c.blob)
			if err != nil {
				t.Fatal(err)
			}
			sameDecodes, blobMisses := 0, 0
			for _, r := range regions(t, c.blob) {
				for i := r.start; i < r.end; i++ {
					if r.data && r.end-r.start > 64 && rng.IntN(32) != 0 {
						continue // sample big data regions
					}
					for _, mask := range []byte{0x01, 0x80, 0xff} {
						b := bytes.Clone(c.blob)
						b[i] ^= mask
						what := fmt.Sprintf("%s: byte %d ^ %#x", r.name, i, mask)

						hdr, pages, err := Decode(b)
						switch {
						case err == nil && r.data && equalHeader(hdr, c.hdr) && samePages(pages, want):
							sameDecodes++ // an equivalent LZ4 encoding of the same page
						case err == nil:
							t.Fatalf("%s: Decode accepted a corrupt blob", what)
						case !errors.Is(err, ErrCorrupt):
							t.Fatalf("%s: Decode error %v does not match ErrCorrupt", what, err)
						}
						if _, verr := Verify(bytes.NewReader(b)); (verr == nil) != (err == nil) || (verr != nil && !errors.Is(verr, ErrCorrupt)) {
							t.Fatalf("%s: Verify = %v, Decode = %v", what, verr, err)
						}

						bpages, berr := readAllPages(b)
						switch {
						case berr != nil && !errors.Is(berr, ErrCorrupt):
							t.Fatalf("%s: Blob error %v does not match ErrCorrupt", what, berr)
						case berr == nil && r.structural:
							t.Fatalf("%s: OpenBlob+ReadPage accepted a flip in a structural region", what)
						case berr == nil && !samePages(bpages, want):
							blobMisses++ // documented: Blob does not check the file checksum
						}
					}
				}
			}
			t.Logf("%d flips decoded to identical content; %d content flips unnoticed by Blob (expected, see Blob doc)", sameDecodes, blobMisses)
		})
	}
}

// TestCorruptTruncateExtend cuts each blob at every length and appends
// bytes: every decoder must refuse with ErrCorrupt.
func TestCorruptTruncateExtend(t *testing.T) {
	rng := newRand(t)
	for _, c := range corruptCases(t, rng) {
		t.Run(c.name, func(t *testing.T) {
			check := func(what string, b []byte) {
				if _, _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: Decode = %v, want ErrCorrupt", what, err)
				}
				if _, err := Verify(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: Verify = %v, want ErrCorrupt", what, err)
				}
				if _, err := readAllPages(b); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: OpenBlob+ReadPage = %v, want ErrCorrupt", what, err)
				}
			}
			// Every length near the ends and at frame boundaries; a sample of
			// the middle of big blobs.
			cuts := map[int]bool{}
			for _, r := range regions(t, c.blob) {
				for d := -2; d <= 2; d++ {
					cuts[r.start+d] = true
				}
			}
			for n := range len(c.blob) {
				if n < 256 || n >= len(c.blob)-512 || cuts[n] || rng.IntN(32) == 0 {
					check(fmt.Sprintf("truncated to %d of %d", n, len(c.blob)), c.blob[:n])
				}
			}
			for _, extra := range [][]byte{{0}, {1, 2, 3}, make([]byte, 16), c.blob[:40]} {
				check(fmt.Sprintf("%d bytes appended", len(extra)), append(bytes.Clone(c.blob), extra...))
			}
			// A frame removed from the middle.
			rs := regions(t, c.blob)
			f := rs[4] // frame 0 header
			d := rs[5] // frame 0 data
			check("frame 0 removed", append(bytes.Clone(c.blob[:f.start]), c.blob[d.end:]...))
		})
	}
}

// TestCorruptFrameShortPage checks a frame that decompresses to fewer bytes
// than a page, with the checksums recomputed so only the length is wrong.
// sltx's decoder accepts such a frame silently (it ignores the decompressed
// length); ours must not.
func TestCorruptFrameShortPage(t *testing.T) {
	// Encode a 512-byte page, then re-encode the same structure with a
	// compressed block of a 511-byte page, via a hand-built blob.
	var comp [600]byte
	var c lz4.Compressor
	n, err := c.CompressBlock(make([]byte, 511), comp[:])
	if err != nil {
		t.Fatal(err)
	}
	b := handBuildBlob(t, 512, 1, []uint32{1}, [][]byte{comp[:n]}, make([]byte, 512))
	if _, _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode = %v, want ErrCorrupt", err)
	}
	if _, err := readAllPages(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadPage = %v, want ErrCorrupt", err)
	}
}

// handBuildBlob assembles an untracked blob (txid 2) from already-compressed
// frames, hashing hashed as each page's uncompressed content, so that
// malformed frames can carry valid checksums.
func handBuildBlob(t *testing.T, pageSize, commit uint32, pgnos []uint32, blocks [][]byte, hashed []byte) []byte {
	t.Helper()
	sh := sltx.Header{Version: sltx.Version, Flags: sltx.HeaderFlagNoChecksum, PageSize: pageSize, Commit: commit, MinTXID: 2, MaxTXID: 2}
	b, _ := sh.MarshalBinary()
	h := crc64.New(crcTable)
	h.Write(b)
	var index []byte
	for i, pgno := range pgnos {
		off := len(b)
		var fh [frameHeaderSize]byte
		binary.BigEndian.PutUint32(fh[0:], pgno)
		binary.BigEndian.PutUint16(fh[4:], sltx.PageHeaderFlagSize)
		binary.BigEndian.PutUint32(fh[6:], uint32(len(blocks[i])))
		b = append(b, fh[:]...)
		b = append(b, blocks[i]...)
		h.Write(fh[:])
		h.Write(hashed)
		index = binary.AppendUvarint(index, uint64(pgno))
		index = binary.AppendUvarint(index, uint64(off))
		index = binary.AppendUvarint(index, uint64(len(b)-off))
	}
	index = binary.AppendUvarint(index, 0)
	tail := append(make([]byte, sltx.PageHeaderSize), index...)
	tail = binary.BigEndian.AppendUint64(tail, uint64(len(index)))
	tail = append(tail, make([]byte, 8)...) // post-apply checksum: untracked
	h.Write(tail)
	b = append(b, tail...)
	return binary.BigEndian.AppendUint64(b, uint64(sltx.ChecksumFlag|Checksum(h.Sum64())))
}

func TestHandBuildBlobIsValid(t *testing.T) {
	// The helper itself must produce a blob every decoder accepts.
	page := bytes.Repeat([]byte("kvfs"), 128)
	var comp [600]byte
	var c lz4.Compressor
	n, err := c.CompressBlock(page, comp[:])
	if err != nil {
		t.Fatal(err)
	}
	b := handBuildBlob(t, 512, 3, []uint32{3}, [][]byte{comp[:n]}, page)
	if err := sltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
		t.Fatalf("sltx: %v", err)
	}
	if _, pages, err := Decode(b); err != nil || !bytes.Equal(pages[0].Data, page) {
		t.Fatalf("Decode: %v", err)
	}
	if pages, err := readAllPages(b); err != nil || !bytes.Equal(pages[0].Data, page) {
		t.Fatalf("Blob: %v", err)
	}
}
