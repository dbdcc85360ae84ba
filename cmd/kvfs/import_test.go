package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestImport(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 2000)
	out, _ := s.kvfs(0, "import", src, "app.db")
	if !strings.Contains(out, "imported "+src+" into app.db") || !strings.Contains(out, "txid 1") {
		t.Fatalf("import output: %q", out)
	}
	// The copy reads back identical.
	dst := filepath.Join(t.TempDir(), "out.db")
	s.kvfs(0, "export", "app.db", dst)
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(dst)
	if string(want) != string(got) {
		t.Fatalf("export of the import differs: %d vs %d bytes", len(got), len(want))
	}

	// An existing database is replaced only with --force, as a new txid.
	_, errOut := s.kvfs(1, "import", src, "app.db")
	if !strings.Contains(errOut, "exists: use --force") {
		t.Fatalf("import over an existing database: %q", errOut)
	}
	sqlite(t, src, "delete from t where id > 10; vacuum;") // smaller: the import shrinks it
	out, _ = s.kvfs(0, "import", "--force", src, "app.db")
	if !strings.Contains(out, "txid 2") {
		t.Fatalf("forced import: %q", out)
	}
	s.kvfs(0, "export", "--force", "app.db", dst)
	if got := sqlite(t, dst, "select count(*) from t;"); strings.TrimSpace(got) != "10" {
		t.Fatalf("after the forced import: %q rows", got)
	}
	s.kvfs(0, "verify", "app.db")

	// Files that are not whole SQLite databases are refused, and leave no
	// database behind.
	dir := t.TempDir()
	bad := map[string][]byte{
		"text.db":  []byte("hello, this is not a database\n"),
		"empty.db": nil,
	}
	full, _ := os.ReadFile(src)
	bad["truncated.db"] = full[:len(full)-100]
	bad["halfpages.db"] = full[:len(full)/2-len(full)/2%4096] // header says more pages
	for name, data := range bad {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		_, errOut := s.kvfs(1, "import", p, name)
		if !strings.Contains(errOut, p+": ") {
			t.Errorf("import %s: %q", name, errOut)
		}
	}
	out, _ = s.kvfs(0, "ls")
	for name := range bad {
		if strings.Contains(out, name) {
			t.Errorf("refused import %s left a database: %s", name, out)
		}
	}

	// A file locked by a SQLite writer is not read.
	w := exec.Command("sqlite3", "-batch", src)
	stdin, _ := w.StdinPipe()
	stdout, _ := w.StdoutPipe()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); w.Wait() }()
	io.WriteString(stdin, "begin exclusive; insert into kv values ('x', 'y');\n.print locked\n")
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("sqlite3 writer: %q %v", line, err)
	}
	_, errOut = s.kvfs(1, "import", "--force", src, "app.db")
	if !strings.Contains(errOut, "a SQLite writer holds the database locked") {
		t.Fatalf("import of a locked file: %q", errOut)
	}
}

func TestCheckSQLiteFile(t *testing.T) {
	hdr := make([]byte, 100)
	copy(hdr, "SQLite format 3\x00")
	hdr[16], hdr[17] = 0x10, 0x00 // 4096
	hdr[18], hdr[19] = 1, 1
	if h, err := checkSQLiteFile(hdr, 3*4096); err != nil || h.Pages != 3 || h.PageSize != 4096 {
		t.Fatalf("valid header: %+v %v", h, err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte)
		size int64
		want string
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, 4096, "not a SQLite database"},
		{"pagesize", func(b []byte) { b[16], b[17] = 0x03, 0x00 }, 4096, "bad page size 768"},
		{"partial", func([]byte) {}, 4096 + 10, "not a whole number"},
		{"wal", func(b []byte) { b[18], b[19] = 2, 2 }, 4096, "WAL mode"},
		{"count", func(b []byte) { b[31] = 5 }, 4096, "says 5 pages but the file holds 1"},
	} {
		b := append([]byte(nil), hdr...)
		tc.edit(b)
		if _, err := checkSQLiteFile(b, tc.size); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
