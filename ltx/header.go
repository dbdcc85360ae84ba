package ltx

import (
	"fmt"
	"time"

	sltx "github.com/superfly/ltx"
)

// TXID is a transaction ID, as stored in LTX headers.
type TXID = sltx.TXID

// Checksum is an LTX checksum: a CRC64-ISO with the top bit (sltx.ChecksumFlag)
// always set, so that a valid checksum is never zero.
type Checksum = sltx.Checksum

// Header describes a blob. It is what Encode and NewWriter take and what the
// decoders return.
type Header struct {
	// PageSize is the database page size in bytes: a power of two from 512
	// to 65536.
	PageSize uint32

	// Commit is the database size in pages after this blob applies. Every
	// page number in the blob is at most Commit.
	Commit uint32

	// MinTXID and MaxTXID are the range of transactions the blob covers,
	// 1 ≤ MinTXID ≤ MaxTXID. MinTXID == 1 makes the blob a snapshot, which
	// must hold every page 1..Commit except the lock page.
	MinTXID, MaxTXID TXID

	// Timestamp is when the blob was made. It is stored as milliseconds
	// since the Unix epoch, so sub-millisecond precision is lost; decoders
	// return it in UTC.
	Timestamp time.Time

	// PreApplyChecksum and PostApplyChecksum are the rolling database
	// checksums (see DatabaseChecksum) before and after the blob applies.
	// Both zero means checksums are not tracked (the blob is written with
	// sltx.HeaderFlagNoChecksum). When tracked, PostApplyChecksum is
	// required; PreApplyChecksum is required for non-snapshots and must be
	// zero for snapshots.
	PreApplyChecksum, PostApplyChecksum Checksum
}

// Page is one database page.
type Page struct {
	// Pgno is the 1-based page number.
	Pgno uint32
	// Data is the page content; its length is the blob's page size.
	Data []byte
}

// Tracked reports whether the header carries database checksums.
func (h Header) Tracked() bool {
	return h.PreApplyChecksum != 0 || h.PostApplyChecksum != 0
}

// IsSnapshot reports whether the header describes a snapshot (MinTXID == 1).
func (h Header) IsSnapshot() bool { return h.MinTXID == 1 }

// LockPgno returns the page number of the lock page for the header's page
// size: the page holding byte offset 0x40000000, which never appears in a
// blob.
func (h Header) LockPgno() uint32 {
	if h.PageSize == 0 {
		return 0
	}
	return sltx.LockPgno(h.PageSize)
}

// toSLTX validates h for encoding and converts it to an sltx header.
// Errors match ErrInvalid.
func (h Header) toSLTX() (sltx.Header, error) {
	if !sltx.IsValidPageSize(h.PageSize) {
		return sltx.Header{}, invalidf("page size %d: want a power of two from 512 to 65536", h.PageSize)
	}
	if h.MinTXID == 0 || h.MaxTXID < h.MinTXID {
		return sltx.Header{}, invalidf("txid range [%d,%d]: want 1 ≤ min ≤ max", h.MinTXID, h.MaxTXID)
	}
	sh := sltx.Header{
		Version:          sltx.Version,
		PageSize:         h.PageSize,
		Commit:           h.Commit,
		MinTXID:          h.MinTXID,
		MaxTXID:          h.MaxTXID,
		Timestamp:        h.Timestamp.UnixMilli(),
		PreApplyChecksum: h.PreApplyChecksum,
	}
	if !h.Tracked() {
		sh.Flags = sltx.HeaderFlagNoChecksum
		if h.Commit == 0 {
			// sltx requires post-apply checksum ChecksumFlag for an empty
			// database but forbids any post-apply checksum without tracking.
			return sltx.Header{}, invalidf("commit 0 requires tracked checksums (sltx cannot encode an empty database without them)")
		}
	} else {
		if h.PostApplyChecksum&sltx.ChecksumFlag == 0 {
			return sltx.Header{}, invalidf("post-apply checksum %s: top bit (ChecksumFlag) must be set", h.PostApplyChecksum)
		}
		if h.Commit == 0 && h.PostApplyChecksum != sltx.ChecksumFlag {
			return sltx.Header{}, invalidf("post-apply checksum %s of an empty database must be %s", h.PostApplyChecksum, sltx.ChecksumFlag)
		}
		if h.IsSnapshot() {
			if h.PreApplyChecksum != 0 {
				return sltx.Header{}, invalidf("pre-apply checksum %s must be zero on a snapshot", h.PreApplyChecksum)
			}
		} else if h.PreApplyChecksum&sltx.ChecksumFlag == 0 {
			return sltx.Header{}, invalidf("pre-apply checksum %s: required on a non-snapshot with tracked checksums, top bit set", h.PreApplyChecksum)
		}
	}
	if err := sh.Validate(); err != nil {
		return sltx.Header{}, invalid("validate header", err)
	}
	return sh, nil
}

// headerFromSLTX converts a decoded sltx header and trailer.
func headerFromSLTX(sh sltx.Header, tr sltx.Trailer) Header {
	return Header{
		PageSize:          sh.PageSize,
		Commit:            sh.Commit,
		MinTXID:           sh.MinTXID,
		MaxTXID:           sh.MaxTXID,
		Timestamp:         time.UnixMilli(sh.Timestamp).UTC(),
		PreApplyChecksum:  sh.PreApplyChecksum,
		PostApplyChecksum: tr.PostApplyChecksum,
	}
}

// parseHeader decodes and validates the 100-byte header at the start of b.
// kvfs blobs never set the WAL fields or the node ID, so non-zero values are
// treated as corruption. Errors match ErrCorrupt.
func parseHeader(b []byte) (sltx.Header, error) {
	var sh sltx.Header
	if len(b) < sltx.HeaderSize {
		return sh, corruptf("read header", "%d bytes, want %d", len(b), sltx.HeaderSize)
	}
	if err := sh.UnmarshalBinary(b[:sltx.HeaderSize]); err != nil {
		return sh, corrupt("read header", err)
	}
	if err := sh.Validate(); err != nil {
		return sh, corrupt("validate header", err)
	}
	if sh.WALOffset != 0 || sh.WALSize != 0 || sh.WALSalt1 != 0 || sh.WALSalt2 != 0 || sh.NodeID != 0 {
		return sh, corruptf("validate header", "unexpected WAL fields or node id")
	}
	if sh.Commit == 0 && sh.NoChecksum() {
		return sh, corruptf("validate header", "commit 0 without checksums")
	}
	return sh, nil
}

// checkTrailer validates the trailer against the header. Errors match
// ErrCorrupt.
func checkTrailer(sh sltx.Header, tr sltx.Trailer) error {
	if err := tr.Validate(sh); err != nil {
		return corrupt("validate trailer", err)
	}
	if sh.Commit == 0 && tr.PostApplyChecksum != sltx.ChecksumFlag {
		return corruptf("validate trailer", "post-apply checksum %s of an empty database", tr.PostApplyChecksum)
	}
	return nil
}

// pageOrder enforces the page-number rules of a blob as pages go by: each
// page number is non-zero, at most Commit, not the lock page and greater than
// the previous one; in a snapshot the pages are exactly 1..Commit, skipping
// the lock page. Errors are plain; callers wrap them as ErrInvalid (encoding)
// or ErrCorrupt (decoding).
type pageOrder struct {
	commit   uint32
	lock     uint32
	snapshot bool
	prev     uint32 // last page number accepted; 0 before the first
}

func newPageOrder(sh sltx.Header) pageOrder {
	return pageOrder{commit: sh.Commit, lock: sltx.LockPgno(sh.PageSize), snapshot: sh.IsSnapshot()}
}

// next checks pgno as the next page.
func (o *pageOrder) next(pgno uint32) error {
	switch {
	case pgno == 0:
		return fmt.Errorf("page number 0")
	case pgno > o.commit:
		return fmt.Errorf("page %d beyond commit %d", pgno, o.commit)
	case pgno == o.lock:
		return fmt.Errorf("page %d is the lock page", pgno)
	case pgno <= o.prev:
		return fmt.Errorf("page %d after page %d: want ascending, no duplicates", pgno, o.prev)
	}
	if o.snapshot {
		want := o.prev + 1
		if want == o.lock {
			want++
		}
		if pgno != want {
			return fmt.Errorf("snapshot page %d after page %d: want %d (snapshots hold every page 1..commit)", pgno, o.prev, want)
		}
	}
	o.prev = pgno
	return nil
}

// done checks that a snapshot held every page up to Commit.
func (o *pageOrder) done() error {
	if !o.snapshot {
		return nil
	}
	want := o.commit
	if want == o.lock {
		want--
	}
	if o.prev != want {
		return fmt.Errorf("snapshot ends at page %d: want every page up to commit %d", o.prev, o.commit)
	}
	return nil
}
