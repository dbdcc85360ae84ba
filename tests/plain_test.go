package tests

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/kvfs/kvfs/pager"
)

// headOf returns the committed head of the file at path (relative to m's
// root), as etcd holds it.
func (m *mount) headOf(t *testing.T, path string) pager.Head {
	t.Helper()
	db, err := m.Pager.Open(context.Background(), m.id(t, path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return db.Head()
}

// readFile reads path, failing the test on error.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPlainFiles: a file that is not a SQLite database is stored as it is
// written, as on a local disk: cp of a text file, writes at offsets and
// appends, truncation to any size, fsync of an open file (durable then,
// seen by another host), rename and unlink; another host reads what was
// committed; a truncated copy of a database is kept as written.
func TestPlainFiles(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	text := bytes.Repeat([]byte("not a database\n"), 1000)
	if err := os.WriteFile(a.Path("notes.txt"), text, 0o644); err != nil {
		t.Fatalf("cp of a text file: %v", err)
	}
	if got := readFile(t, a.Path("notes.txt")); !bytes.Equal(got, text) {
		t.Fatalf("notes.txt reads %d bytes, want the %d written", len(got), len(text))
	}
	if h := a.headOf(t, "notes.txt"); !h.Plain || h.Size() != int64(len(text)) {
		t.Fatalf("notes.txt head %+v: want a plain file of %d bytes", h, len(text))
	}
	eventually(t, "B reads notes.txt", string(text), func() string { b, _ := os.ReadFile(b.Path("notes.txt")); return string(b) })

	// Writes at offsets, past the end (a gap of zeros), appends, truncation.
	want := append([]byte(nil), text...)
	f, err := os.OpenFile(a.Path("notes.txt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("PATCH"), 7)
	copy(want[7:], "PATCH")
	f.WriteAt([]byte("far"), 20_000)
	want = append(want, make([]byte, 20_000-len(want))...)
	want = append(want, "far"...)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	// Durable at the fsync: the other host sees it while the file is open.
	eventually(t, "B after A's fsync", string(want), func() string { b, _ := os.ReadFile(b.Path("notes.txt")); return string(b) })
	if err := f.Truncate(12_345); err != nil {
		t.Fatalf("truncate to 12345: %v", err)
	}
	want = want[:12_345]
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	ap, err := os.OpenFile(a.Path("notes.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	ap.Write([]byte("appended line\n"))
	want = append(want, "appended line\n"...)
	if err := ap.Close(); err != nil {
		t.Fatalf("close after append: %v", err)
	}
	if got := readFile(t, a.Path("notes.txt")); !bytes.Equal(got, want) {
		t.Fatalf("after writes, truncate and append: %d bytes, want %d", len(got), len(want))
	}
	eventually(t, "B after the append", string(want), func() string { b, _ := os.ReadFile(b.Path("notes.txt")); return string(b) })
	if st, err := os.Stat(b.Path("notes.txt")); err != nil || st.Size() != int64(len(want)) {
		t.Fatalf("B stats notes.txt: %v, size want %d", err, len(want))
	}
	// The CLI: ls says plain, verify passes, export writes the bytes.
	cli := func(args ...string) string {
		t.Helper()
		args = append([]string{args[0], "--etcd", strings.Join(sharedEtcd.Endpoints(), ","), "--prefix", a.Prefix}, args[1:]...)
		out, err := exec.Command(kvfsBinary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kvfs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := cli("ls"); !regexp.MustCompile(`(?m)^notes\.txt +plain `).MatchString(out) {
		t.Fatalf("kvfs ls does not show notes.txt as plain:\n%s", out)
	}
	cli("verify", "notes.txt")
	exported := filepath.Join(t.TempDir(), "notes.txt")
	cli("export", "notes.txt", exported)
	if got := readFile(t, exported); !bytes.Equal(got, want) {
		t.Fatalf("kvfs export wrote %d bytes, want %d", len(got), len(want))
	}

	// Rename and unlink, seen on B.
	if err := os.Rename(a.Path("notes.txt"), a.Path("notes.old")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	eventually(t, "B reads the renamed file", string(want), func() string { b, _ := os.ReadFile(b.Path("notes.old")); return string(b) })
	if err := os.Remove(a.Path("notes.old")); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	eventually(t, "B after the unlink", "absent", func() string {
		if _, err := os.Stat(b.Path("notes.old")); os.IsNotExist(err) {
			return "absent"
		}
		return "present"
	})

	// A database rewritten as text becomes a plain file, and a database
	// copied over text a database again, which SQLite opens.
	mustSQL(t, a.Path("app.db"), "create table t(x); insert into t values (1),(2),(3);")
	if err := os.WriteFile(a.Path("app.db"), []byte("now a note\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h := a.headOf(t, "app.db"); !h.Plain || h.Size() != 11 {
		t.Fatalf("a database rewritten as text: head %+v", h)
	}
	src := t.TempDir() + "/src.db"
	mustSQL(t, src, "create table t(x); insert into t values (4),(5);")
	image := readFile(t, src)
	if err := os.WriteFile(a.Path("app.db"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	if h := a.headOf(t, "app.db"); h.Plain || h.Size() != int64(len(image)) {
		t.Fatalf("a database copied over text: head %+v", h)
	}
	if out := mustSQL(t, a.Path("app.db"), "select sum(x) from t;"); out != "9\n" {
		t.Fatalf("the copied database: %q", out)
	}

	// A truncated copy of a database is kept as written (SQLite will find
	// it damaged, as it would on a local disk).
	big := t.TempDir() + "/big.db"
	mustSQL(t, big, "create table t(x); with recursive n(i) as (select 1 union all select i+1 from n where i<2000) insert into t select randomblob(100) from n;")
	half := readFile(t, big)
	half = half[:len(half)/2/4096*4096]
	if err := os.WriteFile(a.Path("short.db"), half, 0o644); err != nil {
		t.Fatalf("a truncated copy: %v", err)
	}
	if got := readFile(t, a.Path("short.db")); !bytes.Equal(got, half) {
		t.Fatalf("the truncated copy reads %d bytes, want the %d written", len(got), len(half))
	}
	os.Remove(a.Path("short.db")) // damaged on purpose: not for the integrity check at unmount
}

// TestPlainFileLimits: a plain file may not grow past PlainMaxBytes (EFBIG,
// by write or truncate) nor past the quota (ENOSPC); either way the file
// keeps its committed content.
func TestPlainFileLimits(t *testing.T) {
	m := mountKVFS(t, mountOpts{PlainMaxBytes: 64 << 10, Quota: pager.Quota{MaxBytes: 256 << 10}})
	small := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	if err := os.WriteFile(m.Path("f.txt"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(m.Path("f.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 64<<10); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("write past the plain-file limit: %v, want EFBIG", err)
	}
	if err := f.Truncate(64<<10 + 1); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("truncate past the plain-file limit: %v, want EFBIG", err)
	}
	f.Close()
	if got := readFile(t, m.Path("f.txt")); !bytes.Equal(got, small) {
		t.Fatalf("after refused growth: %d bytes, want the %d committed", len(got), len(small))
	}
	// Incompressible contents of 60 KiB, rewritten until what the file
	// stores in etcd passes the quota of 256 KiB: the write or close that
	// crosses it fails with ENOSPC, and the file reads as its last commit.
	last := small
	var failed error
	for i := uint64(0); i < 10 && failed == nil; i++ {
		noise := make([]byte, 60<<10)
		rng := rand.New(rand.NewPCG(i, 1))
		for j := range noise {
			noise[j] = byte(rng.Uint32())
		}
		if failed = os.WriteFile(m.Path("f.txt"), noise, 0o644); failed == nil {
			last = noise
		}
	}
	if !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("plain files past the quota: %v, want ENOSPC", failed)
	}
	if got := readFile(t, m.Path("f.txt")); !bytes.Equal(got, last) {
		t.Fatalf("after ENOSPC: %d bytes, not the %d of the last commit", len(got), len(last))
	}
}

// TestPageSizeChange: SQLite changing a database's page size (VACUUM after
// PRAGMA page_size, a backup restored over it) gives what it gives on a
// local disk; kvfs keeps the file byte for byte in its old pages, and
// another host reads the same rows.
func TestPageSizeChange(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	src := filepath.Join(t.TempDir(), "src.db")
	mustSQL(t, src, "pragma page_size=8192; create table u(y); insert into u values ('restored');")
	steps := []string{
		"pragma page_size=1024; create table t(x); with recursive n(i) as (select 1 union all select i+1 from n where i < 500) insert into t select randomblob(300) from n;",
		"pragma page_size=4096; vacuum; pragma page_size; select count(*) from t; pragma integrity_check;",
		".restore " + src + "\npragma page_size; select y from u; pragma integrity_check;",
		"pragma page_size=512; vacuum; pragma page_size; select y from u; pragma integrity_check;",
	}
	local := filepath.Join(t.TempDir(), "ps.db")
	for i, sql := range steps {
		want, wantErr := runSQL(local, sql)
		got, gotErr := runSQL(a.Path("ps.db"), sql)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("step %d: kvfs %q (%v), local %q (%v)", i, got, gotErr, want, wantErr)
		}
	}
	eventuallySQL(t, "B reads the database", b.Path("ps.db"), "pragma page_size; select y from u;", "512\nrestored\n")
}
