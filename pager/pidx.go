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
type pageIndex struct {
	mu    sync.RWMutex
	pages map[uint32][]uint64 // pgno → txids ascending
	rows  map[uint64][]uint32 // txid → pgnos, as stored in etcd
}

func newPageIndex() *pageIndex {
	return &pageIndex{pages: make(map[uint32][]uint64), rows: make(map[uint64][]uint32)}
}

// lookup returns the txid of the newest delta holding pgno with txid ≤ at.
func (x *pageIndex) lookup(pgno uint32, at uint64) (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	vs := x.pages[pgno]
	// Versions are few; scan from the newest.
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i] <= at {
			return vs[i], true
		}
	}
	return 0, false
}

// add records that delta txid holds pgnos. Adding a row twice is a no-op.
func (x *pageIndex) add(txid uint64, pgnos []uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.rows[txid]; ok {
		return
	}
	x.rows[txid] = pgnos
	for _, p := range pgnos {
		vs := x.pages[p]
		i, found := slices.BinarySearch(vs, txid)
		if !found {
			x.pages[p] = slices.Insert(vs, i, txid)
		}
	}
}

// remove forgets delta txid's row.
func (x *pageIndex) remove(txid uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.rows[txid] {
		vs := x.pages[p]
		if i, found := slices.BinarySearch(vs, txid); found {
			vs = slices.Delete(vs, i, i+1)
			if len(vs) == 0 {
				delete(x.pages, p)
			} else {
				x.pages[p] = vs
			}
		}
	}
	delete(x.rows, txid)
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
