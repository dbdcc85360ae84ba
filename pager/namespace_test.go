package pager

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
)

// names returns the names of directory dir.
func (e *env) names(dir string) []string {
	e.t.Helper()
	ents, err := e.p.ReadDir(ctxT(e.t), dir)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		out = append(out, d.Name)
	}
	return out
}

// writeByID opens database id, writes n pages of version v under a fresh
// fence and closes it.
func (e *env) writeByID(id string, n int, v byte) {
	e.t.Helper()
	ctx := ctxT(e.t)
	db, err := e.p.Open(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Acquire(ctx, e.fence(id, uint64(v))); err != nil {
		e.t.Fatal(err)
	}
	writeDB(e.t, db, 4096, n, v)
	db.Release()
}

// TestNamespace: directories hold databases and directories; names are
// unique per directory; rmdir needs an empty directory; each operation
// refuses the wrong kind of entry.
func TestNamespace(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	a, err := e.p.Mkdir(ctx, RootDir, "a", Attrs{Mode: 0o750, UID: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.p.Mkdir(ctx, a.ID, "b", Attrs{Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	x, err := e.p.CreateIn(ctx, b.ID, "x.db", Attrs{Mode: 0o600, UID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if x.Dir || !a.Dir || x.ID == a.ID || x.ID == b.ID {
		t.Fatalf("entries %+v %+v %+v", a, b, x)
	}
	e.writeByID(x.ID, 3, 1)
	if _, err := e.p.CreateIn(ctx, RootDir, "x.db", DefaultAttrs); err != nil {
		t.Fatalf("the same name in another directory: %v", err)
	}
	if _, err := e.p.CreateIn(ctx, b.ID, "x.db", DefaultAttrs); !errors.Is(err, ErrExists) {
		t.Fatalf("a taken name: %v, want ErrExists", err)
	}
	if _, err := e.p.Mkdir(ctx, b.ID, "x.db", DefaultAttrs); !errors.Is(err, ErrExists) {
		t.Fatalf("mkdir over a database: %v, want ErrExists", err)
	}
	if _, err := e.p.CreateIn(ctx, b.ID, "bad/name", DefaultAttrs); !errors.Is(err, etcdstore.ErrInvalidName) {
		t.Fatalf("a name with '/': %v", err)
	}
	if got, _, err := e.p.Lookup(ctx, b.ID, "x.db"); err != nil || got != x {
		t.Fatalf("lookup x.db: %+v %v", got, err)
	}
	if got := e.names(RootDir); !slices.Equal(got, []string{"a", "x.db"}) {
		t.Fatalf("root lists %q", got)
	}
	if attrs, err := e.p.DirAttrs(ctx, a.ID); err != nil || attrs.Mode != 0o750 || attrs.UID != 3 {
		t.Fatalf("a's attributes %+v %v", attrs, err)
	}
	db, err := e.p.Open(ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if attrs := db.Attrs(); attrs.Mode != 0o600 || attrs.UID != 7 {
		t.Fatalf("x.db's attributes %+v", attrs)
	}
	db.Close()

	if err := e.p.Rmdir(ctx, a.ID, "b"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir of a directory with a database: %v, want ErrNotEmpty", err)
	}
	if err := e.p.Rmdir(ctx, b.ID, "x.db"); !errors.Is(err, ErrNotDir) {
		t.Fatalf("rmdir of a database: %v, want ErrNotDir", err)
	}
	if err := e.p.Unlink(ctx, a.ID, "b", b.ID, e.fence(b.ID, 1)); !errors.Is(err, ErrIsDir) {
		t.Fatalf("unlink of a directory: %v, want ErrIsDir", err)
	}
	if err := e.p.Unlink(ctx, b.ID, "x.db", x.ID, e.fence(x.ID, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Open(ctx, x.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open of an unlinked database: %v", err)
	}
	if err := e.p.Rmdir(ctx, a.ID, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.CreateIn(ctx, b.ID, "late.db", DefaultAttrs); !errors.Is(err, ErrNotFound) {
		t.Fatalf("create in a removed directory: %v, want ErrNotFound", err)
	}
	if err := e.p.Rmdir(ctx, a.ID, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second rmdir: %v, want ErrNotFound", err)
	}
}

// TestRename: a rename moves a name, in or across directories, and the
// data stays where it is; over a database it deletes that database's data
// in the same transaction (fenced by its lease); the kinds must match; a
// directory cannot move into itself.
func TestRename(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	d1, _ := e.p.Mkdir(ctx, RootDir, "d1", DefaultRootAttrs)
	d2, _ := e.p.Mkdir(ctx, d1.ID, "d2", DefaultRootAttrs)
	src, _ := e.p.CreateIn(ctx, RootDir, "new.db", DefaultAttrs)
	dst, _ := e.p.CreateIn(ctx, d2.ID, "app.db", DefaultAttrs)
	e.writeByID(src.ID, 2, 5)
	e.writeByID(dst.ID, 4, 6)
	old, err := e.p.Open(ctx, dst.ID) // a reader of the database to be replaced
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// Over an existing database: its lease fences the rename.
	stale := e.fence(dst.ID, 6)
	stale.steal()
	if err := e.p.Rename(ctx, RootDir, "new.db", d2.ID, "app.db", stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("rename over a database whose lease is elsewhere: %v, want ErrFenced", err)
	}
	if got := e.names(RootDir); !slices.Contains(got, "new.db") {
		t.Fatalf("a refused rename moved the name: root %q", got)
	}
	if err := e.p.Rename(ctx, RootDir, "new.db", d2.ID, "app.db", e.fence(dst.ID, 8)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := e.p.Lookup(ctx, d2.ID, "app.db"); err != nil || got != src {
		t.Fatalf("app.db after rename: %+v %v, want %+v", got, err, src)
	}
	if got := e.names(RootDir); slices.Contains(got, "new.db") {
		t.Fatalf("root still lists new.db: %q", got)
	}
	if _, err := e.p.Open(ctx, dst.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the replaced database's data: %v, want ErrNotFound", err)
	}
	if !old.isRemoved() {
		t.Fatal("the replaced database's open handle was not told")
	}
	db, err := e.p.Open(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := db.Snapshot(ctx)
	buf := make([]byte, 4096)
	if err := snap.ReadPage(ctx, 2, buf); err != nil || buf[100] != pageOf(4096, 2, 5)[100] {
		t.Fatalf("renamed database's page 2: %v", err)
	}
	snap.Close()
	db.Close()

	// Kinds, emptiness, cycles.
	if err := e.p.Rename(ctx, RootDir, "d1", d2.ID, "app.db", nil); !errors.Is(err, ErrNotDir) {
		t.Fatalf("directory over a database: %v, want ErrNotDir", err)
	}
	if _, err := e.p.Mkdir(ctx, RootDir, "empty", DefaultRootAttrs); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Rename(ctx, d2.ID, "app.db", RootDir, "empty", nil); !errors.Is(err, ErrIsDir) {
		t.Fatalf("database over a directory: %v, want ErrIsDir", err)
	}
	if err := e.p.Rename(ctx, RootDir, "empty", RootDir, "d1", nil); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("directory over a non-empty one: %v, want ErrNotEmpty", err)
	}
	if err := e.p.Rename(ctx, RootDir, "d1", d2.ID, "loop", nil); !errors.Is(err, ErrMoveIntoSelf) {
		t.Fatalf("directory into its subdirectory: %v, want ErrMoveIntoSelf", err)
	}
	// A directory moves with its contents, and replaces an empty one.
	if err := e.p.Rename(ctx, d1.ID, "d2", RootDir, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if got := e.names(RootDir); !slices.Equal(got, []string{"d1", "empty"}) {
		t.Fatalf("root lists %q", got)
	}
	if got, _, err := e.p.Lookup(ctx, RootDir, "empty"); err != nil || got != d2 {
		t.Fatalf("empty is now %+v %v, want d2 %+v", got, err, d2)
	}
	if got := e.names(d2.ID); !slices.Equal(got, []string{"app.db"}) {
		t.Fatalf("the moved directory lists %q", got)
	}
	if err := e.p.Rename(ctx, RootDir, "d1", RootDir, "missing/..", nil); !errors.Is(err, etcdstore.ErrInvalidName) {
		t.Fatalf("a bad new name: %v", err)
	}
}

// TestRenameRace: renames of one name to many new names at once: exactly
// one lands, the others find the name gone, and the database has exactly
// one name at the end.
func TestRenameRace(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	src, _ := e.p.CreateIn(ctx, RootDir, "src.db", DefaultAttrs)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.pager(Options{}).Rename(ctx, RootDir, "src.db", RootDir, fmt.Sprintf("dst%d.db", i), nil)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict):
			t.Fatalf("a losing rename: %v", err)
		}
	}
	ents, err := e.p.ReadDir(ctx, RootDir)
	if err != nil {
		t.Fatal(err)
	}
	if ok != 1 || len(ents) != 1 || ents[0].ID != src.ID {
		t.Fatalf("%d renames landed; root holds %+v", ok, ents)
	}
}

// TestUpgrade: databases of the flat catalog move into the root directory
// under their names, with their data where it was; a second run does
// nothing.
func TestUpgrade(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	names := []string{"a.db", "b \xff.db", "c.db"}
	for i, n := range names {
		if err := e.p.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		e.writeByID(n, i+1, byte(i+1))
	}
	moved, err := e.p.Upgrade(ctx)
	if err != nil || moved != len(names) {
		t.Fatalf("upgrade moved %d: %v", moved, err)
	}
	ents, err := e.p.ReadDir(ctx, RootDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ents {
		if d.Name != names[i] || d.ID != names[i] || d.Dir {
			t.Fatalf("root entry %d: %+v", i, d)
		}
		db, err := e.p.Open(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if h := db.Head(); h.Pages != uint32(i+1) {
			t.Fatalf("%s: %d pages after upgrade", d.Name, h.Pages)
		}
		db.Close()
	}
	if legacy, err := e.p.List(ctx); err != nil || len(legacy) != 0 {
		t.Fatalf("catalog after upgrade: %q %v", legacy, err)
	}
	if moved, err := e.p.Upgrade(ctx); err != nil || moved != 0 {
		t.Fatalf("second upgrade moved %d: %v", moved, err)
	}
}
