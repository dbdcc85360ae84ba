package ltx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	sltx "github.com/superfly/ltx"
)

// roundTripCase describes one blob to encode and decode.
type roundTripCase struct {
	name     string
	pageSize uint32
	n        int  // number of pages
	snapshot bool // MinTXID == 1, pages 1..n
	tracked  bool // checksums tracked
	real     bool // pages from realistic.db
}

func roundTripCases() []roundTripCase {
	var cases []roundTripCase
	for _, ps := range []uint32{512, 4096, 65536} {
		for _, n := range []int{0, 1, 3, 40, 5000} {
			if ps == 65536 && n > 200 {
				n = 100 // 5,000 pages of 64 KiB is 320 MiB
			}
			for _, snap := range []bool{false, true} {
				for _, tracked := range []bool{false, true} {
					if n == 0 && !tracked {
						continue // sltx cannot encode an empty untracked blob; see TestEncodeInvalid
					}
					if n == 0 && !snap {
						continue // covered by TestEncodeEmptyDelta
					}
					cases = append(cases, roundTripCase{
						name:     fmt.Sprintf("ps%d/n%d/snap=%t/tracked=%t", ps, n, snap, tracked),
						pageSize: ps, n: n, snapshot: snap, tracked: tracked,
					})
				}
			}
		}
	}
	for _, n := range []int{1, 93, 5000} {
		for _, snap := range []bool{false, true} {
			cases = append(cases, roundTripCase{
				name:     fmt.Sprintf("realistic/n%d/snap=%t", n, snap),
				pageSize: 4096, n: n, snapshot: snap, tracked: true, real: true,
			})
		}
	}
	return cases
}

// build returns a header and pages (in random order) for c.
func (c roundTripCase) build(t testing.TB, rng *rand.Rand) (Header, []Page) {
	lock := sltx.LockPgno(c.pageSize)
	var pages []Page
	pgno := uint32(0)
	for len(pages) < c.n {
		if c.snapshot {
			pgno++
		} else {
			pgno += 1 + uint32(rng.IntN(5))
		}
		if pgno == lock {
			continue
		}
		var data []byte
		if c.real {
			real := realisticPages(t)
			data = real[int(pgno-1)%len(real)]
		} else {
			data = randomPage(rng, c.pageSize)
		}
		pages = append(pages, Page{Pgno: pgno, Data: data})
	}
	var hdr Header
	if c.snapshot {
		hdr = snapshotHeader(t, c.pageSize, pages, 5)
	} else {
		hdr = Header{PageSize: c.pageSize, Commit: pgno + 3, MinTXID: 9, MaxTXID: 9, Timestamp: testTime}
		if c.tracked {
			hdr.PreApplyChecksum = sltx.ChecksumFlag | Checksum(rng.Uint64())
			hdr.PostApplyChecksum = sltx.ChecksumFlag | Checksum(rng.Uint64())
		}
	}
	if !c.tracked {
		hdr.PreApplyChecksum, hdr.PostApplyChecksum = 0, 0
	}
	shuffled := slices.Clone(pages)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	return hdr, shuffled
}

func TestRoundTrip(t *testing.T) {
	rng := newRand(t)
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.n*int(c.pageSize) > 4<<20 {
				t.Skip("large blob; run without -short")
			}
			hdr, pages := c.build(t, rng)
			orig := slices.Clone(pages)
			b, err := Encode(hdr, pages)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !slices.EqualFunc(pages, orig, func(a, b Page) bool { return a.Pgno == b.Pgno }) {
				t.Fatal("Encode reordered its argument")
			}
			want := slices.Clone(pages)
			slices.SortFunc(want, func(a, b Page) int { return int(a.Pgno) - int(b.Pgno) })
			checkBlob(t, b, hdr, want)

			// The streaming Writer writes the same bytes.
			var buf bytes.Buffer
			w, err := NewWriter(&buf, hdr)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range want {
				if err := w.WritePage(p.Pgno, p.Data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), b) {
				t.Fatal("Writer output differs from Encode")
			}
			if w.N() != int64(len(b)) {
				t.Fatalf("Writer.N() = %d, want %d", w.N(), len(b))
			}
		})
	}
}

// checkBlob decodes b every way there is and checks it holds hdr and want
// (sorted by pgno).
func checkBlob(t *testing.T, b []byte, hdr Header, want []Page) {
	t.Helper()
	gotHdr, got, err := Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !equalHeader(gotHdr, hdr) {
		t.Fatalf("decode header:\n got %+v\nwant %+v", gotHdr, hdr)
	}
	checkPagesEqual(t, got, want)

	vHdr, err := Verify(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !equalHeader(vHdr, hdr) {
		t.Fatalf("verify header: got %+v, want %+v", vHdr, hdr)
	}

	if err := sltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
		t.Fatalf("sltx reference decoder: %v", err)
	}

	blob, err := OpenBlob(b)
	if err != nil {
		t.Fatalf("open blob: %v", err)
	}
	if !equalHeader(blob.Header(), hdr) {
		t.Fatalf("blob header: got %+v, want %+v", blob.Header(), hdr)
	}
	if blob.Len() != len(want) || blob.Size() != len(b) {
		t.Fatalf("blob Len %d Size %d, want %d, %d", blob.Len(), blob.Size(), len(want), len(b))
	}
	pgnos := blob.Pgnos()
	dst := make([]byte, hdr.PageSize)
	for i, p := range want {
		if pgnos[i] != p.Pgno {
			t.Fatalf("Pgnos()[%d] = %d, want %d", i, pgnos[i], p.Pgno)
		}
		if !blob.Has(p.Pgno) {
			t.Fatalf("Has(%d) = false", p.Pgno)
		}
		data, err := blob.ReadPage(p.Pgno, dst)
		if err != nil {
			t.Fatalf("ReadPage(%d): %v", p.Pgno, err)
		}
		if !bytes.Equal(data, got[i].Data) {
			t.Fatalf("ReadPage(%d) differs from Decode", p.Pgno)
		}
		if &data[0] != &dst[0] {
			t.Fatalf("ReadPage(%d) did not reuse dst", p.Pgno)
		}
	}
	// Page numbers the blob lacks.
	absent := []uint32{0, hdr.Commit + 1, hdr.LockPgno()}
	for i := 1; i < len(want); i++ {
		if want[i].Pgno > want[i-1].Pgno+1 {
			absent = append(absent, want[i-1].Pgno+1)
		}
	}
	for _, pgno := range absent {
		if blob.Has(pgno) {
			t.Fatalf("Has(%d) = true", pgno)
		}
		if _, err := blob.ReadPage(pgno, nil); !errors.Is(err, ErrPageNotFound) {
			t.Fatalf("ReadPage(%d) = %v, want ErrPageNotFound", pgno, err)
		}
	}
	if len(want) > 0 {
		data, err := blob.ReadPage(want[0].Pgno, nil) // too small dst: allocates
		if err != nil || !bytes.Equal(data, want[0].Data) {
			t.Fatalf("ReadPage with nil dst: %v", err)
		}
	}
}

func TestEncodeEmptyDelta(t *testing.T) {
	// A delta with no pages: only the database size and txid change.
	hdr := Header{PageSize: 4096, Commit: 7, MinTXID: 3, MaxTXID: 3, Timestamp: testTime}
	b, err := Encode(hdr, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, b, hdr, nil)
}

func TestEncodeLockPageBoundary(t *testing.T) {
	// A delta around the lock page of 64 KiB pages (page 16385).
	const big = 65536
	lock := sltx.LockPgno(big)
	var pages []Page
	for pgno := lock - 2; pgno <= lock+2; pgno++ {
		if pgno != lock {
			pages = append(pages, Page{Pgno: pgno, Data: bytes.Repeat([]byte{byte(pgno)}, big)})
		}
	}
	hdr := Header{PageSize: big, Commit: lock + 2, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}
	b, err := Encode(hdr, pages)
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, b, hdr, pages)
}

func TestEncodeInvalid(t *testing.T) {
	page := func(pgno uint32, size int) Page { return Page{Pgno: pgno, Data: make([]byte, size)} }
	delta := Header{PageSize: 4096, Commit: 10, MinTXID: 5, MaxTXID: 5, Timestamp: testTime}
	with := func(f func(*Header)) Header { h := delta; f(&h); return h }
	snap := func(commit uint32) Header {
		return Header{PageSize: 4096, Commit: commit, MinTXID: 1, MaxTXID: 1}
	}
	lock64 := sltx.LockPgno(65536)
	goodSnap := []Page{page(1, 4096), page(2, 4096)}
	goodSum, _ := DatabaseChecksum(4096, 2, func(pgno uint32) ([]byte, error) { return make([]byte, 4096), nil })

	for _, tt := range []struct {
		name  string
		hdr   Header
		pages []Page
	}{
		{"page size 0", with(func(h *Header) { h.PageSize = 0 }), nil},
		{"page size 1000", with(func(h *Header) { h.PageSize = 1000 }), nil},
		{"page size 256", with(func(h *Header) { h.PageSize = 256 }), nil},
		{"page size 128k", with(func(h *Header) { h.PageSize = 131072 }), nil},
		{"min txid 0", with(func(h *Header) { h.MinTXID = 0 }), nil},
		{"max < min", with(func(h *Header) { h.MaxTXID = 4 }), nil},
		{"short page", delta, []Page{page(1, 4095)}},
		{"long page", delta, []Page{page(1, 4097)}},
		{"nil page", delta, []Page{{Pgno: 1}}},
		{"duplicate pgno", delta, []Page{page(3, 4096), page(3, 4096)}},
		{"pgno 0", delta, []Page{page(0, 4096)}},
		{"pgno > commit", delta, []Page{page(11, 4096)}},
		{"lock page", Header{PageSize: 65536, Commit: lock64 + 1, MinTXID: 2, MaxTXID: 2}, []Page{page(lock64, 65536)}},
		{"snapshot missing page 1", snap(2), []Page{page(2, 4096)}},
		{"snapshot gap", snap(3), []Page{page(1, 4096), page(3, 4096)}},
		{"snapshot short of commit", snap(3), []Page{page(1, 4096), page(2, 4096)}},
		{"snapshot empty with commit", snap(2), nil},
		{"snapshot wrong post-apply checksum", func() Header { h := snap(2); h.PostApplyChecksum = goodSum ^ 1; return h }(), goodSnap},
		{"snapshot pre-apply checksum", func() Header { h := snap(2); h.PreApplyChecksum, h.PostApplyChecksum = goodSum, goodSum; return h }(), goodSnap},
		{"tracked without pre-apply", with(func(h *Header) { h.PostApplyChecksum = sltx.ChecksumFlag | 7 }), nil},
		{"tracked without post-apply", with(func(h *Header) { h.PreApplyChecksum = sltx.ChecksumFlag | 7 }), nil},
		{"pre-apply without flag", with(func(h *Header) { h.PreApplyChecksum, h.PostApplyChecksum = 7, sltx.ChecksumFlag|7 }), nil},
		{"post-apply without flag", with(func(h *Header) { h.PreApplyChecksum, h.PostApplyChecksum = sltx.ChecksumFlag|7, 7 }), nil},
		{"commit 0 untracked", with(func(h *Header) { h.Commit = 0 }), nil},
		{"commit 0 wrong checksum", with(func(h *Header) {
			h.Commit, h.PreApplyChecksum, h.PostApplyChecksum = 0, sltx.ChecksumFlag|7, sltx.ChecksumFlag|7
		}), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.hdr, tt.pages)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode = %d bytes, %v; want ErrInvalid", len(b), err)
			}
			if errors.Is(err, ErrCorrupt) {
				t.Fatalf("Encode error %v also matches ErrCorrupt", err)
			}
		})
	}

	// Sanity: the good snapshot above encodes.
	h := snap(2)
	h.PostApplyChecksum = goodSum
	if _, err := Encode(h, goodSnap); err != nil {
		t.Fatalf("good snapshot: %v", err)
	}
}

func TestWriterInvalidPageKeepsWriterUsable(t *testing.T) {
	hdr := Header{PageSize: 512, Commit: 10, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{1}, 512)
	if err := w.WritePage(4, p); err != nil {
		t.Fatal(err)
	}
	for _, pgno := range []uint32{4, 3, 0, 11} {
		if err := w.WritePage(pgno, p); !errors.Is(err, ErrInvalid) {
			t.Fatalf("WritePage(%d) = %v, want ErrInvalid", pgno, err)
		}
	}
	if err := w.WritePage(5, p[:100]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short page: %v", err)
	}
	if err := w.WritePage(5, p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WritePage(6, p); err == nil {
		t.Fatal("WritePage after Close succeeded")
	}
	checkBlob(t, buf.Bytes(), hdr, []Page{{4, p}, {5, p}})
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

var errDisk = errors.New("disk on fire")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errDisk
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterIOError(t *testing.T) {
	rng := newRand(t)
	hdr := Header{PageSize: 4096, Commit: 100, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}
	for _, limit := range []int{0, 50, 5000, 100 << 10} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			w, err := NewWriter(&failWriter{n: limit}, hdr)
			if err != nil { // buffered: the header fits in the buffer
				t.Fatal(err)
			}
			var werr error
			for pgno := uint32(1); pgno <= 100 && werr == nil; pgno++ {
				werr = w.WritePage(pgno, incompressiblePage(rng, 4096))
			}
			if werr == nil {
				werr = w.Close()
			}
			if !errors.Is(werr, errDisk) || errors.Is(werr, ErrInvalid) {
				t.Fatalf("got %v, want the disk error and not ErrInvalid", werr)
			}
			if err := w.WritePage(101, make([]byte, 4096)); !errors.Is(err, errDisk) {
				t.Fatalf("after failure WritePage = %v, want sticky disk error", err)
			}
			if err := w.Close(); !errors.Is(err, errDisk) {
				t.Fatalf("after failure Close = %v, want sticky disk error", err)
			}
		})
	}
	// Unbuffered (as Encode uses it): the first header write fails.
	if _, err := newWriter(&failWriter{n: 10}, hdr); !errors.Is(err, errDisk) || errors.Is(err, ErrInvalid) {
		t.Fatalf("newWriter on failing writer: %v", err)
	}
}

func TestVerifyReaderError(t *testing.T) {
	b, err := Encode(Header{PageSize: 512, Commit: 1, MinTXID: 2, MaxTXID: 2}, []Page{{1, make([]byte, 512)}})
	if err != nil {
		t.Fatal(err)
	}
	r := io.MultiReader(bytes.NewReader(b[:150]), iotestErrReader{})
	_, err = Verify(r)
	if !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify on failing reader = %v, want the reader's error, not ErrCorrupt", err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errDisk }

func TestTimestampMillis(t *testing.T) {
	ts := testTime.Add(999 * 1000) // +999µs: dropped
	b, err := Encode(Header{PageSize: 512, Commit: 1, MinTXID: 2, MaxTXID: 2, Timestamp: ts}, []Page{{1, make([]byte, 512)}})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.Timestamp.Equal(testTime) || hdr.Timestamp.Location().String() != "UTC" {
		t.Fatalf("timestamp %v, want %v", hdr.Timestamp, testTime)
	}
}
