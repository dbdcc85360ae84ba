package ltx

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
)

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

func TestOpenBlobAtReadsLittle(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	var pages []Page
	for p := uint32(2); p <= 3000; p++ {
		d := make([]byte, 4096)
		rng.Read(d)
		pages = append(pages, Page{Pgno: p, Data: d})
	}
	b, err := Encode(Header{PageSize: 4096, Commit: 3000, MinTXID: 7, MaxTXID: 7}, pages)
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReaderAt{r: bytes.NewReader(b)}
	blob, err := OpenBlobAt(cr, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	opened := cr.n
	got, err := blob.ReadPage(1500, nil)
	if err != nil || !bytes.Equal(got, pages[1498].Data) {
		t.Fatalf("read page 1500: %v", err)
	}
	t.Logf("blob %d bytes: open read %d, one page %d", len(b), opened, cr.n-opened)
	if opened > int64(len(b))/100 || cr.n-opened > 4096+64 {
		t.Fatalf("read %d bytes to open and %d for one page of a %d-byte blob", opened, cr.n-opened, len(b))
	}
	if blob.Size() != len(b) || blob.Resident() >= len(b)/100 || blob.Len() != len(pages) {
		t.Fatalf("size %d resident %d len %d", blob.Size(), blob.Resident(), blob.Len())
	}
	// A failing reader's error comes back as is.
	boom := errors.New("boom")
	if _, err := OpenBlobAt(failingReaderAt{boom}, int64(len(b))); !errors.Is(err, boom) {
		t.Fatalf("failing reader: %v", err)
	}
	// Corrupt bytes behind a ReaderAt are ErrCorrupt, as with OpenBlob.
	bad := bytes.Clone(b)
	bad[len(bad)-30] ^= 0xff
	if _, err := OpenBlobAt(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt index: %v", err)
	}
}

type failingReaderAt struct{ err error }

func (f failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, f.err }
