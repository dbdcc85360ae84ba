package ltx

import (
	"fmt"

	sltx "github.com/superfly/ltx"
)

// PageChecksum returns the LTX checksum of page pgno holding data: CRC64-ISO
// over the big-endian page number followed by data, with ChecksumFlag set.
// It equals sltx.ChecksumPage.
func PageChecksum(pgno uint32, data []byte) Checksum {
	return sltx.ChecksumPage(pgno, data)
}

// DatabaseChecksum returns the rolling LTX checksum of a database of nPages
// pages of pageSize bytes: the XOR of PageChecksum over every page except
// the lock page, with ChecksumFlag set. read is called once for each page
// 1..nPages in order, except the lock page, and must return exactly pageSize
// bytes (it may reuse its buffer). For nPages > 0 the result equals
// sltx.ChecksumReader over the database file; for an empty database it is
// ChecksumFlag (the post-apply checksum LTX requires for Commit 0), where
// sltx.ChecksumReader returns 0.
//
// Errors from read are returned wrapped; a bad page size or a page of the
// wrong length matches ErrInvalid.
func DatabaseChecksum(pageSize uint32, nPages uint32, read func(pgno uint32) ([]byte, error)) (Checksum, error) {
	if !sltx.IsValidPageSize(pageSize) {
		return 0, invalidf("page size %d: want a power of two from 512 to 65536", pageSize)
	}
	lock := sltx.LockPgno(pageSize)
	h := sltx.NewHasher()
	sum := sltx.ChecksumFlag
	for pgno := uint32(1); pgno <= nPages && pgno != 0; pgno++ {
		if pgno == lock {
			continue
		}
		data, err := read(pgno)
		if err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if uint32(len(data)) != pageSize {
			return 0, invalidf("page %d is %d bytes, want page size %d", pgno, len(data), pageSize)
		}
		sum ^= sltx.ChecksumPageWithHasher(h, pgno, data)
	}
	return sltx.ChecksumFlag | sum, nil
}

// UpdateChecksum returns the database checksum c after page pgno changes
// from old to new: it removes old's page checksum (nil old means the page
// did not exist) and adds new's (nil new means the page was removed, as
// when the database shrinks). c may be 0 or ChecksumFlag for an empty
// database; the result always has ChecksumFlag set. The lock page never
// counts: if pgno is the lock page for the page size len(old) or len(new),
// c is returned with ChecksumFlag set and otherwise unchanged.
func UpdateChecksum(c Checksum, pgno uint32, old, new []byte) Checksum {
	size := len(new)
	if old != nil {
		size = len(old)
	}
	if size > 0 && sltx.IsValidPageSize(uint32(size)) && pgno == sltx.LockPgno(uint32(size)) {
		return sltx.ChecksumFlag | c
	}
	if old != nil {
		c ^= PageChecksum(pgno, old)
	}
	if new != nil {
		c ^= PageChecksum(pgno, new)
	}
	return sltx.ChecksumFlag | c
}
