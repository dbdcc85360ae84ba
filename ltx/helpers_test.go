package ltx

import (
	"bytes"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	update   = flag.Bool("update", false, "rewrite testdata/golden/*.ltx and the fuzz seed corpora in testdata/fuzz")
	seedFlag = flag.Uint64("seed", 0, "seed for randomised tests (0: pick one and log it)")
)

// testTime is the fixed timestamp of golden and test blobs.
var testTime = time.UnixMilli(1_700_000_000_123).UTC()

// newRand returns a seeded random source and logs how to replay the test.
func newRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./ltx -run '^%s$' -seed=%d)", seed, t.Name(), seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// randomPage returns a page of one of several shapes: incompressible,
// all zero, a random prefix followed by zeros (like a partly filled b-tree
// page), or a short repeating pattern.
func randomPage(rng *rand.Rand, size uint32) []byte {
	p := make([]byte, size)
	switch rng.IntN(4) {
	case 0:
		fillRandom(rng, p)
	case 1:
	case 2:
		fillRandom(rng, p[:rng.IntN(int(size))])
	case 3:
		pat := make([]byte, 1+rng.IntN(13))
		fillRandom(rng, pat)
		for i := range p {
			p[i] = pat[i%len(pat)]
		}
	}
	return p
}

// incompressiblePage returns a page of random bytes.
func incompressiblePage(rng *rand.Rand, size uint32) []byte {
	p := make([]byte, size)
	fillRandom(rng, p)
	return p
}

func fillRandom(rng *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

var (
	realisticOnce  sync.Once
	realisticData  [][]byte
	realisticError error
)

// realisticPages returns the pages of testdata/realistic.db (page size
// 4096), a database made by the stock sqlite3 CLI (see testdata/README.md).
// Index i holds page i+1.
func realisticPages(t testing.TB) [][]byte {
	t.Helper()
	realisticOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("testdata", "realistic.db"))
		if err != nil {
			realisticError = err
			return
		}
		for len(b) >= 4096 {
			realisticData = append(realisticData, b[:4096:4096])
			b = b[4096:]
		}
	})
	if realisticError != nil {
		t.Fatalf("read realistic.db: %v", realisticError)
	}
	if len(realisticData) < 50 || !bytes.HasPrefix(realisticData[0], []byte("SQLite format 3\x00")) {
		t.Fatalf("testdata/realistic.db: %d pages, want a SQLite database of at least 50 pages", len(realisticData))
	}
	return realisticData
}

// snapshotHeader returns a tracked snapshot header for pages.
func snapshotHeader(t testing.TB, pageSize uint32, pages []Page, txid TXID) Header {
	t.Helper()
	commit := uint32(0)
	if len(pages) > 0 {
		commit = pages[len(pages)-1].Pgno
	}
	sum, err := DatabaseChecksum(pageSize, commit, func(pgno uint32) ([]byte, error) {
		for _, p := range pages {
			if p.Pgno == pgno {
				return p.Data, nil
			}
		}
		return make([]byte, pageSize), nil // the lock page is never asked for
	})
	if err != nil {
		t.Fatal(err)
	}
	return Header{PageSize: pageSize, Commit: commit, MinTXID: 1, MaxTXID: txid, Timestamp: testTime, PostApplyChecksum: sum}
}

// equalHeader reports whether two headers are equal, comparing timestamps
// with time.Time.Equal.
func equalHeader(a, b Header) bool {
	ta, tb := a.Timestamp, b.Timestamp
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// checkPagesEqual fails t unless got equals want.
func checkPagesEqual(t testing.TB, got, want []Page) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d pages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Pgno != want[i].Pgno || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("page %d: got pgno %d (%d bytes), want pgno %d", i, got[i].Pgno, len(got[i].Data), want[i].Pgno)
		}
	}
}

// errEOF is io.EOF, named for readers defined in tests.
var errEOF = io.EOF
