package ltx

import (
	"bytes"
	"errors"
	"testing"

	sltx "github.com/superfly/ltx"
)

func TestPageChecksum(t *testing.T) {
	p := bytes.Repeat([]byte{7}, 4096)
	if got, want := PageChecksum(3, p), sltx.ChecksumPage(3, p); got != want {
		t.Fatalf("PageChecksum = %s, want %s", got, want)
	}
	if PageChecksum(3, p) == PageChecksum(4, p) {
		t.Fatal("page number does not affect the checksum")
	}
}

func TestDatabaseChecksumMatchesChecksumReader(t *testing.T) {
	real := realisticPages(t)
	file := bytes.Join(real, nil)
	want, err := sltx.ChecksumReader(bytes.NewReader(file), 4096)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DatabaseChecksum(4096, uint32(len(real)), func(pgno uint32) ([]byte, error) { return real[pgno-1], nil })
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("DatabaseChecksum = %s, ChecksumReader = %s", got, want)
	}

	if got, _ := DatabaseChecksum(4096, 0, nil); got != sltx.ChecksumFlag {
		t.Fatalf("empty database: %s, want ChecksumFlag", got)
	}
	if _, err := DatabaseChecksum(1000, 1, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad page size: %v", err)
	}
	if _, err := DatabaseChecksum(4096, 1, func(uint32) ([]byte, error) { return make([]byte, 10), nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short page: %v", err)
	}
	if _, err := DatabaseChecksum(4096, 1, func(uint32) ([]byte, error) { return nil, errDisk }); !errors.Is(err, errDisk) {
		t.Fatalf("read error: %v", err)
	}
	if testing.Short() {
		t.Skip("hashing 1 GiB across the lock page; run without -short")
	}
	// Across the lock page: 512-byte pages put it at 2097153, too many; use
	// 65536-byte pages (lock page 16385) with one shared zero page.
	zero := make([]byte, 65536)
	lock := sltx.LockPgno(65536)
	n := lock + 1
	got, err = DatabaseChecksum(65536, n, func(pgno uint32) ([]byte, error) {
		if pgno == lock {
			t.Fatal("read the lock page")
		}
		return zero, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err = sltx.ChecksumReader(&zeroReader{n: int64(n) * 65536}, 65536)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("across lock page: DatabaseChecksum = %s, ChecksumReader = %s", got, want)
	}

}

// zeroReader reads n zero bytes.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, errEOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func TestUpdateChecksum(t *testing.T) {
	rng := newRand(t)
	// A database of random pages, changed at random; the rolling checksum
	// must always equal a full recomputation.
	db := map[uint32][]byte{}
	var n uint32
	sum := Checksum(0)
	full := func() Checksum {
		c, err := DatabaseChecksum(512, n, func(pgno uint32) ([]byte, error) { return db[pgno], nil })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for step := range 500 {
		switch op := rng.IntN(3); {
		case op == 0 || n == 0: // grow
			n++
			p := randomPage(rng, 512)
			sum = UpdateChecksum(sum, n, nil, p)
			db[n] = p
		case op == 1: // overwrite
			pgno := 1 + uint32(rng.IntN(int(n)))
			p := randomPage(rng, 512)
			sum = UpdateChecksum(sum, pgno, db[pgno], p)
			db[pgno] = p
		default: // shrink
			sum = UpdateChecksum(sum, n, db[n], nil)
			delete(db, n)
			n--
		}
		if want := full(); sum != want {
			t.Fatalf("step %d: rolling %s, full %s", step, sum, want)
		}
	}
	// The lock page never counts.
	lock := sltx.LockPgno(65536)
	if got := UpdateChecksum(sltx.ChecksumFlag|5, lock, nil, make([]byte, 65536)); got != sltx.ChecksumFlag|5 {
		t.Fatalf("lock page changed the checksum: %s", got)
	}
}
