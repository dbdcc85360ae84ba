package pager

import (
	"testing"
)

func TestPreloadOnOpen(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("p.db")
	writeDB(t, db, 4096, 10, 1) // txid 1: pages 1..10
	for v := byte(2); v <= 6; v++ {
		tx, _ := db.Begin(ctx)
		tx.WritePage(ctx, uint32(v)*10, pageOf(4096, uint32(v)*10, v)) // txids 2..6 grow the file
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Store: e.store}
	p := e.pager(Options{Store: cs, Preload: []PageRange{{First: 40, Last: 60}}})
	other, err := p.Open(ctx, "p.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	opened := cs.roundTrips()
	snap, _ := other.Snapshot(ctx)
	defer snap.Close()
	buf := make([]byte, 4096)
	for _, pg := range []uint32{1, 40, 50, 60} {
		if err := snap.ReadPage(ctx, pg, buf); err != nil {
			t.Fatal(err)
		}
	}
	if got := cs.roundTrips() - opened; got != 0 {
		t.Fatalf("reading preloaded pages took %d round trips, want 0", got)
	}
	// A page not preloaded costs a round trip.
	if err := snap.ReadPage(ctx, 20, buf); err != nil || cs.roundTrips() == opened {
		t.Fatalf("page 20: %v, reads %d", err, cs.roundTrips()-opened)
	}
}
