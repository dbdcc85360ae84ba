package ltx

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	sltx "github.com/superfly/ltx"
)

// lcgPage returns a deterministic page: a few bytes from a fixed linear
// congruential generator followed by zeros, so golden blobs do not depend on
// math/rand's algorithms.
func lcgPage(size uint32, seed uint32, fill int) []byte {
	p := make([]byte, size)
	x := seed
	for i := 0; i < fill && i < len(p); i++ {
		x = x*1664525 + 1013904223
		p[i] = byte(x >> 24)
	}
	return p
}

// goldenCase is one blob under testdata/golden.
type goldenCase struct {
	name  string
	hdr   Header
	pages []Page
}

func goldenCases(t testing.TB) []goldenCase {
	snapPages := []Page{
		{1, lcgPage(512, 1, 100)}, {2, lcgPage(512, 2, 512)}, {3, lcgPage(512, 3, 0)}, {4, lcgPage(512, 4, 37)},
	}
	real := realisticPages(t)
	return []goldenCase{
		{"delta-4096", Header{PageSize: 4096, Commit: 12, MinTXID: 42, MaxTXID: 42, Timestamp: testTime,
			PreApplyChecksum: sltx.ChecksumFlag | 0x0123456789abcdef, PostApplyChecksum: sltx.ChecksumFlag | 0x7edcba9876543210},
			[]Page{{2, lcgPage(4096, 10, 300)}, {5, lcgPage(4096, 11, 4096)}, {12, lcgPage(4096, 12, 9)}}},
		{"snapshot-512", snapshotHeader(t, 512, snapPages, 1), snapPages},
		{"shard-untracked-4096", Header{PageSize: 4096, Commit: 300, MinTXID: 7, MaxTXID: 7, Timestamp: testTime},
			[]Page{{257, lcgPage(4096, 20, 1000)}, {258, lcgPage(4096, 21, 0)}, {300, lcgPage(4096, 22, 4096)}}},
		{"empty-delta-65536", Header{PageSize: 65536, Commit: 3, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}, nil},
		{"realistic-delta", Header{PageSize: 4096, Commit: uint32(len(real)), MinTXID: 9, MaxTXID: 9, Timestamp: testTime},
			[]Page{{1, real[0]}, {2, real[1]}, {uint32(len(real)), real[len(real)-1]}}},
	}
}

// TestGolden compares fresh encodings with testdata/golden/*.ltx byte for
// byte, and decodes the files. Regenerate with -update.
func TestGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", c.name+".ltx")
			b, err := Encode(c.hdr, c.pages)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (regenerate with: go test ./ltx -run TestGolden -update)", err)
			}
			if !bytes.Equal(b, golden) {
				t.Fatalf("encoding differs from %s (%d vs %d bytes); if the change is intended, run go test ./ltx -run TestGolden -update", path, len(b), len(golden))
			}
			checkBlob(t, golden, c.hdr, c.pages)
		})
	}
}

// TestFuzzSeedCorpus checks that the committed seed corpora exist and, with
// -update, rewrites them: for each fuzz target, the golden blobs and some
// truncations of them.
func TestFuzzSeedCorpus(t *testing.T) {
	var seeds [][]byte
	for _, c := range goldenCases(t) {
		b, err := Encode(c.hdr, c.pages)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
		if c.name == "delta-4096" || c.name == "shard-untracked-4096" {
			for _, n := range []int{0, 50, sltx.HeaderSize, sltx.HeaderSize + 20, len(b) / 2, len(b) - 20, len(b) - 1} {
				seeds = append(seeds, b[:n])
			}
		}
	}
	for _, target := range []string{"FuzzDecode", "FuzzVerify", "FuzzOpenBlobReadPage"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, s := range seeds {
				data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
				if err := os.WriteFile(filepath.Join(dir, "seed-"+strconv.Itoa(i)), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) < len(seeds) {
			t.Fatalf("%s: %d files, %v; want at least %d seeds (regenerate with: go test ./ltx -run TestFuzzSeedCorpus -update)", dir, len(ents), err, len(seeds))
		}
	}
}
