package pager

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// pageIndex is a host's in-memory copy of a database's page index rows: for
// every delta still holding live pages, which pages. For each page it keeps
// the txids of those deltas, ascending, so a snapshot at txid T finds the
// newest copy of a page with txid ≤ T without asking etcd.
//
// Compaction removes pages from rows once they are folded into a shard.
// Such a removal is recorded with the etcd revision it happened at rather
// than applied at once: a snapshot pinned at an older revision still reads
// the delta (and the older shard version that lacks the page). Removals are
// forgotten by prune once no snapshot is that old.
type pageIndex struct {
	mu    sync.RWMutex
	pages map[uint32][]version // pgno → versions, txid ascending
	rows  map[uint64][]uint32  // txid → live pgnos, as stored in etcd now
}

// version is one delta's copy of a page.
type version struct {
	txid    uint64
	removed int64 // revision at which compaction removed it; 0 = live
}

func newPageIndex() *pageIndex {
	return &pageIndex{pages: make(map[uint32][]version), rows: make(map[uint64][]uint32)}
}

// lookup returns the txid of the newest delta holding pgno with txid ≤ at,
// as the index was at revision rev.
func (x *pageIndex) lookup(pgno uint32, at uint64, rev int64) (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	vs := x.pages[pgno]
	for i := len(vs) - 1; i >= 0; i-- {
		if v := vs[i]; v.txid <= at && (v.removed == 0 || v.removed > rev) {
			return v.txid, true
		}
	}
	return 0, false
}

// add records that delta txid holds pgnos. Adding a row twice is a no-op.
// A txid whose row was removed can come back: an orphan of an unfinished
// commit, deleted at takeover, whose txid the next writer then commits. No
// view ever saw the orphan (its txid was above every head), so its pages'
// entries simply become live again.
func (x *pageIndex) add(txid uint64, pgnos []uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.rows[txid]; ok {
		return
	}
	x.rows[txid] = pgnos
	for _, p := range pgnos {
		vs := x.pages[p]
		i, found := slices.BinarySearchFunc(vs, txid, func(v version, t uint64) int {
			return cmpUint(v.txid, t)
		})
		if found {
			vs[i].removed = 0
		} else {
			x.pages[p] = slices.Insert(vs, i, version{txid: txid})
		}
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// setRow records that, from revision rev, row txid holds only keep (nil or
// empty: the row is gone). Pages dropped from the row are marked removed at
// rev.
func (x *pageIndex) setRow(txid uint64, keep []uint32, rev int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.rows[txid]
	if !ok {
		return
	}
	for _, p := range old {
		if _, kept := slices.BinarySearch(keep, p); kept {
			continue
		}
		vs := x.pages[p]
		for i := range vs {
			if vs[i].txid == txid && vs[i].removed == 0 {
				vs[i].removed = rev
			}
		}
	}
	if len(keep) == 0 {
		delete(x.rows, txid)
	} else {
		x.rows[txid] = keep
	}
}

// prune forgets removals at or before rev: no snapshot reads that far back.
func (x *pageIndex) prune(rev int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for p, vs := range x.pages {
		out := vs[:0]
		for _, v := range vs {
			if v.removed == 0 || v.removed > rev {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			delete(x.pages, p)
		} else {
			x.pages[p] = out
		}
	}
}

// liveRows returns the rows with txid ≤ at: txid → pgnos (shared; do not
// modify).
func (x *pageIndex) liveRows(at uint64) map[uint64][]uint32 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[uint64][]uint32)
	for t, ps := range x.rows {
		if t <= at {
			out[t] = ps
		}
	}
	return out
}

// len returns the number of rows and of indexed pages.
func (x *pageIndex) len() (rows, pages int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.rows), len(x.pages)
}

// encodePgnos encodes ascending page numbers as a uvarint count followed
// by uvarint gaps.
func encodePgnos(pgnos []uint32) []byte {
	b := make([]byte, 0, 2+2*len(pgnos))
	b = binary.AppendUvarint(b, uint64(len(pgnos)))
	prev := uint32(0)
	for _, p := range pgnos {
		b = binary.AppendUvarint(b, uint64(p-prev))
		prev = p
	}
	return b
}

// decodePgnos decodes encodePgnos's output; anything else is ErrCorrupt.
func decodePgnos(b []byte) ([]uint32, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("page index row: bad count: %w", ErrCorrupt)
	}
	b = b[k:]
	out := make([]uint32, 0, n)
	prev := uint64(0)
	for i := uint64(0); i < n; i++ {
		d, k := binary.Uvarint(b)
		if k <= 0 || d == 0 || prev+d > 1<<32-1 {
			return nil, fmt.Errorf("page index row: bad entry %d: %w", i, ErrCorrupt)
		}
		prev += d
		out = append(out, uint32(prev))
		b = b[k:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("page index row: %d trailing bytes: %w", len(b), ErrCorrupt)
	}
	return out, nil
}
