package pager

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// History keeps every committed version of a database for
// Options.History (the retention window) and reads any of them as a
// read-only Snapshot (Database.Version, Database.VersionAt).
//
// Every commit writes a log row (Keys.Log): the head it committed and the
// pages of its delta. Unlike a page index row, a log row never changes.
// A complete compaction pass at txid E may record an epoch (Keys.Epoch):
// the shard versions that together hold every page as of E. Compaction
// then keeps, instead of deleting, what an epoch or a delta after the
// oldest epoch still needs: a shard version superseded after an epoch
// that names it, and every delta after the oldest epoch. Version T is
// read from the newest epoch E ≤ T (none: no page before txid 1) and the
// deltas of the log rows E+1…T: exactly a view whose shards are the
// epoch's and whose page index is those rows.
//
// Version T is in the window while it was the live version at some time
// within Options.History of now: T is the head, or the commit after T
// happened less than Options.History ago. Expiry (in compaction passes)
// takes the newest epoch at least that old as the new oldest epoch and
// deletes the epochs, shard versions, deltas and log rows before it.

// logRow is a commit's log row.
type logRow struct {
	head  Head     // TXID, Generation, PageSize, Pages, Timestamp, Plain, Bytes
	delta int64    // bytes of the delta (0: none)
	count int      // pages in the delta
	pgnos []uint32 // the pages; nil when decoded from a row's first chunk only
}

// logFormat is the first byte of a log row.
const logFormat = 1

// encodeLogRow encodes a commit's log row: a format byte, uvarint
// generation, page size, pages, timestamp, delta bytes, plain flag and plain
// size, then the pages as encodePgnos.
func encodeLogRow(h Head, delta int64, pgnos []uint32) []byte {
	b := make([]byte, 0, 48+2*len(pgnos))
	b = append(b, logFormat)
	plain := uint64(0)
	if h.Plain {
		plain = 1
	}
	for _, v := range []uint64{h.Generation, uint64(h.PageSize), uint64(h.Pages), uint64(max(h.Timestamp, 0)), uint64(delta), plain, uint64(max(h.Bytes, 0))} {
		b = binary.AppendUvarint(b, v)
	}
	return append(b, encodePgnos(pgnos)...)
}

// decodeLogRow decodes row, a log row of txid. With header only, row may
// be the first chunk of a longer row: the pages are then not decoded.
func decodeLogRow(txid uint64, row []byte, headerOnly bool) (logRow, error) {
	bad := func(what string) error {
		return fmt.Errorf("log row %d: %s: %w", txid, what, ErrCorrupt)
	}
	if len(row) == 0 || row[0] != logFormat {
		return logRow{}, bad("unknown format")
	}
	b := row[1:]
	var v [8]uint64
	for i := range v {
		x, k := binary.Uvarint(b)
		if k <= 0 {
			return logRow{}, bad("truncated")
		}
		v[i], b = x, b[k:]
	}
	r := logRow{
		head: Head{TXID: txid, Generation: v[0], PageSize: uint32(v[1]), Pages: uint32(v[2]), Timestamp: int64(v[3]),
			Plain: v[5] == 1, Bytes: int64(v[6])},
		delta: int64(v[4]), count: int(v[7]),
	}
	if !headerOnly {
		pgnos, err := decodePgnos(row[len(row)-len(b)-uvarintLen(v[7]):])
		if err != nil {
			return logRow{}, fmt.Errorf("log row %d: %w", txid, err)
		}
		r.pgnos = pgnos
	}
	return r, nil
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// epoch is a complete image kept for history (Keys.Epoch): at TXID, the
// page of shard n is in version Shards[n], for every shard.
type epoch struct {
	TXID       uint64            `json:"-"`
	Timestamp  int64             `json:"ts"` // commit time of TXID, Unix ms
	ShardPages uint32            `json:"shard_pages"`
	Shards     map[uint32]uint64 `json:"shards,omitempty"`
}

func parseEpoch(txid uint64, b []byte) (epoch, error) {
	var e epoch
	if err := json.Unmarshal(b, &e); err != nil || e.ShardPages == 0 {
		return e, fmt.Errorf("epoch %d: %v: %w", txid, err, ErrCorrupt)
	}
	e.TXID = txid
	return e, nil
}

// VersionError is returned (matching ErrNotFound) when a version asked
// for cannot be read: after the head, outside the history window, or
// history off.
type VersionError struct {
	DB     string
	Want   string // the txid or time asked for
	Reason string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("version %s of %s: %s", e.Want, e.DB, e.Reason)
}

func (e *VersionError) Unwrap() error { return ErrNotFound }

// Commit is one entry of the commit log (Database.Log).
type Commit struct {
	TXID       uint64
	Time       time.Time // the committing host's clock
	Generation uint64
	Pages      uint32 // database size in pages after the commit
	PageSize   uint32
	Changed    int   // pages the commit wrote
	Bytes      int64 // bytes of its delta
	Plain      bool
	Size       int64 // file size after the commit
}

// Log calls fn for the commits the history keeps, oldest first, from
// txid from on (0: all). It stops at fn's error and returns it.
func (db *Database) Log(ctx context.Context, from uint64, fn func(Commit) error) error {
	keys := db.p.keys
	v, err := db.current(ctx)
	if err != nil {
		return err
	}
	defer db.unpin(v.rev)
	_, err = db.p.store.Range(ctx, keys.Log(db.name, from), etcdstore.RangeOptions{Rev: v.rev, End: keys.Log(db.name, v.head.TXID+1)}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindLog || info.Chunk != 0 {
			return nil
		}
		_, payload, err := etcdstore.DecodeChunk(kv.Value)
		if err != nil {
			return fmt.Errorf("log row %d: %w", info.TXID, err)
		}
		r, err := decodeLogRow(info.TXID, payload, true)
		if err != nil {
			return err
		}
		return fn(r.commit())
	})
	return err
}

func (r logRow) commit() Commit {
	return Commit{
		TXID: r.head.TXID, Time: time.UnixMilli(r.head.Timestamp), Generation: r.head.Generation,
		Pages: r.head.Pages, PageSize: r.head.PageSize, Changed: r.count, Bytes: r.delta, Plain: r.head.Plain, Size: r.head.Size(),
	}
}

// current pins and returns the database's current view (unpin v.rev).
func (db *Database) current(ctx context.Context) (view, error) {
	if err := db.refresh(ctx); err != nil {
		return view{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	v := db.viewLocked()
	db.pinRevs[v.rev]++
	return v, nil
}

// Version returns a read-only snapshot of the database as of txid, which
// must be the head or within the history window (Options.History): else
// a *VersionError (ErrNotFound).
func (db *Database) Version(ctx context.Context, txid uint64) (*Snapshot, error) {
	return db.version(ctx, fmt.Sprint(txid), func(view) (uint64, error) { return txid, nil })
}

// VersionAt returns a read-only snapshot of the version that was live at
// t: the last commit at or before t. Errors are Version's.
func (db *Database) VersionAt(ctx context.Context, t time.Time) (*Snapshot, error) {
	return db.version(ctx, t.UTC().Format(time.RFC3339Nano), func(v view) (uint64, error) {
		return db.txidAt(ctx, v, t)
	})
}

// version opens the snapshot of the txid pick chooses in the current view.
func (db *Database) version(ctx context.Context, want string, pick func(view) (uint64, error)) (*Snapshot, error) {
	v, err := db.current(ctx)
	if err != nil {
		return nil, err
	}
	s, err := db.versionIn(ctx, v, want, pick)
	if err != nil {
		db.unpin(v.rev)
		return nil, err
	}
	return s, nil
}

func (db *Database) versionIn(ctx context.Context, v view, want string, pick func(view) (uint64, error)) (*Snapshot, error) {
	notFound := func(reason string) error { return &VersionError{DB: db.Path(), Want: want, Reason: reason} }
	txid, err := pick(v)
	if err != nil {
		return nil, err
	}
	switch {
	case txid == 0:
		return nil, notFound("txid 0 is no version (the first commit is txid 1)")
	case txid > v.head.TXID:
		return nil, notFound(fmt.Sprintf("after the last commit, txid %d", v.head.TXID))
	case txid == v.head.TXID:
		return &Snapshot{db: db, v: v}, nil
	case db.p.opts.History <= 0:
		return nil, notFound("history is off (history.retention is 0)")
	}
	keys, store := db.p.keys, db.p.store
	// In the window: the next commit happened within it.
	next, err := db.logRow(ctx, txid+1, v.rev, true)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return nil, notFound("older than the history kept")
	} else if err != nil {
		return nil, err
	}
	cutoff := db.now().Add(-db.p.opts.History)
	if next.head.Timestamp <= cutoff.UnixMilli() {
		return nil, notFound(fmt.Sprintf("superseded at %s, more than history.retention (%s) ago",
			time.UnixMilli(next.head.Timestamp).UTC().Format(time.RFC3339), db.p.opts.History))
	}
	// The newest epoch at or before txid.
	ep := epoch{Shards: map[uint32]uint64{}}
	_, err = store.Range(ctx, keys.Epochs(db.name), etcdstore.RangeOptions{Rev: v.rev, End: keys.Epoch(db.name, txid+1)}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindEpoch {
			return nil
		}
		e, err := parseEpoch(info.TXID, kv.Value)
		if err == nil {
			ep = e
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("version %s of %s: %w", want, db.name, err)
	}
	// The log rows after it, up to txid: every one must be there.
	idx := newPageIndex()
	var head Head
	expect := max(ep.TXID, 1)
	err = db.logRows(ctx, v.rev, expect, txid, func(r logRow) error {
		if r.head.TXID != expect {
			return notFound(fmt.Sprintf("the log lacks txid %d", expect))
		}
		expect++
		if r.head.TXID > ep.TXID && len(r.pgnos) > 0 {
			idx.add(r.head.TXID, r.pgnos)
		}
		head = r.head
		return nil
	})
	if err != nil {
		return nil, err
	}
	if expect != txid+1 {
		return nil, notFound(fmt.Sprintf("the log lacks txid %d", expect))
	}
	hv := view{head: head, comp: &compState{ShardPages: max(ep.ShardPages, 1), Shards: ep.Shards}, rev: v.rev, inc: v.inc, idx: idx}
	return &Snapshot{db: db, v: hv}, nil
}

// txidAt returns the last txid committed at or before t, as the log says.
func (db *Database) txidAt(ctx context.Context, v view, t time.Time) (uint64, error) {
	ms := t.UnixMilli()
	if v.head.TXID == 0 || v.head.Timestamp <= ms {
		return v.head.TXID, nil
	}
	if db.p.opts.History <= 0 {
		return 0, &VersionError{DB: db.Path(), Want: t.UTC().Format(time.RFC3339Nano), Reason: "history is off (history.retention is 0)"}
	}
	keys := db.p.keys
	// Start at the newest epoch committed at or before t.
	from := uint64(1)
	_, err := db.p.store.Range(ctx, keys.Epochs(db.name), etcdstore.RangeOptions{Rev: v.rev}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindEpoch {
			return nil
		}
		e, err := parseEpoch(info.TXID, kv.Value)
		if err != nil {
			return err
		}
		if e.Timestamp <= ms {
			from = e.TXID
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	found := uint64(0)
	errStop := errors.New("stop")
	_, err = db.p.store.Range(ctx, keys.Log(db.name, from), etcdstore.RangeOptions{Rev: v.rev, End: keys.Log(db.name, v.head.TXID+1)}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.Kind != etcdstore.KindLog || info.Chunk != 0 {
			return nil
		}
		_, payload, err := etcdstore.DecodeChunk(kv.Value)
		if err != nil {
			return err
		}
		r, err := decodeLogRow(info.TXID, payload, true)
		if err != nil {
			return err
		}
		if r.head.Timestamp > ms {
			return errStop
		}
		found = info.TXID
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	if found == 0 {
		return 0, &VersionError{DB: db.Path(), Want: t.UTC().Format(time.RFC3339Nano), Reason: "before the oldest commit the history keeps"}
	}
	return found, nil
}

// logRow reads the log row of txid at rev (etcdstore.ErrNotFound when
// there is none).
func (db *Database) logRow(ctx context.Context, txid uint64, rev int64, headerOnly bool) (logRow, error) {
	base := db.p.keys.Log(db.name, txid)
	if headerOnly {
		_, payload, err := db.p.store.GetChunk(ctx, base, 0, rev)
		if err != nil {
			return logRow{}, err
		}
		return decodeLogRow(txid, payload, true)
	}
	row, err := db.p.store.GetChunked(ctx, base, rev)
	if err != nil {
		return logRow{}, err
	}
	return decodeLogRow(txid, row, false)
}

// logRows calls fn for the log rows of txids from…to at rev, in order,
// whole.
func (db *Database) logRows(ctx context.Context, rev int64, from, to uint64, fn func(logRow) error) error {
	keys := db.p.keys
	return db.rangeRows(ctx, keys.Log(db.name, from), keys.Log(db.name, to+1), rev, etcdstore.KindLog, "log row", to, func(txid uint64, row []byte) error {
		r, err := decodeLogRow(txid, row, false)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// now is the pager's clock (Options.Now).
func (db *Database) now() time.Time {
	if db.p.opts.Now != nil {
		return db.p.opts.Now()
	}
	return now()
}

// VersionSpec names a version: a txid, or the last commit at or before a
// time (when TXID is 0).
type VersionSpec struct {
	TXID uint64
	Time time.Time
}

func (v VersionSpec) String() string {
	if v.TXID > 0 {
		return strconv.FormatUint(v.TXID, 10)
	}
	return v.Time.Format(time.RFC3339Nano)
}

// ParseVersion parses a version as users write it (after '@' in a
// time-travel name, or kvfs restore --to): a txid (decimal, 1 or more) or
// an RFC 3339 time with its zone.
func ParseVersion(s string) (VersionSpec, error) {
	if s == "" {
		return VersionSpec{}, errors.New("empty version: want a txid or an RFC 3339 time")
	}
	if !strings.ContainsAny(s, "-:T") {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return VersionSpec{}, fmt.Errorf("version %q: want a txid (1 or more) or an RFC 3339 time such as 2026-12-01T10:00:00Z", s)
		}
		return VersionSpec{TXID: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if _, e2 := time.Parse("2006-01-02T15:04:05.999999999", s); e2 == nil {
			return VersionSpec{}, fmt.Errorf("time %q has no zone: add Z (UTC) or an offset such as +01:00", s)
		}
		return VersionSpec{}, fmt.Errorf("version %q: want a txid or an RFC 3339 time such as 2026-12-01T10:00:00Z", s)
	}
	return VersionSpec{Time: t}, nil
}

// VersionOf returns the snapshot of the version v names (Version or
// VersionAt).
func (db *Database) VersionOf(ctx context.Context, v VersionSpec) (*Snapshot, error) {
	if v.TXID > 0 {
		return db.Version(ctx, v.TXID)
	}
	return db.VersionAt(ctx, v.Time)
}

// ChangedSince returns, sorted, the pages that the commits after s's txid
// up to the head of the current view wrote, the fewest pages the database
// had along the way (s's included), and that head: s and the head may
// differ only in those pages and past that low mark. The log must hold
// every one of those commits.
func (db *Database) ChangedSince(ctx context.Context, s *Snapshot) ([]uint32, uint32, Head, error) {
	v, err := db.current(ctx)
	if err != nil {
		return nil, 0, Head{}, err
	}
	defer db.unpin(v.rev)
	from, low := s.Head().TXID+1, s.Head().Pages
	if from > v.head.TXID {
		return nil, low, v.head, nil
	}
	set := map[uint32]bool{}
	expect := from
	err = db.logRows(ctx, v.rev, from, v.head.TXID, func(r logRow) error {
		if r.head.TXID != expect {
			return fmt.Errorf("the log of %s lacks txid %d: %w", db.Path(), expect, ErrNotFound)
		}
		expect++
		low = min(low, r.head.Pages)
		for _, p := range r.pgnos {
			set[p] = true
		}
		return nil
	})
	if err == nil && expect != v.head.TXID+1 {
		err = fmt.Errorf("the log of %s lacks txid %d: %w", db.Path(), expect, ErrNotFound)
	}
	if err != nil {
		return nil, 0, Head{}, err
	}
	return slices.Sorted(maps.Keys(set)), low, v.head, nil
}

// Restore writes, in tx, what makes the database read as s (a version of
// it): s's pages the commits after it changed, those past the fewest pages
// the database had since, and s's size. tx must start from the head
// ChangedSince reads (the caller holds the write lease); progress, when
// set, hears of each page written out of the total. It returns the pages
// written.
func (db *Database) Restore(ctx context.Context, tx *Tx, s *Snapshot, progress func(done, total int)) (int, error) {
	changed, low, head, err := db.ChangedSince(ctx, s)
	if err != nil {
		return 0, err
	}
	if b := tx.Base(); b.TXID != head.TXID {
		return 0, fmt.Errorf("restore %s: the transaction starts at txid %d, the head is %d: %w", db.Path(), b.TXID, head.TXID, ErrConflict)
	}
	want := s.Head()
	if want.PageSize == 0 || want.Pages == 0 {
		return 0, tx.Truncate(ctx, 0)
	}
	if head.PageSize != 0 && head.PageSize != want.PageSize {
		return 0, fmt.Errorf("restore %s: txid %d has %d-byte pages, the database now %d-byte pages", db.Path(), want.TXID, want.PageSize, head.PageSize)
	}
	var pgnos []uint32
	for _, p := range changed {
		if p <= low {
			pgnos = append(pgnos, p)
		}
	}
	for p := low + 1; p <= want.Pages; p++ {
		pgnos = append(pgnos, p)
	}
	ps := int64(want.PageSize)
	buf := make([]byte, ps)
	for i, p := range pgnos {
		off := int64(p-1) * ps
		n := min(ps, want.Size()-off)
		if _, err := s.ReadAt(ctx, buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return i, err
		}
		if p == lockPgno(want.PageSize) && !want.Plain {
			continue // never written; reads as zeros
		}
		if _, err := tx.WriteAt(ctx, buf[:n], off); err != nil {
			return i, err
		}
		if progress != nil {
			progress(i+1, len(pgnos))
		}
	}
	if tx.Size() != want.Size() {
		if err := tx.Truncate(ctx, want.Size()); err != nil {
			return len(pgnos), err
		}
	}
	return len(pgnos), nil
}
