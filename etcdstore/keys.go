package etcdstore

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest database name allowed, in bytes (a file name on
// Linux is at most 255 bytes).
const MaxNameLen = 255

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "/kvfs/"

// ValidateName returns a *NameError (matching ErrInvalidName) when name
// cannot be a database name: empty, "." or "..", longer than MaxNameLen, or
// containing '/' or NUL. Any other bytes are allowed, as on a local file
// system: spaces, control bytes, bytes that are not UTF-8.
func ValidateName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "empty"
	case name == "." || name == "..":
		reason = "reserved"
	case len(name) > MaxNameLen:
		reason = fmt.Sprintf("longer than %d bytes", MaxNameLen)
	case strings.IndexByte(name, '/') >= 0:
		reason = "contains '/'"
	case strings.IndexByte(name, 0) >= 0:
		reason = "contains NUL"
	}
	if reason != "" {
		return &NameError{Name: name, Reason: reason, TooLong: len(name) > MaxNameLen}
	}
	return nil
}

// DisplayName returns name as logs and metric labels can carry it: name
// itself when it is UTF-8, else Go-quoted (strconv.Quote) — Prometheus
// refuses label values that are not UTF-8.
func DisplayName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	return strconv.Quote(name)
}

// Keys builds every etcd key kvfs uses. The layout, for prefix P and
// database D:
//
//	P catalog/D                     the database exists (value: creation time)
//	P db/D/head                     commit-owned head of the database
//	P db/D/fence                    writer fence, attached to the holder's lease
//	P db/D/generation               last fence generation handed out (not leased)
//	P db/D/handoff                  a host's request for the write lease
//	P db/D/delta/<txid %016x>/<chunk %04x>   LTX bytes of one commit
//	P db/D/pidx/<txid %016x>/<chunk %04x>    page numbers in delta txid still live there
//	P db/D/compaction               compaction-owned state: shard versions, usage
//	P db/D/attrs                    the file's mode and owner (chmod, chown)
//	P db/D/log/<txid %016x>/<chunk %04x>     commit log: one commit's head and pages (history)
//	P db/D/epoch/<txid %016x>       a complete image kept for history: every shard's version at txid
//	P root                          the mount root's mode and owner
//	P ns/<dir id>/<name>            a name in a directory: the id of its database or directory
//	P dir/<dir id>                  a directory (not the root): its parent and mode and owner
//	P schema                        the key schema's version ("2": names in ns/, data by id)
//	P revisions                     etcd's revision sampled over time (JSON), for history compaction across restarts
//
// Under schema 2, D in the db/ keys is a database's id, not its name: a
// rename changes one ns/ entry and no data key. Databases created before
// keep their names as ids.
//
//	P db/D/shard/<shard %08x>/<txid %016x>/<chunk %04x>   LTX of one page range folded up to txid
//
// Fixed-width hex makes etcd's byte order the numeric order, so a range read
// returns txids, pages and shards ascending. Names never contain '/', so the
// prefix of one database never covers another's keys.
type Keys struct {
	prefix string
}

// NewKeys returns the key builder for prefix; "" means DefaultPrefix. A
// missing trailing '/' is added.
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return Keys{prefix: prefix}
}

// Prefix returns the configured prefix, ending in '/'.
func (k Keys) Prefix() string { return k.prefix }

// Catalog is the prefix of the catalog: one small key per database, so
// listing databases does not scan their data.
func (k Keys) Catalog() string { return k.prefix + "catalog/" }

// CatalogEntry is database name's catalog key.
func (k Keys) CatalogEntry(name string) string { return k.Catalog() + name }

// Databases is the prefix under which every database's keys live.
func (k Keys) Databases() string { return k.prefix + "db/" }

// DB is the prefix of every key of database name.
func (k Keys) DB(name string) string { return k.prefix + "db/" + name + "/" }

// Head is the key of the database's head.
func (k Keys) Head(name string) string { return k.prefix + "db/" + name + "/head" }

// Fence is the key of the database's writer fence.
func (k Keys) Fence(name string) string { return k.prefix + "db/" + name + "/fence" }

// Generation is the key holding the last fence generation handed out; it
// outlives the fence key, which vanishes with its lease.
func (k Keys) Generation(name string) string { return k.DB(name) + "generation" }

// Handoff is the key a host writes to ask the fence holder to release.
func (k Keys) Handoff(name string) string { return k.DB(name) + "handoff" }

// Deltas is the prefix of every delta of the database.
func (k Keys) Deltas(name string) string { return k.DB(name) + "delta/" }

// Delta is the chunk base (see ChunkOps) of the delta with txid.
func (k Keys) Delta(name string, txid uint64) string { return k.hexKey(name, "/delta/", txid, 16) }

// PIDXs is the prefix of the database's page index rows.
func (k Keys) PIDXs(name string) string { return k.DB(name) + "pidx/" }

// PIDX is the chunk base of the page index row of delta txid: the page
// numbers whose copy in that delta is still live (not yet folded into a
// shard). A commit writes one row; compaction rewrites or deletes it.
func (k Keys) PIDX(name string, txid uint64) string { return k.hexKey(name, "/pidx/", txid, 16) }

// Shards is the prefix of every shard of the database.
func (k Keys) Shards(name string) string { return k.DB(name) + "shard/" }

// Shard is the prefix of every version of shard number n.
func (k Keys) Shard(name string, n uint32) string {
	return k.Shards(name) + fmt.Sprintf("%08x/", n)
}

// ShardVersion is the chunk base of shard n folded up to txid. Versions are
// written whole before the compaction state points at them, and deleted
// only after it points elsewhere.
func (k Keys) ShardVersion(name string, n uint32, txid uint64) string {
	return k.Shard(name, n) + fmt.Sprintf("%016x", txid)
}

// Logs is the prefix of the database's commit log.
func (k Keys) Logs(name string) string { return k.DB(name) + "log/" }

// Log is the chunk base of the commit log row of txid: the head the commit
// wrote and the pages its delta holds, kept while history needs it (page
// index rows lose pages as compaction folds them; log rows never change).
func (k Keys) Log(name string, txid uint64) string { return k.hexKey(name, "/log/", txid, 16) }

// Epochs is the prefix of the database's history epochs.
func (k Keys) Epochs(name string) string { return k.DB(name) + "epoch/" }

// Epoch is the key of the history epoch at txid: the shard versions that
// together hold every page as of txid.
func (k Keys) Epoch(name string, txid uint64) string { return k.hexKey(name, "/epoch/", txid, 16) }

// Compaction is the key of the database's compaction state, written only
// by compaction so commits never contend with it.
func (k Keys) Compaction(name string) string { return k.DB(name) + "compaction" }

// Attrs is the key of the database file's mode and owner: written at
// creation and by chmod and chown, never by a commit.
func (k Keys) Attrs(name string) string { return k.DB(name) + "attrs" }

// RootAttrs is the key of the mount root directory's mode and owner.
func (k Keys) RootAttrs() string { return k.prefix + "root" }

// Namespace is the prefix of every directory's names.
func (k Keys) Namespace() string { return k.prefix + "ns/" }

// Entries is the prefix of directory dir's names: one range read lists it.
func (k Keys) Entries(dir string) string { return k.Namespace() + dir + "/" }

// Entry is the key of name in directory dir.
func (k Keys) Entry(dir, name string) string { return k.Entries(dir) + name }

// Dir is the key of directory id's record (its parent, mode and owner).
func (k Keys) Dir(id string) string { return k.prefix + "dir/" + id }

// Schema is the key of the key schema's version.
func (k Keys) Schema() string { return k.prefix + "schema" }

// Revisions is the key of the compaction workers' samples of etcd's
// revision over time: etcd history older than the retention window is
// compacted up to a sampled revision, across restarts of the workers.
func (k Keys) Revisions() string { return k.prefix + "revisions" }

// hexKey returns k.DB(name) without its final '/', then kind, then v as
// width lowercase hex digits (fmt's %0*x for v < 16^width), in one
// allocation: commits build these keys every time.
func (k Keys) hexKey(name, kind string, v uint64, width int) string {
	var b strings.Builder
	b.Grow(len(k.prefix) + len("db/") + len(name) + len(kind) + width)
	b.WriteString(k.prefix)
	b.WriteString("db/")
	b.WriteString(name)
	b.WriteString(kind)
	writeHex(&b, v, width)
	return b.String()
}

// hexDigits are the digits writeHex writes.
const hexDigits = "0123456789abcdef"

// writeHex writes the low width hex digits of v (width ≤ 16), lowercase
// and zero-padded: fmt's %0*x when v < 16^width.
func writeHex(b *strings.Builder, v uint64, width int) {
	var d [16]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = hexDigits[v&0xf]
		v >>= 4
	}
	b.Write(d[:width])
}

// KeyKind says what a parsed key is.
type KeyKind int

// Key kinds returned by Keys.Parse.
const (
	KindUnknown KeyKind = iota
	KindHead
	KindFence
	KindGeneration
	KindHandoff
	KindDelta // a chunk of a delta
	KindPIDX
	KindShard // a chunk of a shard version
	KindCompaction
	KindAttrs
	KindLog   // a chunk of a commit log row
	KindEpoch // a history epoch
)

// KeyInfo is what Keys.Parse learns from a key.
type KeyInfo struct {
	DB    string
	Kind  KeyKind
	TXID  uint64 // KindDelta, KindPIDX, KindShard, KindLog, KindEpoch
	Shard uint32 // KindShard
	Chunk int    // KindDelta, KindPIDX, KindShard, KindLog
}

// Parse decodes a key built by k. ok is false for a key outside the layout.
func (k Keys) Parse(key string) (info KeyInfo, ok bool) {
	rest, found := strings.CutPrefix(key, k.Databases())
	if !found {
		return info, false
	}
	name, rest, found := strings.Cut(rest, "/")
	if !found || ValidateName(name) != nil {
		return info, false
	}
	info.DB = name
	parts := strings.Split(rest, "/")
	hex := func(s string, width, bits int) (uint64, bool) {
		if len(s) != width || strings.ToLower(s) != s {
			return 0, false
		}
		v, err := strconv.ParseUint(s, 16, bits)
		return v, err == nil
	}
	switch {
	case len(parts) == 1 && parts[0] == "head":
		info.Kind = KindHead
	case len(parts) == 1 && parts[0] == "fence":
		info.Kind = KindFence
	case len(parts) == 1 && parts[0] == "generation":
		info.Kind = KindGeneration
	case len(parts) == 1 && parts[0] == "handoff":
		info.Kind = KindHandoff
	case len(parts) == 3 && parts[0] == "delta":
		txid, ok1 := hex(parts[1], 16, 64)
		chunk, ok2 := hex(parts[2], 4, 16)
		if !ok1 || !ok2 {
			return info, false
		}
		info.Kind, info.TXID, info.Chunk = KindDelta, txid, int(chunk)
	case len(parts) == 3 && (parts[0] == "pidx" || parts[0] == "log"):
		txid, ok1 := hex(parts[1], 16, 64)
		chunk, ok2 := hex(parts[2], 4, 16)
		if !ok1 || !ok2 {
			return info, false
		}
		info.Kind, info.TXID, info.Chunk = KindPIDX, txid, int(chunk)
		if parts[0] == "log" {
			info.Kind = KindLog
		}
	case len(parts) == 2 && parts[0] == "epoch":
		txid, ok := hex(parts[1], 16, 64)
		if !ok {
			return info, false
		}
		info.Kind, info.TXID = KindEpoch, txid
	case len(parts) == 1 && parts[0] == "compaction":
		info.Kind = KindCompaction
	case len(parts) == 1 && parts[0] == "attrs":
		info.Kind = KindAttrs
	case len(parts) == 4 && parts[0] == "shard":
		n, ok1 := hex(parts[1], 8, 32)
		txid, ok2 := hex(parts[2], 16, 64)
		chunk, ok3 := hex(parts[3], 4, 16)
		if !ok1 || !ok2 || !ok3 {
			return info, false
		}
		info.Kind, info.Shard, info.TXID, info.Chunk = KindShard, uint32(n), txid, int(chunk)
	default:
		return info, false
	}
	return info, true
}
