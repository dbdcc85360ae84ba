package pager

import "testing"

// TestPageIndexOrphanTxidComesBack: an orphan row (staged by a writer that
// died) is deleted at takeover and its txid committed by the next writer;
// a follower that saw the orphan must see the new row's pages.
func TestPageIndexOrphanTxidComesBack(t *testing.T) {
	x := newPageIndex()
	x.add(3, []uint32{1, 2})
	x.add(4, []uint32{2, 5}) // orphan of a staged commit, txid above the head (3)
	x.setRow(4, nil, 100)    // takeover deletes it
	x.add(4, []uint32{2, 7}) // the new writer commits txid 4
	if got, ok := x.lookup(2, 4, 200); !ok || got != 4 {
		t.Fatalf("page 2 at txid 4: %d %v, want the new row", got, ok)
	}
	if got, ok := x.lookup(7, 4, 200); !ok || got != 4 {
		t.Fatalf("page 7 at txid 4: %d %v", got, ok)
	}
	if _, ok := x.lookup(5, 4, 200); ok {
		t.Fatal("page 5 of the orphan is visible")
	}
	// Compaction removals stay revision-scoped.
	x.setRow(3, []uint32{1}, 300)
	if got, ok := x.lookup(2, 3, 250); !ok || got != 3 {
		t.Fatalf("page 2 at txid 3, rev 250 (before the removal): %d %v", got, ok)
	}
	if _, ok := x.lookup(2, 3, 300); ok {
		t.Fatal("page 2 at txid 3 still listed at the removal's revision")
	}
	x.prune(300)
	if _, ok := x.lookup(2, 3, 250); ok {
		t.Fatal("prune kept a removal no view needs")
	}
}
