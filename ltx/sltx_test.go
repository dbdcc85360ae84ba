package ltx

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	sltx "github.com/superfly/ltx"
)

// sltxEncode is the reference encoder: kvfs's rules (toSLTX, pageOrder, the
// snapshot checksum) in front of sltx.Encoder, as Encode was before Writer
// encoded frames itself. pages must be in ascending page-number order.
// Rule violations match ErrInvalid.
func sltxEncode(hdr Header, pages []Page) ([]byte, error) {
	sh, err := hdr.toSLTX()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc, err := sltx.NewEncoder(&buf)
	if err != nil {
		return nil, err
	}
	if err := enc.EncodeHeader(sh); err != nil {
		return nil, invalid("encode header", err)
	}
	order := newPageOrder(sh)
	var sum Checksum
	for _, p := range pages {
		if uint32(len(p.Data)) != sh.PageSize {
			return nil, invalidf("page %d is %d bytes", p.Pgno, len(p.Data))
		}
		if err := order.next(p.Pgno); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if err := enc.EncodePage(sltx.PageHeader{Pgno: p.Pgno}, p.Data); err != nil {
			return nil, invalid("encode page", err)
		}
		sum ^= PageChecksum(p.Pgno, p.Data)
	}
	if err := order.done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if sh.IsSnapshot() && !sh.NoChecksum() && sltx.ChecksumFlag|sum != hdr.PostApplyChecksum {
		return nil, invalidf("snapshot post-apply checksum")
	}
	enc.SetPostApplyChecksum(hdr.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return nil, invalid("close encoder", err)
	}
	return buf.Bytes(), nil
}

// txnCase is one random transaction to encode.
type txnCase struct {
	desc  string
	hdr   Header
	pages []Page // in random order
}

// randomTxnPage returns a page of one of many shapes, from incompressible
// to all zeros, including pages of testdata/realistic.db when the size fits.
func randomTxnPage(t testing.TB, rng *rand.Rand, size uint32) ([]byte, string) {
	switch rng.IntN(8) {
	case 0, 1, 2, 3:
		return randomPage(rng, size), "mixed" // random, zero, random prefix or pattern
	case 4: // half random, half a repeating pattern, as the pager benchmarks write
		p := make([]byte, size)
		fillRandom(rng, p[:size/2])
		for i := size / 2; i < size; i++ {
			p[i] = byte(i * 7)
		}
		return p, "half"
	case 5: // zeros with a few random bytes sprinkled in
		p := make([]byte, size)
		for range 1 + rng.IntN(32) {
			p[rng.IntN(int(size))] = byte(rng.Uint32())
		}
		return p, "sparse"
	case 6: // text-like: words from a small vocabulary
		words := []string{"kvfs ", "page ", "etcd ", "commit ", "delta ", "shard ", "\x00\x00", "SQLite "}
		var b bytes.Buffer
		for b.Len() < int(size) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.Bytes()[:size:size], "text"
	default:
		if real := realisticPages(t); size == 4096 {
			return real[rng.IntN(len(real))], "realistic"
		}
		return incompressiblePage(rng, size), "random"
	}
}

// randomTxn returns a random transaction: a snapshot, a tracked or
// untracked delta or an untracked shard, of random page size and page
// count, with pages in random order. With probability about 1/20 it breaks
// a rule, so that the encoders must agree on refusing it too.
func randomTxn(t testing.TB, rng *rand.Rand) txnCase {
	sizes := []uint32{512, 512, 1024, 2048, 4096, 4096, 4096, 4096, 8192, 16384, 32768, 65536}
	ps := sizes[rng.IntN(len(sizes))]
	maxPages := max(1, (256<<10)/int(ps)) // at most 256 KiB of pages
	n := rng.IntN(min(maxPages, 200) + 1)
	if rng.IntN(4) == 0 {
		n = rng.IntN(3) // 0, 1 or 2 pages: the commit path's common case
	}
	lock := sltx.LockPgno(ps)
	ts := time.UnixMilli(rng.Int64N(4_000_000_000_000)).UTC()
	txid := TXID(2 + rng.Uint64N(1<<40))
	kind := []string{"snapshot", "delta", "delta-tracked", "shard"}[rng.IntN(4)]

	var pages []Page
	shapes := map[string]int{}
	add := func(pgno uint32) {
		data, shape := randomTxnPage(t, rng, ps)
		pages = append(pages, Page{Pgno: pgno, Data: data})
		shapes[shape]++
	}
	var hdr Header
	switch kind {
	case "snapshot":
		for pgno := uint32(1); len(pages) < n; pgno++ {
			if pgno != lock {
				add(pgno)
			}
		}
		tracked := rng.IntN(3) != 0
		if n == 0 {
			tracked = true // an empty database needs tracked checksums
		}
		hdr = Header{PageSize: ps, MinTXID: 1, MaxTXID: 1 + TXID(rng.IntN(3)), Timestamp: ts}
		if len(pages) > 0 {
			hdr.Commit = pages[len(pages)-1].Pgno
		}
		if tracked {
			hdr = snapshotHeader(t, ps, pages, hdr.MaxTXID)
			hdr.Timestamp = ts
		}
	default:
		pgno := uint32(0)
		if rng.IntN(5) == 0 && lock > 3 {
			pgno = lock - 1 - uint32(rng.IntN(3)) // around the lock page
		} else if rng.IntN(5) == 0 {
			pgno = rng.Uint32N(1 << 20) // far into a big database
		}
		for len(pages) < n {
			pgno += 1 + uint32(rng.IntN(4))*uint32(rng.IntN(3))
			if pgno != lock {
				add(pgno)
			}
		}
		hdr = Header{PageSize: ps, Commit: pgno + uint32(rng.IntN(4)), MinTXID: txid, MaxTXID: txid + TXID(rng.IntN(2)), Timestamp: ts}
		if hdr.Commit == 0 {
			hdr.Commit = 1
		}
		if kind == "delta-tracked" {
			hdr.PreApplyChecksum = sltx.ChecksumFlag | Checksum(rng.Uint64())
			hdr.PostApplyChecksum = sltx.ChecksumFlag | Checksum(rng.Uint64())
		}
	}

	// Now and then break a rule.
	broken := ""
	if rng.IntN(20) == 0 {
		switch rng.IntN(5) {
		case 0:
			if len(pages) > 0 {
				pages = append(pages, Page{Pgno: pages[0].Pgno, Data: pages[0].Data})
				broken = "duplicate page"
			}
		case 1:
			if len(pages) > 0 {
				pages[len(pages)-1].Data = pages[len(pages)-1].Data[:ps-1]
				broken = "short page"
			}
		case 2:
			hdr.Commit = 0
			broken = "commit 0"
		case 3:
			hdr.PostApplyChecksum ^= 1
			broken = "post-apply checksum"
		case 4:
			if len(pages) > 0 {
				pages[0].Pgno = 0
				broken = "page 0"
			}
		}
	}

	rng.Shuffle(len(pages), func(i, j int) { pages[i], pages[j] = pages[j], pages[i] })
	desc := fmt.Sprintf("%s ps=%d pages=%d commit=%d txid=[%d,%d] tracked=%t shapes=%v", kind, ps, len(pages),
		hdr.Commit, hdr.MinTXID, hdr.MaxTXID, hdr.Tracked(), shapes)
	if broken != "" {
		desc += " broken=" + broken
	}
	return txnCase{desc: desc, hdr: hdr, pages: pages}
}

// plainWriter hides a bytes.Buffer's type, so NewWriter buffers it.
type plainWriter struct{ io.Writer }

// TestEncodeMatchesSLTX encodes random transactions with Encode, with a
// Writer into memory and a Writer into a plain io.Writer, and with the
// reference sltx.Encoder, and requires the same bytes (or all refusing with
// ErrInvalid). Replay a failure with the seed it logs.
func TestEncodeMatchesSLTX(t *testing.T) {
	rng := newRand(t)
	n := 300
	if testing.Short() {
		n = 50
	}
	accepted := 0
	for i := range n {
		c := randomTxn(t, rng)
		sorted := slices.Clone(c.pages)
		slices.SortStableFunc(sorted, func(a, b Page) int { return cmp.Compare(a.Pgno, b.Pgno) })
		want, werr := sltxEncode(c.hdr, sorted)
		got, gerr := Encode(c.hdr, c.pages)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("case %d (%s): Encode error %v, sltx error %v", i, c.desc, gerr, werr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrInvalid) {
				t.Fatalf("case %d (%s): Encode error %v does not match ErrInvalid", i, c.desc, gerr)
			}
			continue
		}
		accepted++
		checkSameBytes(t, fmt.Sprintf("case %d (%s): Encode", i, c.desc), got, want)

		for _, buffered := range []bool{false, true} {
			var buf bytes.Buffer
			var out io.Writer = &buf
			if buffered {
				out = plainWriter{&buf}
			}
			w, err := NewWriter(out, c.hdr)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range sorted {
				if err := w.WritePage(p.Pgno, p.Data); err != nil {
					t.Fatalf("case %d (%s): WritePage(%d): %v", i, c.desc, p.Pgno, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatalf("case %d (%s): Close: %v", i, c.desc, err)
			}
			checkSameBytes(t, fmt.Sprintf("case %d (%s): Writer (buffered %t)", i, c.desc, buffered), buf.Bytes(), want)
			if w.N() != int64(len(want)) {
				t.Fatalf("case %d (%s): Writer.N() = %d, want %d", i, c.desc, w.N(), len(want))
			}
		}

		// And it decodes back, by our decoder and sltx's.
		hdr, pages, err := Decode(got)
		if err != nil || !equalHeader(hdr, c.hdr) {
			t.Fatalf("case %d (%s): decode: %v, header %+v", i, c.desc, err, hdr)
		}
		checkPagesEqual(t, pages, sorted)
		if err := sltx.NewDecoder(bytes.NewReader(got)).Verify(); err != nil {
			t.Fatalf("case %d (%s): sltx decoder: %v", i, c.desc, err)
		}
	}
	t.Logf("%d of %d random transactions accepted and byte-identical", accepted, n)
	if accepted < n*3/4 {
		t.Fatalf("only %d of %d cases valid: the generator breaks too much", accepted, n)
	}
}

// checkSameBytes fails t unless got equals want, naming the first
// differing offset.
func checkSameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, sltx %d bytes; first difference at offset %d", what, len(got), len(want), i)
}

// TestEncodeConcurrentMatchesSLTX encodes from several goroutines at once,
// sharing the compressor pool, and compares with sltx.
func TestEncodeConcurrentMatchesSLTX(t *testing.T) {
	rng := newRand(t)
	var cases []txnCase
	var wants [][]byte
	for len(cases) < 16 {
		c := randomTxn(t, rng)
		sorted := slices.Clone(c.pages)
		slices.SortStableFunc(sorted, func(a, b Page) int { return cmp.Compare(a.Pgno, b.Pgno) })
		want, err := sltxEncode(c.hdr, sorted)
		if err != nil {
			continue
		}
		cases, wants = append(cases, c), append(wants, want)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(cases))
	for g := range 4 {
		wg.Go(func() {
			for k := range cases {
				i := (k + g*5) % len(cases)
				got, err := Encode(cases[i].hdr, cases[i].pages)
				if err != nil || !bytes.Equal(got, wants[i]) {
					errs <- fmt.Errorf("goroutine %d case %d (%s): %v, equal %t", g, i, cases[i].desc, err, bytes.Equal(got, wants[i]))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
