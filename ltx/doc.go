// Package ltx is kvfs's blob codec: it encodes sets of SQLite pages as LTX v3
// files (github.com/superfly/ltx, imported as sltx), decodes and verifies
// them, and reads single pages out of them by the page index.
//
// Invariant: every blob this package writes is a valid LTX v3 file that the
// reference decoder (sltx.Decoder.Verify, `ltx verify`) accepts, and every
// decoder here either returns exactly the header and pages that were
// encoded or an error matching ErrCorrupt — never a panic. (Blob checks
// structure only; see "Integrity" below.)
//
// # Blob layout
//
// A blob is sltx's LTX v3 format, byte for byte what sltx.Encoder writes
// (Writer encodes it itself to reuse its LZ4 compressor; TestEncodeMatchesSLTX
// compares the two on random blobs):
//
//	header (100 bytes)             magic "LTX1", flags, page size, commit, min/max txid,
//	                               timestamp (ms), pre-apply checksum; WAL fields and node id zero
//	page frames, ascending pgno    pgno (4) | flags (2) = 0x0001 | LZ4 block size (4) | LZ4 block
//	end-of-pages marker (6 zeros)
//	page index                     uvarint (pgno, frame offset, frame size) per page, uvarint 0
//	index size (8, big-endian)     bytes in the page index
//	trailer (16)                   post-apply checksum | file checksum
//
// The file checksum is CRC64-ISO over the header, each frame's header and
// size, each page's uncompressed data, the end marker, the index and the
// post-apply checksum, with the top bit (sltx.ChecksumFlag) set.
//
// # Rules every blob obeys
//
// Encode, NewWriter and Writer refuse input that breaks these with
// ErrInvalid; the decoders refuse blobs that break them with ErrCorrupt.
//
//   - PageSize is a power of two from 512 to 65536; every page is PageSize bytes.
//   - 1 ≤ MinTXID ≤ MaxTXID.
//   - Page numbers are non-zero, at most Commit, strictly ascending (no
//     duplicates) and never the lock page (Header.LockPgno, the page
//     holding byte 0x40000000, which SQLite never writes).
//   - A blob with MinTXID == 1 is a snapshot: it holds every page 1..Commit
//     except the lock page, in sequence.
//   - Checksums are tracked when either checksum in the Header is
//     non-zero; both zero means untracked (sltx.HeaderFlagNoChecksum).
//     Tracked checksums have ChecksumFlag set. A tracked non-snapshot needs
//     both a PreApplyChecksum and a PostApplyChecksum; a tracked snapshot
//     has PreApplyChecksum zero and PostApplyChecksum equal to the XOR of
//     its pages' checksums (DatabaseChecksum of the database it holds).
//     Otherwise the encoder cannot check the checksums; they are whatever
//     the caller maintains with UpdateChecksum.
//   - Commit == 0 (an empty database) needs tracked checksums with
//     PostApplyChecksum == ChecksumFlag; sltx cannot write an empty,
//     untracked blob.
//
// # How kvfs uses blobs
//
// A delta is one commit: MinTXID == MaxTXID == the commit's txid, Commit the
// database size after it, pages the commit's dirty pages. A delta of txid 1
// is a snapshot and so must hold the whole database.
//
// A shard is the pages of one page-number range folded up to txid T: header
// MinTXID == MaxTXID == T with T ≥ 2 (so it is not a snapshot and may hold
// any subset of pages) and checksums not tracked, since a shard does not
// describe a whole database.
//
// Blobs are stored in etcd, split into values that fit a request by the
// caller; this package sees only whole blobs.
//
// # Integrity
//
// Decode and Verify check everything: the header, every frame, that each
// LZ4 block decompresses to exactly one page, that the page index names
// exactly the frames read, back to back, the file checksum, the absence of
// trailing bytes and, for snapshots with tracked checksums, the post-apply
// checksum. They do not use sltx.Decoder, which allocates a frame's
// declared size before reading it and accepts frames that decompress short.
//
// OpenBlob and Blob.ReadPage are for the read path: they check structure
// (header and trailer fields, that the index tiles the page block, the
// frame header of the page read, its decompressed length) but cannot check
// the file checksum without decompressing every page. Corruption inside a
// page's compressed bytes, the timestamp or a checksum field can go
// unnoticed by them; verify blobs with Verify where they enter the system
// if that matters.
package ltx
