package pager

import (
	"bytes"
	"errors"
	"testing"
)

// TestOverlay: an overlay reads its base commit, whatever commits land
// after it, with the pages written over it (in memory and spilled), and
// its size as written and truncated; closed, it refuses reads.
func TestOverlay(t *testing.T) {
	e := newEnv(t, Options{DirtyMemBytes: 2 * 1024}) // two pages in memory, the rest spilled
	ctx := ctxT(t)
	const ps = 1024
	db, _ := e.create("o.db")
	writeDB(t, db, ps, 4, 1)
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := db.NewOverlay(snap)
	writeDB(t, db, ps, 8, 2) // a later commit the overlay must not show
	if o.Size() != 4*ps || o.Base().TXID != snap.Head().TXID {
		t.Fatalf("size %d base %d", o.Size(), o.Base().TXID)
	}
	page := make([]byte, ps)
	read := func(pgno uint32) []byte {
		t.Helper()
		if _, err := o.ReadAt(ctx, page, int64(pgno-1)*ps); err != nil {
			t.Fatalf("read page %d: %v", pgno, err)
		}
		return page
	}
	if !bytes.Equal(read(3), pageOf(ps, 3, 1)) {
		t.Fatal("page 3 is not the base's")
	}
	// A checkpoint writes pages 2..6 of version 2 (growing the file) and
	// half of page 3 again.
	for p := uint32(2); p <= 6; p++ {
		if _, err := o.WriteAt(ctx, pageOf(ps, p, 2), int64(p-1)*ps); err != nil {
			t.Fatal(err)
		}
	}
	half := bytes.Repeat([]byte{9}, ps/2)
	if _, err := o.WriteAt(ctx, half, 2*ps+ps/2); err != nil {
		t.Fatal(err)
	}
	if o.Size() != 6*ps || o.Pages() != 5 {
		t.Fatalf("after writes: size %d, %d pages", o.Size(), o.Pages())
	}
	if !bytes.Equal(read(1), sqlitePage1(ps, 1)) || !bytes.Equal(read(6), pageOf(ps, 6, 2)) {
		t.Fatal("pages 1 and 6")
	}
	want3 := append(pageOf(ps, 3, 2)[:ps/2:ps/2], half...)
	if !bytes.Equal(read(3), want3) {
		t.Fatal("page 3 after the partial write")
	}
	if err := o.Truncate(3 * ps); err != nil {
		t.Fatal(err)
	}
	if _, err := o.ReadAt(ctx, page, 3*ps); err == nil {
		t.Fatal("read past the end after truncate")
	}
	if err := o.Truncate(5 * ps); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(5), make([]byte, ps)) {
		t.Fatal("page 5 after shrink and growth is not zeros")
	}
	if err := o.Truncate(100); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("truncate to part of a page: %v", err)
	}
	o.Close()
	o.Close()
	if _, err := o.ReadAt(ctx, page, 0); !errors.Is(err, ErrTxDone) {
		t.Fatalf("read after close: %v", err)
	}
}
