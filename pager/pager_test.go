package pager

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

func TestCreateOpenList(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	for _, n := range []string{"b.db", "a.db"} {
		if err := e.p.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.p.Create(ctx, "a.db"); !errors.Is(err, ErrExists) {
		t.Fatalf("create twice: %v, want ErrExists", err)
	}
	for _, bad := range []string{"a/b", "nul\x00", "", ".."} {
		if err := e.p.Create(ctx, bad); !errors.Is(err, etcdstore.ErrInvalidName) {
			t.Fatalf("create %q: %v, want ErrInvalidName", bad, err)
		}
	}
	names, err := e.p.List(ctx)
	if err != nil || len(names) != 2 || names[0] != "a.db" || names[1] != "b.db" {
		t.Fatalf("list: %v %v", names, err)
	}
	if _, err := e.p.Open(ctx, "missing.db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	db, err := e.p.Open(ctx, "a.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if h := db.Head(); h.TXID != 0 || h.Pages != 0 || h.PageSize != 0 {
		t.Fatalf("new head %+v", h)
	}
	// A new database reads as an empty file.
	snap, _ := db.Snapshot(ctx)
	defer snap.Close()
	if n, err := snap.ReadAt(ctx, make([]byte, 100), 0); n != 0 || err != io.EOF {
		t.Fatalf("read empty: %d %v", n, err)
	}
	// Without a fence the database is read-only.
	if _, err := db.Begin(ctx); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("begin without fence: %v", err)
	}
}

// TestFirstWriteSetsPageSize: the first write of an empty file that is not
// a SQLite header at offset 0 (text, a header elsewhere, a header with an
// invalid page size) makes a plain file of PlainPageSize pages; a header
// sets the database's page size, which a later header may not change.
func TestFirstWriteSetsPageSize(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	for _, c := range []struct {
		p   []byte
		off int64
	}{
		{[]byte("hello world, not a database at all"), 0},
		{sqlitePage1(4096, 0), 4096},
		{append([]byte("SQLite format 3\x00"), make([]byte, 100)...), 0}, // page size 0
	} {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.WriteAt(ctx, c.p, c.off); err != nil || tx.PageSize() != PlainPageSize || tx.Size() != c.off+int64(len(c.p)) {
			t.Fatalf("write %q at %d: %v, page size %d, size %d; want a plain file", c.p[:16], c.off, err, tx.PageSize(), tx.Size())
		}
		tx.Rollback()
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := db.Begin(ctx); !errors.Is(err, ErrTxOpen) {
		t.Fatalf("second begin: %v", err)
	}
	// A 64 KiB page size is stored as 1 in the header.
	if _, err := tx.WriteAt(ctx, sqlitePage1(65536, 0), 0); err != nil {
		t.Fatal(err)
	}
	if tx.PageSize() != 65536 {
		t.Fatalf("page size %d", tx.PageSize())
	}
	// A later header with another page size (VACUUM to a new page size)
	// keeps the stored one; the file is kept byte for byte, as plain.
	image := append(sqlitePage1(4096, 0), pageOf(4096, 2, 0)...)
	if _, err := tx.WriteAt(ctx, image, 0); err != nil {
		t.Fatalf("page size change: %v", err)
	}
	if err := tx.Truncate(ctx, int64(len(image))); err != nil {
		t.Fatal(err)
	}
	info, err := tx.Commit(ctx)
	if err != nil || !info.Head.Plain || info.Head.PageSize != 65536 || info.Head.Size() != 8192 {
		t.Fatalf("commit after a page size change: %+v %v, want a plain file of 8192 bytes in one 64 KiB page", info.Head, err)
	}
	got := make([]byte, 9000)
	if n, _ := readLatest(t, db, got, 0); n != 8192 || !bytes.Equal(got[:n], image) {
		t.Fatalf("after a page size change: %d bytes, not the image written", n)
	}
}

func TestCommitAndSnapshotIsolation(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	info := writeDB(t, db, 4096, 20, 1)
	if info.Staged || info.Txns != 1 || info.Head.TXID != 1 || info.Head.Pages != 20 {
		t.Fatalf("first commit %+v", info)
	}
	old, _ := db.Snapshot(ctx)
	defer old.Close()

	// Rewrite pages 5..7 and grow by one.
	tx, _ := db.Begin(ctx)
	for p := uint32(5); p <= 7; p++ {
		tx.WritePage(ctx, p, pageOf(4096, p, 2))
	}
	tx.WritePage(ctx, 21, pageOf(4096, 21, 2))
	// The transaction reads its own writes.
	buf := make([]byte, 4096)
	if err := tx.ReadPage(ctx, 6, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 6, 2)) {
		t.Fatalf("tx read own write: %v", err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); !errors.Is(err, ErrTxDone) {
		t.Fatalf("commit twice: %v", err)
	}
	cur, _ := db.Snapshot(ctx)
	defer cur.Close()
	for p := uint32(1); p <= 21; p++ {
		wantOld, wantNew := pageOf(4096, p, 1), pageOf(4096, p, 1)
		if p == 1 {
			wantOld, wantNew = sqlitePage1(4096, 1), sqlitePage1(4096, 1)
		}
		if p >= 5 && p <= 7 || p == 21 {
			wantNew = pageOf(4096, p, 2)
		}
		if p == 21 {
			wantOld = make([]byte, 4096) // past the old end
		}
		if err := old.ReadPage(ctx, p, buf); err != nil || !bytes.Equal(buf, wantOld) {
			t.Fatalf("old snapshot page %d: %v", p, err)
		}
		if err := cur.ReadPage(ctx, p, buf); err != nil || !bytes.Equal(buf, wantNew) {
			t.Fatalf("new snapshot page %d: %v", p, err)
		}
	}
	// File-style reads: across pages, short at the end.
	if old.Size() != 20*4096 || cur.Size() != 21*4096 {
		t.Fatalf("sizes %d %d", old.Size(), cur.Size())
	}
	p := make([]byte, 6000)
	n, err := cur.ReadAt(ctx, p, 21*4096-1000)
	if n != 1000 || err != io.EOF || !bytes.Equal(p[:1000], pageOf(4096, 21, 2)[3096:]) {
		t.Fatalf("read across end: %d %v", n, err)
	}
	n, err = cur.ReadAt(ctx, p, 4096*4+100)
	want := append(pageOf(4096, 5, 2)[100:], pageOf(4096, 6, 2)[:6000-3996]...)
	if n != 6000 || err != nil || !bytes.Equal(p, want) {
		t.Fatalf("read across pages: %d %v", n, err)
	}
}

func TestPartialPageWriteIsReadModifyWrite(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	writeDB(t, db, 1024, 4, 1)
	tx, _ := db.Begin(ctx)
	// Unaligned write across pages 2 and 3.
	patch := bytes.Repeat([]byte{0xAB}, 300)
	if n, err := tx.WriteAt(ctx, patch, 2048-100); n != 300 || err != nil {
		t.Fatalf("unaligned write: %d %v", n, err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	snap, _ := db.Snapshot(ctx)
	defer snap.Close()
	got := make([]byte, 4096)
	snap.ReadAt(ctx, got, 0)
	want := append(sqlitePage1(1024, 1), pageOf(1024, 2, 1)...)
	want = append(want, pageOf(1024, 3, 1)...)
	want = append(want, pageOf(1024, 4, 1)...)
	copy(want[2048-100:], patch)
	if !bytes.Equal(got, want) {
		t.Fatal("read-modify-write result differs")
	}
	// A size that is not a whole number of pages makes the file plain,
	// byte for byte; a truncate back to whole pages with SQLite's page 1
	// makes it a database again.
	tx, _ = db.Begin(ctx)
	tx.WriteAt(ctx, []byte("tail"), 4096)
	info, err := tx.Commit(ctx)
	if err != nil || !info.Head.Plain || info.Head.Size() != 4100 || info.Head.Pages != 5 {
		t.Fatalf("commit ragged size: %+v %v, want a plain file of 4100 bytes", info.Head, err)
	}
	got = make([]byte, 8192)
	if n, err := readLatest(t, db, got, 0); n != 4100 || err != io.EOF || !bytes.Equal(got[:4096], want) || string(got[4096:4100]) != "tail" {
		t.Fatalf("read the plain file: %d %v", n, err)
	}
	tx, _ = db.Begin(ctx)
	if err := tx.Truncate(ctx, 4096); err != nil {
		t.Fatal(err)
	}
	if info, err := tx.Commit(ctx); err != nil || info.Head.Plain || info.Head.Size() != 4096 {
		t.Fatalf("truncate to whole pages: %+v %v, want a database again", info.Head, err)
	}
}

// readLatest reads db's latest commit at off into p.
func readLatest(t *testing.T, db *Database, p []byte, off int64) (int, error) {
	t.Helper()
	snap, err := db.Snapshot(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	return snap.ReadAt(ctxT(t), p, off)
}

// TestPlainFiles: a file that is not a SQLite database is stored byte for
// byte: writes at any offset (a gap reads as zeros), a truncate to any size
// (growing again exposes zeros, not the old bytes), every size reported
// exactly, on another pager too; past PlainMaxBytes a write or truncate
// fails with ErrFileTooLarge and changes nothing; a SQLite image copied
// over it makes it a database, and text over a database a plain file.
func TestPlainFiles(t *testing.T) {
	e := newEnv(t, Options{PlainMaxBytes: 1 << 20})
	ctx := ctxT(t)
	db, _ := e.create("notes.txt")
	var model []byte // what the file must read
	step := func(what string, fn func(tx *Tx) error) {
		t.Helper()
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			t.Fatalf("%s: %v", what, err)
		}
		info, err := tx.Commit(ctx)
		if err != nil {
			t.Fatalf("%s: commit: %v", what, err)
		}
		if info.Head.Size() != int64(len(model)) {
			t.Fatalf("%s: head size %d, want %d", what, info.Head.Size(), len(model))
		}
		// Read back here and on another host.
		other, err := e.pager(Options{}).Open(ctx, "notes.txt")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for _, d := range []*Database{db, other} {
			got := make([]byte, len(model)+5000)
			n, err := readLatest(t, d, got, 0)
			if n != len(model) || (err != nil && err != io.EOF) || !bytes.Equal(got[:n], model) {
				t.Fatalf("%s: read %d bytes (%v), want %d as written", what, n, err, len(model))
			}
		}
	}
	write := func(p []byte, off int) func(*Tx) error {
		return func(tx *Tx) error {
			if end := off + len(p); end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], p)
			_, err := tx.WriteAt(ctx, p, int64(off))
			return err
		}
	}
	truncate := func(size int) func(*Tx) error {
		return func(tx *Tx) error {
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
			return tx.Truncate(ctx, int64(size))
		}
	}
	step("write hello", write([]byte("hello, plain world\n"), 0))
	if h := db.Head(); !h.Plain || h.PageSize != PlainPageSize || h.Pages != 1 {
		t.Fatalf("head of a plain file: %+v", h)
	}
	step("append past a gap", write(bytes.Repeat([]byte("x"), 3000), 10_000))
	step("overwrite across pages", write(bytes.Repeat([]byte("y"), 5000), 2000))
	step("truncate into a page", truncate(5001))
	step("grow by truncate", truncate(9000)) // bytes 5001.. are zeros, not the old y's
	step("truncate to whole pages", truncate(8192))
	step("grow by a write", write([]byte("z"), 20_000))

	// The size limit: nothing changes.
	tx, _ := db.Begin(ctx)
	if _, err := tx.WriteAt(ctx, []byte("big"), 1<<20); !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("write past the limit: %v, want ErrFileTooLarge", err)
	}
	if err := tx.Truncate(ctx, 1<<20+1); !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("truncate past the limit: %v, want ErrFileTooLarge", err)
	}
	tx.Rollback()

	// cp of a database over the plain file, and text over the database.
	image := append(sqlitePage1(1024, 7), pageOf(1024, 2, 7)...)
	step("copy a database in", func(tx *Tx) error {
		model = nil
		if err := truncate(0)(tx); err != nil {
			return err
		}
		return write(image, 0)(tx)
	})
	if h := db.Head(); h.Plain || h.PageSize != 1024 || h.Pages != 2 {
		t.Fatalf("head after a database was copied in: %+v", h)
	}
	step("text over the database", func(tx *Tx) error {
		if err := truncate(0)(tx); err != nil {
			return err
		}
		return write([]byte("now text again"), 0)(tx)
	})
	if h := db.Head(); !h.Plain || h.PageSize != PlainPageSize {
		t.Fatalf("head after text over a database: %+v", h)
	}
}

func TestShrinkThenGrowReadsZeros(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	writeDB(t, db, 4096, 50, 1)
	tx, _ := db.Begin(ctx)
	if err := tx.Truncate(ctx, 10*4096); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h := db.Head(); h.Pages != 10 || h.TXID != 2 {
		t.Fatalf("after shrink %+v", h)
	}
	// Grow again without writing pages 11..30: they must read as zeros, not
	// as the copies from before the shrink.
	tx, _ = db.Begin(ctx)
	tx.Truncate(ctx, 30*4096)
	tx.WritePage(ctx, 30, pageOf(4096, 30, 3))
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	snap, _ := db.Snapshot(ctx)
	defer snap.Close()
	buf := make([]byte, 4096)
	for p := uint32(11); p < 30; p++ {
		if err := snap.ReadPage(ctx, p, buf); err != nil || !bytes.Equal(buf, make([]byte, 4096)) {
			t.Fatalf("page %d after shrink and grow: %v, not zeros", p, err)
		}
	}
	// Another host sees the same.
	other, err := e.pager(Options{}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s2, _ := other.Snapshot(ctx)
	defer s2.Close()
	if err := s2.ReadPage(ctx, 20, buf); err != nil || !bytes.Equal(buf, make([]byte, 4096)) {
		t.Fatalf("other host page 20: %v", err)
	}
}

func TestStagedCommit(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	// 1,200 incompressible pages: ~5 MiB, several requests.
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	pages := make([][]byte, 1201)
	tx, _ := db.Begin(ctx)
	for p := 1; p <= 1200; p++ {
		pages[p] = make([]byte, 4096)
		rng.Read(pages[p])
		if p == 1 {
			pages[p] = sqlitePage1(4096, 0)
		}
		if err := tx.WritePage(ctx, uint32(p), pages[p]); err != nil {
			t.Fatal(err)
		}
	}
	info, err := tx.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Staged || info.Txns < 4 {
		t.Fatalf("5 MiB commit: %+v, want staged", info)
	}
	t.Logf("staged commit: %d bytes in %d txns", info.Bytes, info.Txns)
	other, err := e.pager(Options{}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, d := range []*Database{db, other} {
		snap, _ := d.Snapshot(ctx)
		buf := make([]byte, 4096)
		for p := 1; p <= 1200; p++ {
			if err := snap.ReadPage(ctx, uint32(p), buf); err != nil || !bytes.Equal(buf, pages[p]) {
				t.Fatalf("page %d: %v", p, err)
			}
		}
		snap.Close()
	}
}

func TestStagedCommitFencedMidwayLeavesOnlyOrphans(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, f := e.create("x.db")
	writeDB(t, db, 4096, 3, 1)
	before := db.Head()
	reader, _ := db.Snapshot(ctx)
	defer reader.Close()

	rng := rand.New(rand.NewSource(1))
	tx, _ := db.Begin(ctx)
	for p := uint32(1); p <= 1000; p++ {
		page := make([]byte, 4096)
		rng.Read(page)
		if p == 1 {
			page = sqlitePage1(4096, 9)
		}
		tx.WritePage(ctx, p, page)
	}
	// Another host takes the lease after the second staged batch.
	testHookStaged = func(i int) {
		if i == 2 {
			f.steal()
		}
	}
	defer func() { testHookStaged = nil }()
	_, err := tx.Commit(ctx)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("commit after lease loss: %v, want ErrFenced", err)
	}
	testHookStaged = nil
	if h := db.Head(); h != before {
		t.Fatalf("head moved: %+v, was %+v", h, before)
	}
	// Orphans of txid 2 exist in etcd but nobody sees them.
	if n, _ := e.store.Count(ctx, etcdstore.ChunkPrefix(e.keys.Delta("x.db", 2)), 0); n == 0 {
		t.Fatal("expected orphan chunks of the unfinished commit")
	}
	other, err := e.pager(Options{}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if h := other.Head(); h != before {
		t.Fatalf("other host head %+v", h)
	}
	// The new writer's takeover deletes the orphans; usage is unchanged.
	f2 := &testFence{e: e, key: e.keys.Fence("x.db"), gen: 2}
	if err := other.Acquire(ctx, f2); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{e.keys.Delta("x.db", 2), e.keys.PIDX("x.db", 2)} {
		if n, _ := e.store.Count(ctx, etcdstore.ChunkPrefix(prefix), 0); n != 0 {
			t.Fatalf("%d orphan keys under %s after takeover", n, prefix)
		}
	}
	if got := usageInEtcd(t, e, "x.db"); got != other.Stats().Usage {
		t.Fatalf("usage %d, recomputed %d", other.Stats().Usage, got)
	}
	buf := make([]byte, 4096)
	if err := reader.ReadPage(ctx, 2, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 2, 1)) {
		t.Fatalf("old reader: %v", err)
	}
	// The old writer is fenced for good.
	tx, _ = db.Begin(ctx)
	tx.WritePage(ctx, 2, pageOf(4096, 2, 7))
	if _, err := tx.Commit(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale writer commit: %v, want ErrFenced", err)
	}
	// The new writer commits txid 2.
	writeDB(t, other, 4096, 3, 5)
	if h := other.Head(); h.TXID != 2 || h.Generation != 2 {
		t.Fatalf("new writer head %+v", h)
	}
}

// usageInEtcd recomputes a database's usage from what etcd stores: the
// payload bytes of every delta, page index row and shard version.
func usageInEtcd(t *testing.T, e *env, name string) int64 {
	var total int64
	for _, prefix := range []string{e.keys.Deltas(name), e.keys.PIDXs(name), e.keys.Shards(name)} {
		_, err := e.store.Range(ctxT(t), prefix, etcdstore.RangeOptions{}, func(kv *etcdstore.KeyValue) error {
			_, payload, err := etcdstore.DecodeChunk(kv.Value)
			total += int64(len(payload))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return total
}

func TestFencedCommitLandsNothing(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, f := e.create("x.db")
	writeDB(t, db, 4096, 5, 1)
	before := db.Head()
	tx, _ := db.Begin(ctx)
	tx.WritePage(ctx, 3, pageOf(4096, 3, 2))
	f.steal()
	if _, err := tx.Commit(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("commit: %v, want ErrFenced", err)
	}
	if n, _ := e.store.Count(ctx, etcdstore.ChunkPrefix(e.keys.Delta("x.db", 2)), 0); n != 0 {
		t.Fatal("fenced fast-path commit left a delta")
	}
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	buf := make([]byte, 4096)
	if err := snap.ReadPage(ctx, 3, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 3, 1)) || snap.Head() != before {
		t.Fatalf("after fenced commit: %v %+v", err, snap.Head())
	}
}

func TestQuota(t *testing.T) {
	ctx := ctxT(t)
	e := newEnv(t, Options{Quota: Quota{MaxPages: 20}})
	db, _ := e.create("pages.db")
	writeDB(t, db, 4096, 20, 1)
	tx, _ := db.Begin(ctx)
	_, err := tx.WriteAt(ctx, pageOf(4096, 21, 1), 20*4096)
	var qe *QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuotaExceeded) || qe.What != "pages" || qe.Max != 20 {
		t.Fatalf("write past page quota: %v", err)
	}
	if err := tx.Truncate(ctx, 40*4096); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("truncate past page quota: %v", err)
	}
	tx.Rollback()

	// Byte quota: random pages do not compress.
	e2 := newEnv(t, Options{Quota: Quota{MaxBytes: 64 << 10}})
	db2, _ := e2.create("bytes.db")
	writeDB(t, db2, 4096, 4, 1)
	rng := rand.New(rand.NewSource(2))
	tx, _ = db2.Begin(ctx)
	var full error
	p := uint32(2)
	for ; p < 40 && full == nil; p++ {
		page := make([]byte, 4096)
		rng.Read(page)
		_, full = tx.WriteAt(ctx, page, int64(p-1)*4096)
	}
	if !errors.As(full, &qe) || qe.What != "bytes" || qe.Used <= qe.Max {
		t.Fatalf("byte quota: %v after %d pages", full, p)
	}
	// SQLite's rollback after SQLITE_FULL writes the old pages back: those
	// writes are accepted even though usage is at the limit.
	for q := uint32(2); q <= 4; q++ {
		if _, err := tx.WriteAt(ctx, pageOf(4096, q, 1), int64(q-1)*4096); err != nil {
			t.Fatalf("restoring page %d: %v", q, err)
		}
	}
	tx.Truncate(ctx, 4*4096)
	info, err := tx.Commit(ctx)
	if err != nil {
		t.Fatalf("commit after rollback: %v", err)
	}
	if info.Head.UsedBytes > 64<<10 || info.Head.Pages != 4 {
		t.Fatalf("rolled-back commit: %+v", info.Head)
	}
	snap, _ := db2.Snapshot(ctx)
	defer snap.Close()
	buf := make([]byte, 4096)
	for q := uint32(2); q <= 4; q++ {
		if err := snap.ReadPage(ctx, q, buf); err != nil || !bytes.Equal(buf, pageOf(4096, q, 1)) {
			t.Fatalf("page %d after rollback: %v", q, err)
		}
	}
	if got := usageInEtcd(t, e2, "bytes.db"); got != db2.Stats().Usage {
		t.Fatalf("usage %d, recomputed %d", db2.Stats().Usage, got)
	}
}

func TestSpoolLargeTransaction(t *testing.T) {
	e := newEnv(t, Options{DirtyMemBytes: 64 << 10})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	tx, _ := db.Begin(ctx)
	tx.WritePage(ctx, 1, sqlitePage1(4096, 0))
	for p := uint32(2); p <= 500; p++ {
		tx.WritePage(ctx, p, pageOf(4096, p, 1))
	}
	if !tx.dirty.spilled() {
		t.Fatal("500 pages with a 64 KiB memory limit did not spill")
	}
	// Overwrite spooled pages and read them back inside the transaction.
	tx.WritePage(ctx, 400, pageOf(4096, 400, 2))
	buf := make([]byte, 4096)
	if err := tx.ReadPage(ctx, 400, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 400, 2)) {
		t.Fatalf("spooled read: %v", err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	snap, _ := db.Snapshot(ctx)
	defer snap.Close()
	for p := uint32(2); p <= 500; p++ {
		want := pageOf(4096, p, 1)
		if p == 400 {
			want = pageOf(4096, p, 2)
		}
		if err := snap.ReadPage(ctx, p, buf); err != nil || !bytes.Equal(buf, want) {
			t.Fatalf("page %d: %v", p, err)
		}
	}
}

func TestFollowerSeesCommits(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	other, err := e.pager(Options{}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for v := byte(1); v <= 5; v++ {
		writeDB(t, db, 4096, 10, v)
		want := db.Head()
		deadline := time.Now().Add(10 * time.Second)
		for other.Head() != want {
			if time.Now().After(deadline) {
				t.Fatalf("follower head %+v, want %+v", other.Head(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		snap, _ := other.Snapshot(ctx)
		buf := make([]byte, 4096)
		if err := snap.ReadPage(ctx, 7, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 7, v)) {
			t.Fatalf("follower page 7 v%d: %v", v, err)
		}
		snap.Close()
	}
}

func TestRemoveAndRecreate(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	db, f := e.create("x.db")
	writeDB(t, db, 4096, 5, 1)
	snap, _ := db.Snapshot(ctx)
	buf := make([]byte, 4096)
	snap.ReadPage(ctx, 2, buf) // cache it
	snap.Close()
	if err := e.p.Remove(ctx, "x.db", f); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Open(ctx, "x.db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open removed: %v", err)
	}
	if names, _ := e.p.List(ctx); len(names) != 0 {
		t.Fatalf("list after remove: %v", names)
	}
	if n, _ := e.store.Count(ctx, e.keys.DB("x.db"), 0); n != 0 {
		t.Fatalf("%d keys left", n)
	}
	// Same name again: nothing of the old database shows through caches.
	db2, _ := e.create("x.db")
	writeDB(t, db2, 4096, 5, 2)
	snap, _ = db2.Snapshot(ctx)
	defer snap.Close()
	if err := snap.ReadPage(ctx, 2, buf); err != nil || !bytes.Equal(buf, pageOf(4096, 2, 2)) {
		t.Fatalf("recreated page 2: %v", err)
	}
}
