package ltx

import (
	"math/rand/v2"
	"testing"
)

// benchPages returns 64 pages of 4 KiB: incompressible random bytes, or
// pages of testdata/realistic.db.
func benchPages(b *testing.B, kind string) []Page {
	rng := rand.New(rand.NewPCG(1, 2))
	real := realisticPages(b)
	pages := make([]Page, 64)
	for i := range pages {
		pages[i].Pgno = uint32(i + 1)
		if kind == "random" {
			pages[i].Data = incompressiblePage(rng, 4096)
		} else {
			pages[i].Data = real[i%len(real)]
		}
	}
	return pages
}

var benchHeader = Header{PageSize: 4096, Commit: 64, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}

func BenchmarkEncode(b *testing.B) {
	for _, kind := range []string{"random", "realistic"} {
		b.Run(kind, func(b *testing.B) {
			pages := benchPages(b, kind)
			b.SetBytes(int64(len(pages)) * 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(benchHeader, pages); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeOnePage encodes a one-page delta, a commit's usual blob:
// the per-blob cost (header, index, trailer, compressor) dominates.
func BenchmarkEncodeOnePage(b *testing.B) {
	pages := benchPages(b, "realistic")[1:2]
	hdr := Header{PageSize: 4096, Commit: 64, MinTXID: 2, MaxTXID: 2, Timestamp: testTime}
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(hdr, pages); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, kind := range []string{"random", "realistic"} {
		b.Run(kind, func(b *testing.B) {
			pages := benchPages(b, kind)
			blob, err := Encode(benchHeader, pages)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(blob))/float64(len(pages)*4096), "ratio")
			b.SetBytes(int64(len(pages)) * 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(blob); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadPage(b *testing.B) {
	for _, kind := range []string{"random", "realistic"} {
		b.Run(kind, func(b *testing.B) {
			pages := benchPages(b, kind)
			raw, err := Encode(benchHeader, pages)
			if err != nil {
				b.Fatal(err)
			}
			blob, err := OpenBlob(raw)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 4096)
			b.SetBytes(4096)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := blob.ReadPage(uint32(i%64)+1, dst); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkOpenBlob(b *testing.B) {
	raw, err := Encode(benchHeader, benchPages(b, "realistic"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenBlob(raw); err != nil {
			b.Fatal(err)
		}
	}
}
