package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExport(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 3000)
	s.kvfs(0, "import", src, "app.db")
	dir := t.TempDir()
	dst := filepath.Join(dir, "app.db")
	out, errOut := s.kvfs(0, "export", "app.db", dst)
	if !strings.Contains(out, "exported app.db txid 1") || !strings.Contains(out, "checksum ") {
		t.Fatalf("export output: %q", out)
	}
	if !strings.Contains(errOut, "export app.db: ") {
		t.Fatalf("no progress on stderr: %q", errOut)
	}
	checkIntegrity(t, dst)
	if a, b := sqlite(t, src, ".dump"), sqlite(t, dst, ".dump"); a != b {
		t.Fatalf(".dump of the export differs from the source")
	}
	// The checksum matches verify's.
	sum := out[strings.Index(out, "checksum ")+len("checksum "):]
	vout, _ := s.kvfs(0, "verify", "app.db")
	if !strings.Contains(vout, "checksum "+strings.TrimSpace(sum)) {
		t.Fatalf("export checksum %q, verify says %q", sum, vout)
	}
	// No temporary files are left.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("export left %d files in %s", len(ents), dir)
	}

	// An existing file is kept without --force; "-" writes to stdout.
	_, errOut = s.kvfs(1, "export", "app.db", dst)
	if !strings.Contains(errOut, "exists: use --force") {
		t.Fatalf("export over a file: %q", errOut)
	}
	out, _ = s.kvfs(0, "export", "app.db", "-")
	want, _ := os.ReadFile(dst)
	if out != string(want) {
		t.Fatalf("export to stdout: %d bytes, want %d", len(out), len(want))
	}
	_, errOut = s.kvfs(1, "export", "missing.db", filepath.Join(dir, "x.db"))
	if !strings.Contains(errOut, "not found") {
		t.Fatalf("export of a missing database: %q", errOut)
	}
}
