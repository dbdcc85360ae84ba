package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestPaths: the commands take paths in the mount: import makes the
// directories of its path, ls lists a directory's databases by path,
// status, verify, export, compact and rm find a database by path, and a
// directory where a database is expected is refused.
func TestPaths(t *testing.T) {
	requireSQLite(t)
	s := newTestStore(t)
	src := makeDB(t, 50)
	s.kvfs(0, "import", src, "tenant1/sub/app.db")
	s.kvfs(0, "import", src, "tenant2/app.db")
	s.kvfs(0, "import", src, "top.db")
	out, _ := s.kvfs(0, "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "tenant1/sub/app.db ") || !strings.HasPrefix(lines[2], "tenant2/app.db ") || !strings.HasPrefix(lines[3], "top.db ") {
		t.Fatalf("ls: %q", out)
	}
	var entries []lsEntry
	out, _ = s.kvfs(0, "ls", "--json", "tenant2")
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 1 || entries[0].Name != "tenant2/app.db" || entries[0].ID != s.id("tenant2/app.db") {
		t.Fatalf("ls --json tenant2: %q %v", out, err)
	}
	if out, _ = s.kvfs(0, "ls", "tenant1/"); !strings.Contains(out, "tenant1/sub/app.db") || strings.Contains(out, "top.db") || strings.Contains(out, "tenant2") {
		t.Fatalf("ls tenant1/: %q", out)
	}
	if out, _ = s.kvfs(0, "status", "tenant1/sub/app.db"); !strings.Contains(out, "database tenant1/sub/app.db") {
		t.Fatalf("status of a path: %q", out)
	}
	if out, _ = s.kvfs(0, "verify", "tenant2"); !strings.Contains(out, "tenant2/app.db: ok") || strings.Contains(out, "top.db") {
		t.Fatalf("verify of a directory: %q", out)
	}
	dst := filepath.Join(t.TempDir(), "out.db")
	s.kvfs(0, "export", "tenant1/sub/app.db", dst)
	if got, want := sqlite(t, dst, "select count(*) from t;"), sqlite(t, src, "select count(*) from t;"); got != want {
		t.Fatalf("export of a path: %q, want %q", got, want)
	}
	s.kvfs(0, "compact", "tenant1/sub/app.db")
	if _, errOut := s.kvfs(1, "export", "tenant1", dst+"2"); !strings.Contains(errOut, "is a directory") {
		t.Fatalf("export of a directory: %q", errOut)
	}
	if _, errOut := s.kvfs(1, "import", src, "top.db/x.db"); !strings.Contains(errOut, "not a directory") {
		t.Fatalf("import under a database: %q", errOut)
	}
	s.kvfs(0, "rm", "tenant1/sub/app.db")
	if out, _ = s.kvfs(0, "ls"); strings.Contains(out, "tenant1") {
		t.Fatalf("ls after rm: %q", out)
	}
}
