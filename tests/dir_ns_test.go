package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

// TestDirectories: mkdir -p, databases in directories (the stock CLI, with
// their journals beside them), ls -R and find list the tree, rmdir needs an
// empty directory, and all of it is the same after a remount and on
// another host.
func TestDirectories(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	if out, err := exec.Command("mkdir", "-p", a.Path("tenant1/sub"), a.Path("tenant2")).CombinedOutput(); err != nil {
		t.Fatalf("mkdir -p: %v %s", err, out)
	}
	mustSQL(t, a.Path("tenant1/sub/app.db"), "create table t(x); insert into t values (1);")
	mustSQL(t, a.Path("tenant2/app.db"), "pragma journal_mode=wal; create table t(x); insert into t values (2);")
	mustSQL(t, a.Path("top.db"), "create table t(x); insert into t values (3);")
	want := []string{".", "./tenant1", "./tenant1/sub", "./tenant1/sub/app.db", "./tenant2", "./tenant2/app.db", "./top.db"}
	find := func(dir string) []string {
		cmd := exec.Command("find", ".")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("find: %v", err)
		}
		var got []string
		for _, f := range strings.Fields(string(out)) {
			if !strings.HasSuffix(f, "-shm") { // SQLite leaves a WAL database's -shm on the host
				got = append(got, f)
			}
		}
		slices.Sort(got)
		return got
	}
	if got := find(a.Dir); !slices.Equal(got, want) {
		t.Fatalf("find lists %q, want %q", got, want)
	}
	if out, err := exec.Command("ls", "-R", a.Dir).CombinedOutput(); err != nil || !strings.Contains(string(out), "sub:\napp.db") {
		t.Fatalf("ls -R: %v %s", err, out)
	}
	// Quotas and metrics know an open database by its path.
	paths := map[string]bool{}
	for _, db := range a.Pager.Databases() {
		paths[db.Path()] = true
	}
	if !paths["tenant1/sub/app.db"] || !paths["top.db"] {
		t.Fatalf("open databases' paths: %v", paths)
	}
	if err := syscall.Rmdir(a.Path("tenant1")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a directory with a directory: %v, want ENOTEMPTY", err)
	}
	if err := syscall.Rmdir(a.Path("tenant1/sub")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a directory with a database: %v, want ENOTEMPTY", err)
	}
	if err := os.Mkdir(a.Path("tenant1"), 0o755); !errors.Is(err, os.ErrExist) {
		t.Fatalf("mkdir of an existing directory: %v", err)
	}
	if err := os.Mkdir(a.Path("top.db/x"), 0o755); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("mkdir under a database: %v, want ENOTDIR", err)
	}
	if err := syscall.Rmdir(a.Dir); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("rmdir of the mount's root: %v, want EBUSY", err)
	}
	if err := os.Mkdir(a.Path("empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if mode, _, _, _ := statOf(t, a.Path("empty")); mode != 0o750 {
		t.Fatalf("new directory mode %#o", mode)
	}
	if err := syscall.Rmdir(a.Path("empty")); err != nil {
		t.Fatal(err)
	}
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	if got := find(b.Dir); !slices.Equal(got, want) {
		t.Fatalf("the other host finds %q, want %q", got, want)
	}
	for p, v := range map[string]string{"tenant1/sub/app.db": "1", "tenant2/app.db": "2", "top.db": "3"} {
		if out := mustSQL(t, b.Path(p), "select x from t;"); strings.TrimSpace(out) != v {
			t.Fatalf("%s on the other host: %q", p, out)
		}
	}
	if err := os.Remove(a.Path("tenant1/sub/app.db")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(a.Path("tenant1/sub")); err != nil {
		t.Fatalf("rmdir once empty: %v", err)
	}
}

// TestRenameDatabase: the "build new.db, then rename it over app.db"
// pattern; renames within and across directories; every host sees the new
// name; a reader of the replaced database on another host keeps reading
// what it read; a journal is renamed only within its directory, other
// side files not at all (EXDEV), and no database takes a side file's name.
func TestRenameDatabase(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("app.db"), "create table t(v); insert into t values ('old');")
	mustSQL(t, a.Path("new.db"), "create table t(v); insert into t values ('new');")
	eventuallySQL(t, "B sees app.db", b.Path("app.db"), "select v from t;", "old\n")
	reader := openConn(t, b.Path("app.db"), "_busy_timeout=5000")
	tx, err := reader.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := tx.QueryRow("select v from t").Scan(&v); err != nil || v != "old" {
		t.Fatalf("reader: %q %v", v, err)
	}
	if err := os.Rename(a.Path("new.db"), a.Path("app.db")); err != nil {
		t.Fatalf("rename over app.db: %v", err)
	}
	if out := mustSQL(t, a.Path("app.db"), "select v from t;"); out != "new\n" {
		t.Fatalf("app.db after the rename: %q", out)
	}
	if _, err := os.Stat(a.Path("new.db")); !os.IsNotExist(err) {
		t.Fatalf("new.db after the rename: %v", err)
	}
	if err := tx.QueryRow("select v from t").Scan(&v); err != nil || v != "old" {
		t.Fatalf("the reader of the replaced database read %q, %v; want its snapshot", v, err)
	}
	tx.Rollback()
	eventuallySQL(t, "B sees the new app.db", b.Path("app.db"), "select v from t;", "new\n")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(b.Path("new.db")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B still sees new.db")
		}
	}

	// Across directories, and back.
	if err := os.MkdirAll(a.Path("archive/2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a.Path("app.db"), a.Path("archive/2026/app.db")); err != nil {
		t.Fatal(err)
	}
	mustSQL(t, a.Path("archive/2026/app.db"), "insert into t values ('moved');")
	if err := os.Rename(a.Path("archive"), a.Path("old")); err != nil {
		t.Fatalf("rename of a directory: %v", err)
	}
	eventuallySQL(t, "B reads through the moved directory", b.Path("old/2026/app.db"), "select group_concat(v) from t;", "new,moved\n")
	if err := os.Rename(a.Path("old"), a.Path("old/2026/loop")); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a directory into itself: %v, want EINVAL", err)
	}

	// A database SQLite uses in WAL mode on this host keeps its name until
	// the last connection closes (SQLite keeps using its -wal).
	mustSQL(t, a.Path("w.db"), "pragma journal_mode=wal; create table t(x);")
	keeper, closeKeeper := openConnCloser(t, a.Path("w.db"), "_busy_timeout=5000")
	execConn(t, keeper, "insert into t values (1)")
	if err := os.Rename(a.Path("w.db"), a.Path("w2.db")); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("rename of a database in WAL use: %v, want EBUSY", err)
	}
	closeKeeper()
	eventuallyRename := func(from, to string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := os.Rename(a.Path(from), a.Path(to))
			if err == nil {
				return
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				t.Fatalf("rename %s once closed: %v", from, err)
			}
		}
	}
	eventuallyRename("w.db", "w2.db")
	if out := mustSQL(t, a.Path("w2.db"), "select count(*) from t;"); out != "1\n" {
		t.Fatalf("w2.db: %q", out)
	}
	if err := os.Remove(a.Path("w2.db")); err != nil {
		t.Fatal(err)
	}

	// Side files and their names.
	mustSQL(t, a.Path("p.db"), "pragma journal_mode=persist; create table t(x);")
	if err := os.Rename(a.Path("p.db-journal"), a.Path("old/p.db-journal")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename of a journal to another directory: %v, want EXDEV", err)
	}
	if err := os.Rename(a.Path("p.db-journal"), a.Path("q.db-journal")); err != nil {
		t.Fatalf("rename of a journal: %v", err)
	}
	if _, err := os.Stat(a.Path("p.db-journal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the journal's old name after the rename: %v", err)
	}
	if err := os.Rename(a.Path("q.db-journal"), a.Path("p.db-journal")); err != nil {
		t.Fatalf("rename of the journal back: %v", err)
	}
	if err := os.Rename(a.Path("p.db"), a.Path("x.db-journal")); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a database renamed to a journal's name: %v, want EINVAL", err)
	}
	if got := a.databases(t); !slices.Equal(got, []string{"old/2026/app.db", "p.db"}) {
		t.Fatalf("databases in etcd: %q", got)
	}
}

// TestJournalMovedAside: a journal renamed away while SQLite's transaction
// holds it open, and then back (SQLite's pager1-33): the COMMIT fails (its
// journal is gone: "disk I/O error"), nothing of the transaction reaches
// etcd, and the journal renamed back is a hot journal that SQLite rolls
// back, as on a local disk. Before, kvfs refused the rename (EXDEV), mv
// copied the journal, and its deletion committed the transaction.
func TestJournalMovedAside(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	local := t.TempDir()
	results := map[string]string{}
	for _, dir := range []string{local, a.Dir} {
		path := filepath.Join(dir, "j.db")
		c, closeConn := openConnCloser(t, path, "")
		var log []string
		run := func(q string) {
			_, err := c.ExecContext(context.Background(), q)
			log = append(log, fmt.Sprintf("%s: %v", q, err))
		}
		move := func(from, to string) {
			err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to))
			log = append(log, fmt.Sprintf("mv %s %s: %v", from, to, err))
		}
		for _, q := range []string{"create table t1(x)", "insert into t1 values('one')", "insert into t1 values('two')",
			"begin", "insert into t1 values('three')", "insert into t1 values('four')"} {
			run(q)
		}
		move("j.db-journal", "bak-journal")
		run("commit")
		move("bak-journal", "j.db-journal")
		var rows string
		err := c.QueryRowContext(context.Background(), "select group_concat(x) from t1").Scan(&rows)
		log = append(log, fmt.Sprintf("rows %q %v", rows, err))
		closeConn()
		results[dir] = strings.Join(log, "\n")
	}
	if results[local] != results[a.Dir] {
		t.Fatalf("local:\n%s\nkvfs:\n%s", results[local], results[a.Dir])
	}
	if !strings.Contains(results[local], `rows "one,two" <nil>`) {
		t.Fatalf("on a local disk:\n%s", results[local])
	}
	if out := mustSQL(t, b.Path("j.db"), "select group_concat(x) from t1;"); out != "one,two\n" {
		t.Fatalf("host B reads %q", out)
	}
}

// TestRenameSeenAtOnce: another host's kernel, told to cache names for an
// hour, sees a rename (and an rmdir) at once, in lookups and in listings
// (which the kernel caches too): kvfs follows the names in etcd and drops
// the kernel's entries and listings that changed.
func TestRenameSeenAtOnce(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix, EntryTimeout: time.Hour})
	mustSQL(t, a.Path("old.db"), "create table t(x);")
	if err := os.Mkdir(a.Path("gone"), 0o755); err != nil {
		t.Fatal(err)
	}
	eventuallySQL(t, "B sees old.db", b.Path("old.db"), "select count(*) from t;", "0\n")
	if _, err := os.Stat(b.Path("new.db")); !os.IsNotExist(err) { // cached as absent
		t.Fatalf("new.db before the rename: %v", err)
	}
	if _, err := os.Stat(b.Path("gone")); err != nil {
		t.Fatal(err)
	}
	list := func(m *mount) string {
		ents, err := os.ReadDir(m.Dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return strings.Join(names, " ")
	}
	if got := list(b); got != "gone old.db" {
		t.Fatalf("B lists %q before the rename, want %q", got, "gone old.db")
	}
	if err := os.Rename(a.Path("old.db"), a.Path("new.db")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(a.Path("gone")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, errOld := os.Stat(b.Path("old.db"))
		_, errNew := os.Stat(b.Path("new.db"))
		_, errGone := os.Stat(b.Path("gone"))
		listed := list(b)
		if os.IsNotExist(errOld) && errNew == nil && os.IsNotExist(errGone) && listed == "new.db" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B after the rename: old.db %v, new.db %v, gone %v, lists %q", errOld, errNew, errGone, listed)
		}
	}
	// A database A creates joins B's listing.
	mustSQL(t, a.Path("more.db"), "create table t(x);")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		listed := list(b)
		if listed == "more.db new.db" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B lists %q after A created more.db", listed)
		}
	}
}

// TestUpgradeFlatCatalog: a store written by a kvfs before directories
// (databases in a flat catalog, keyed by name) mounts with every database
// in the root, its data read where it was.
func TestUpgradeFlatCatalog(t *testing.T) {
	ctx := t.Context()
	prefix := fmt.Sprintf("/e2e/%s-%d/", t.Name(), seq.Add(1))
	store, err := etcdstore.Open(ctx, sharedEtcd.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keys := etcdstore.NewKeys(prefix)
	p, err := pager.New(pager.Options{Store: store, Keys: keys, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fm := fence.NewManager(store, keys, fence.Options{Owner: "old-kvfs", TTL: 3 * time.Second})
	defer fm.Close(ctx)
	names := []string{"legacy-0.db", "legacy \xff.db"}
	for i, name := range names {
		// The old kvfs's way: the flat catalog, and the pages of a database
		// SQLite wrote.
		if err := p.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "src.db")
		mustSQL(t, src, fmt.Sprintf("create table t(x); insert into t values (%d);", i))
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		db, err := p.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		lease, err := fm.AcquireWithHandoff(ctx, name, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Acquire(ctx, lease); err != nil {
			t.Fatal(err)
		}
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += 4096 {
			if err := tx.WritePage(ctx, uint32(off/4096+1), data[off:off+4096]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		db.Release()
		lease.Release(ctx)
		db.Close()
	}
	m := mountKVFS(t, mountOpts{Prefix: prefix})
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if want := slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
		t.Fatalf("root after upgrade %q, want %q", got, want)
	}
	for i, name := range names {
		if out := mustSQL(t, m.Path(name), "select x from t;"); strings.TrimSpace(out) != fmt.Sprint(i) {
			t.Fatalf("%q after upgrade: %q", name, out)
		}
	}
	mustSQL(t, m.Path(names[0]), "insert into t values (9);")
	if err := os.Rename(m.Path(names[0]), m.Path("renamed.db")); err != nil {
		t.Fatal(err)
	}
	if out := mustSQL(t, m.Path("renamed.db"), "select group_concat(x) from t;"); out != "0,9\n" {
		t.Fatalf("renamed legacy database: %q", out)
	}
}

// TestListLargeDirectory: ls of a directory of 10,000 databases lists
// every name and costs one etcd range read of the directory (the kernel
// reads it in many READDIRs, which continue one listing), not one read
// per database or per READDIR.
func TestListLargeDirectory(t *testing.T) {
	const n = 10_000
	a := mountKVFS(t, mountOpts{})
	ctx := t.Context()
	dir, err := a.Pager.MkdirAll(ctx, "big", pager.Attrs{Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("tenant-%05d.db", i)
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			var err error
			for i := w; i < n && err == nil; i += 8 {
				_, err = a.Pager.CreateIn(ctx, dir, want[i], pager.Attrs{Mode: 0o644})
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("create: %v", err)
		}
	}
	for round := range 2 { // the second ls finds the directory looked up already
		before := a.Store.Stats()
		out, err := exec.Command("ls", "-1", "--color=never", a.Path("big")).Output()
		if err != nil {
			t.Fatalf("ls: %v", err)
		}
		after := a.Store.Stats()
		if got := strings.Fields(string(out)); !slices.Equal(got, want) {
			t.Fatalf("ls lists %d names (first %q), want %d", len(got), got[:min(3, len(got))], n)
		}
		reads, txns := after.Reads-before.Reads, after.Txns-before.Txns
		t.Logf("ls %d: %d names, %d etcd reads, %d transactions", round, n, reads, txns)
		// The range read, and at most the lookup of the directory and the
		// attributes of it and of the root.
		if reads > 4 || txns > 0 {
			t.Fatalf("ls of %d databases cost %d etcd reads and %d transactions, want one range read (and the directory's lookup)", n, reads, txns)
		}
	}
}

// TestAutocommitCostsOneTxn: on a host holding the write lease, an
// autocommit insert through the stock CLI costs one etcd transaction and
// no etcd read (the page index and head are this host's; SQLite's reads
// come from the kernel's and kvfs's caches).
func TestAutocommitCostsOneTxn(t *testing.T) {
	const n = 200
	a := mountKVFS(t, mountOpts{})
	path := a.Path("ac.db")
	mustSQL(t, path, "create table t(x); insert into t values (0);")
	var script strings.Builder
	for i := range n {
		fmt.Fprintf(&script, "insert into t values (%d);\n", i+1)
	}
	before := a.Store.Stats()
	mustSQL(t, path, script.String())
	after := a.Store.Stats()
	reads, txns := after.Reads-before.Reads, after.Txns-before.Txns
	t.Logf("%d autocommit inserts: %d etcd transactions, %d reads, %d single writes", n, txns, reads, after.Writes-before.Writes)
	// A few more than n: the lease may be renewed or released and taken
	// again while the CLI runs (fence), but never one per insert.
	if txns < n || txns > n+n/10 || reads > n/10 {
		t.Fatalf("%d autocommit inserts cost %d etcd transactions and %d reads, want about %d and none", n, txns, reads, n)
	}
}

// TestTreeRemovalAndAttrs: a tree of directories, databases, journals and
// plain files is removed by the tools that walk it (rm -r, and Tcl's `file
// delete -force`, which SQLite's test suite uses and which trusts a
// directory's link count: with 2 it took a subdirectory for a file);
// listings hold "." and ".."; directories and side files have real times.
func TestTreeRemovalAndAttrs(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	build := func(top string) {
		t.Helper()
		if err := os.MkdirAll(m.Path(top+"/d1234567890/sub/deeper"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustSQL(t, m.Path(top+"/d1234567890/sub/x.db"), "create table t(x); insert into t values (1);")
		if err := os.WriteFile(m.Path(top+"/d1234567890/notes.txt"), []byte("plain\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build("a")
	if out, err := exec.Command("ls", "-a", m.Path("a")).Output(); err != nil || string(out) != ".\n..\nd1234567890\n" {
		t.Fatalf("ls -a: %q %v", out, err)
	}
	for _, p := range []string{"a", "a/d1234567890/sub"} {
		st, err := os.Stat(m.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		if age := time.Since(st.ModTime()); age < 0 || age > time.Minute {
			t.Fatalf("%s: mtime %v, want about now", p, st.ModTime())
		}
	}
	if out, err := exec.Command("rm", "-r", m.Path("a")).CombinedOutput(); err != nil {
		t.Fatalf("rm -r: %v %s", err, out)
	}
	if tclsh, err := exec.LookPath("tclsh"); err != nil {
		t.Log("no tclsh (apt-get install tcl): Tcl's file delete -force not tried")
	} else {
		build("b")
		cmd := exec.Command(tclsh)
		cmd.Stdin = strings.NewReader("file delete -force " + m.Path("b") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Fatalf("tclsh file delete -force: %v %s", err, out)
		}
	}
	if ents, err := os.ReadDir(m.Dir); err != nil || len(ents) != 0 {
		t.Fatalf("after removing the trees the root lists %v (%v)", ents, err)
	}
}

// TestWorkingDirectoryKeepsItsName: a process that makes a directory and
// enters it can name its working directory (getcwd), also when the name
// was removed and made again a moment before. The mount hears of its own
// mkdir and rmdir from etcd too, and dropping the kernel's entry of the
// new directory for them left the process's working directory without a
// name (getcwd: ENOENT, in about 1 of 7 rounds).
func TestWorkingDirectoryKeepsItsName(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 (apt-get install python3): a process that mkdirs and chdirs in one go is needed")
	}
	m := mountKVFS(t, mountOpts{})
	script := `
import os, time
root, fails = os.getcwd(), []
for i in range(300):
    os.mkdir("d")
    os.chdir("d")
    time.sleep(0.002)
    try:
        if os.getcwd() != root + "/d":
            fails.append("round %d: getcwd %s" % (i, os.getcwd()))
    except OSError as e:
        fails.append("round %d: getcwd: %s" % (i, e))
    os.chdir(root)
    os.rmdir("d")
print("\n".join(fails[:5]))
`
	cmd := exec.Command(py, "-c", script)
	cmd.Dir = m.Dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("mkdir, chdir, getcwd: %v\n%s", err, out)
	}
}
