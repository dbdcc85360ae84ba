package tests

import (
	"fmt"
	"os"
	"sort"
	"testing"
)

// TestListingWithoutOpendir: kvfs answers OPENDIR with ENOSYS so the
// kernel stops opening directories; listings then arrive without a
// handle, in several requests for a long directory, each resuming at its
// offset. Every name is listed exactly once, and a directory fsync (which
// SQLite does after creating a journal) still succeeds.
func TestListingWithoutOpendir(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	mustSQL(t, m.Path("a.db"), "create table t(x);")
	want := []string{"a.db"}
	// Journals of databases that do not exist are plain host-local
	// files: a cheap way to make the listing span many requests.
	for i := range 600 {
		name := fmt.Sprintf("side-%04d-with-a-long-name-to-fill-buffers.db-journal", i)
		if err := os.WriteFile(m.Path(name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	sort.Strings(want)
	for round := range 3 { // the first listing opens the directory; later ones do not
		ents, err := os.ReadDir(m.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != len(want) {
			t.Fatalf("round %d: %d entries, want %d", round, len(ents), len(want))
		}
		for i, e := range ents {
			if e.Name() != want[i] {
				t.Fatalf("round %d: entry %d is %q, want %q", round, i, e.Name(), want[i])
			}
		}
	}
	dir, err := os.Open(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		t.Fatalf("fsync of the mount's directory: %v", err)
	}
}
