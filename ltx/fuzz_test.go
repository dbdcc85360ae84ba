package ltx

import (
	"bytes"
	"errors"
	"testing"

	sltx "github.com/superfly/ltx"
)

// Fuzz targets for every decoder. Seeds live in testdata/fuzz/<FuzzName>/
// (written by TestFuzzSeedCorpus -update); run one with e.g.
//
//	go test ./ltx -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s

// addGoldenSeeds adds the golden blobs as in-code seeds too, so the targets
// start from valid input even without the corpus directory.
func addGoldenSeeds(f *testing.F) {
	for _, c := range goldenCases(f) {
		b, err := Encode(c.hdr, c.pages)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, pages, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error %v does not match ErrCorrupt", err)
			}
			return
		}
		// Accepted: every other reader must agree.
		vhdr, err := Verify(bytes.NewReader(b))
		if err != nil || !equalHeader(vhdr, hdr) {
			t.Fatalf("Decode accepted, Verify = %v", err)
		}
		if err := sltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
			t.Fatalf("Decode accepted, sltx reference decoder: %v", err)
		}
		got, err := readAllPages(b)
		if err != nil || !samePages(got, pages) {
			t.Fatalf("Decode accepted, Blob: %v", err)
		}
		// Re-encoding gives a blob with the same content.
		b2, err := Encode(hdr, pages)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		hdr2, pages2, err := Decode(b2)
		if err != nil || !equalHeader(hdr2, hdr) || !samePages(pages2, pages) {
			t.Fatalf("re-encoded blob differs: %v", err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := Verify(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Verify error %v does not match ErrCorrupt", err)
		}
		dhdr, _, derr := Decode(b)
		if (err == nil) != (derr == nil) || (err == nil && !equalHeader(hdr, dhdr)) {
			t.Fatalf("Verify = %v, Decode = %v", err, derr)
		}
	})
}

func FuzzOpenBlobReadPage(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		blob, err := OpenBlob(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("OpenBlob error %v does not match ErrCorrupt", err)
			}
			return
		}
		hdr := blob.Header()
		pgnos := blob.Pgnos()
		if len(pgnos) != blob.Len() {
			t.Fatalf("Len %d, %d pgnos", blob.Len(), len(pgnos))
		}
		dst := make([]byte, hdr.PageSize)
		for i, pgno := range pgnos {
			if i > 0 && pgno <= pgnos[i-1] || pgno == 0 || pgno > hdr.Commit || pgno == hdr.LockPgno() {
				t.Fatalf("bad pgno %d at %d (commit %d)", pgno, i, hdr.Commit)
			}
			if !blob.Has(pgno) {
				t.Fatalf("Has(%d) = false", pgno)
			}
			data, err := blob.ReadPage(pgno, dst)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("ReadPage(%d) error %v does not match ErrCorrupt", pgno, err)
				}
				continue
			}
			if len(data) != int(hdr.PageSize) {
				t.Fatalf("ReadPage(%d) returned %d bytes", pgno, len(data))
			}
		}
		if _, err := blob.ReadPage(hdr.Commit+1, dst); !errors.Is(err, ErrPageNotFound) && hdr.Commit+1 != 0 {
			t.Fatalf("ReadPage(commit+1) = %v", err)
		}
		// Anything Decode accepts, Blob reads identically.
		if _, pages, err := Decode(b); err == nil {
			got, err := readAllPages(b)
			if err != nil || !samePages(got, pages) {
				t.Fatalf("Decode accepted, Blob: %v", err)
			}
		}
	})
}

// FuzzEncodeRoundTrip builds blobs from fuzzed page contents and header
// fields and checks that Encode accepts exactly what the reference
// sltx.Encoder path accepts, writes the same bytes, and that they decode
// back exactly.
func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add(uint8(0), uint32(5), uint64(3), false, []byte("hello, world"))
	f.Add(uint8(3), uint32(1), uint64(1), true, bytes.Repeat([]byte{0, 1, 2}, 700))
	f.Fuzz(func(t *testing.T, shift uint8, commit uint32, txid uint64, tracked bool, content []byte) {
		pageSize := uint32(512) << (shift % 8)
		if pageSize > 65536 || commit > 64 {
			return
		}
		hdr := Header{PageSize: pageSize, Commit: commit, MinTXID: TXID(txid), MaxTXID: TXID(txid), Timestamp: testTime}
		var pages []Page
		for pgno := uint32(1); pgno <= commit; pgno++ {
			p := make([]byte, pageSize)
			if len(content) > 0 {
				for i := range p {
					p[i] = content[(i+int(pgno)*7)%len(content)] ^ byte(i/len(content))
				}
			}
			if txid == 1 || len(content) == 0 || content[int(pgno)%len(content)]%3 != 0 {
				pages = append(pages, Page{pgno, p})
			}
		}
		if tracked {
			if txid == 1 {
				hdr = snapshotHeader(t, pageSize, pages, 1)
			} else {
				hdr.PreApplyChecksum, hdr.PostApplyChecksum = sltx.ChecksumFlag|Checksum(txid), sltx.ChecksumFlag|Checksum(commit)
				if commit == 0 {
					hdr.PostApplyChecksum = sltx.ChecksumFlag
				}
			}
		}
		b, err := Encode(hdr, pages)
		want, werr := sltxEncode(hdr, pages)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Encode error %v, sltx error %v", err, werr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode error %v does not match ErrInvalid", err)
			}
			return
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("Encode wrote %d bytes that differ from sltx's %d", len(b), len(want))
		}
		got, gotPages, err := Decode(b)
		if err != nil || !equalHeader(got, hdr) || !samePages(gotPages, pages) {
			t.Fatalf("round trip: %v", err)
		}
		if err := sltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
			t.Fatalf("sltx reference decoder: %v", err)
		}
	})
}
