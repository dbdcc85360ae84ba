package pager

import (
	"errors"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// TestAttrs: a database's attributes are stored at creation, changed by
// SetAttrs, followed by another Pager (another host), kept across a
// reopen, and refused on a handle whose database was removed.
func TestAttrs(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	if err := e.p.CreateAs(ctx, "a.db", Attrs{Mode: 0o600, UID: 1000, GID: 100}); err != nil {
		t.Fatal(err)
	}
	db, err := e.p.Open(ctx, "a.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if a := db.Attrs(); a.Mode != 0o600 || a.UID != 1000 || a.GID != 100 || a.Changed == 0 {
		t.Fatalf("attrs at creation %+v", a)
	}
	other := e.pager(Options{})
	odb, err := other.Open(ctx, "a.db")
	if err != nil {
		t.Fatal(err)
	}
	defer odb.Close()
	if err := db.SetAttrs(ctx, Attrs{Mode: 0o640, UID: 7, GID: 8}); err != nil {
		t.Fatal(err)
	}
	if a := db.Attrs(); a.Mode != 0o640 || a.UID != 7 {
		t.Fatalf("attrs after SetAttrs %+v", a)
	}
	for deadline := time.Now().Add(5 * time.Second); odb.Attrs().Mode != 0o640; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the other pager still has %+v", odb.Attrs())
		}
	}
	third := e.pager(Options{})
	tdb, err := third.Open(ctx, "a.db")
	if err != nil {
		t.Fatal(err)
	}
	if a := tdb.Attrs(); a.Mode != 0o640 || a.UID != 7 || a.GID != 8 {
		t.Fatalf("attrs at open %+v", a)
	}
	tdb.Close()
	if err := db.SetAttrs(ctx, Attrs{Mode: 0o10000}); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("mode with file-type bits: %v", err)
	}
	f := e.fence("a.db", 1)
	if err := e.p.Remove(ctx, "a.db", f); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Create(ctx, "a.db"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAttrs(ctx, Attrs{Mode: 0o600}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetAttrs on a removed incarnation: %v, want ErrNotFound", err)
	}
}

// TestAttrsDefault: a database stored without attributes (by an older
// kvfs) has DefaultAttrs; the root has DefaultRootAttrs until set.
func TestAttrsDefault(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	if err := e.p.Create(ctx, "old.db"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpDelete(e.keys.Attrs("old.db"))}); err != nil {
		t.Fatal(err)
	}
	db, err := e.p.Open(ctx, "old.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if a := db.Attrs(); a != DefaultAttrs {
		t.Fatalf("attrs %+v, want %+v", a, DefaultAttrs)
	}
	if a, err := e.p.RootAttrs(ctx); err != nil || a != DefaultRootAttrs {
		t.Fatalf("root attrs %+v %v", a, err)
	}
	if _, err := e.p.SetRootAttrs(ctx, Attrs{Mode: 0o1777, UID: 5}); err != nil {
		t.Fatal(err)
	}
	if a, err := e.pager(Options{}).RootAttrs(ctx); err != nil || a.Mode != 0o1777 || a.UID != 5 {
		t.Fatalf("root attrs after set %+v %v", a, err)
	}
}
