package tests

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestFilesystemMatchesLocal runs, from a seed, random sequences of
// database creations and writes (the stock CLI, a database or a text file
// copied over a name as cp does, and bytes written at any offset by a
// writer that is not SQLite, which may make a database a plain file),
// truncation to any size, mkdir, rmdir, unlink, rename and chmod, on the
// mount and on a local directory side by side: every operation must
// succeed or fail alike, with the same errno, and the trees (names, kinds,
// modes) and every file's rows and bytes must match.
func TestFilesystemMatchesLocal(t *testing.T) {
	seed := seedOf(t, "KVFS_FS_SEED")
	rng := mrand.New(mrand.NewPCG(seed, 0x66736d))
	m := mountKVFS(t, mountOpts{})
	roots := []string{t.TempDir(), m.Dir} // local first
	dirs := []string{"", "d0", "d1", "d0/d2", "d0/d2/d3"}
	names := []string{"a.db", "b.db", "c d.db", "\xe9.db", "d0", "d1", "d2"}
	// randPath names, half of the time, something that exists (or a name
	// in an existing directory), so that operations succeed too.
	randPath := func() string {
		if rng.IntN(2) == 0 {
			var existing []string
			filepath.WalkDir(roots[0], func(p string, d fs.DirEntry, err error) error {
				if rel, _ := filepath.Rel(roots[0], p); err == nil && rel != "." && !strings.HasSuffix(rel, "-journal") {
					existing = append(existing, rel)
					if d.IsDir() {
						existing = append(existing, filepath.Join(rel, names[rng.IntN(len(names))]))
					}
				}
				return nil
			})
			if len(existing) > 0 {
				return existing[rng.IntN(len(existing))]
			}
		}
		return filepath.Join(dirs[rng.IntN(len(dirs))], names[rng.IntN(len(names))])
	}
	// errnoOf reduces an error to its errno (0 for success).
	errnoOf := func(err error) syscall.Errno {
		var errno syscall.Errno
		if err == nil {
			return 0
		}
		if errors.As(err, &errno) {
			return errno
		}
		t.Fatalf("not an errno: %v", err)
		return 0
	}
	outcomes := map[string]int{} // "rename ok", "rmdir ENOTEMPTY", ...
	both := func(op string, fn func(root string) error) {
		t.Helper()
		local, kvfs := errnoOf(fn(roots[0])), errnoOf(fn(roots[1]))
		if local != kvfs {
			t.Fatalf("%s: local %v, kvfs %v", op, local, kvfs)
		}
		what := "ok"
		if local != 0 {
			what = local.Error()
		}
		outcomes[strings.Fields(op)[2]+" "+what]++
	}
	// A database a non-SQLite writer copies in (as cp does: truncate,
	// write, close).
	template := filepath.Join(t.TempDir(), "template.db")
	mustSQL(t, template, "create table t(x); insert into t values (-1), (-2);")
	image, err := os.ReadFile(template)
	if err != nil {
		t.Fatal(err)
	}
	text := []byte(strings.Repeat("a plain line of text\n", 300))
	n := 0
	for op := 0; op < 200; op++ {
		switch k := rng.IntN(15); {
		case k == 14:
			// A writer that is not SQLite writes bytes anywhere in an
			// existing file, past its end too.
			p, data := randPath(), make([]byte, 1+rng.IntN(3000))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			frac := rng.Float64()
			both(fmt.Sprintf("op %d: pwrite %d bytes into %q", op, len(data), p), func(root string) error {
				return pwriteAt(filepath.Join(root, p), data, frac)
			})
		case k >= 12:
			p := randPath()
			if k == 12 {
				content, what := image, "a database"
				if rng.IntN(3) == 0 {
					content, what = text, "text"
				}
				both(fmt.Sprintf("op %d: copy %s over %q", op, what, p), func(root string) error { return writeFile(filepath.Join(root, p), content) })
			} else {
				size := int64(0)
				if rng.IntN(2) == 0 {
					size = rng.Int64N(3 * 4096)
				}
				both(fmt.Sprintf("op %d: truncate %q to %d", op, p, size), func(root string) error { return syscall.Truncate(filepath.Join(root, p), size) })
			}
		case k < 3: // a database written by SQLite
			p := randPath()
			n++
			sql := fmt.Sprintf("create table if not exists t(x); insert into t values (%d);", n)
			var okLocal, okKVFS bool
			_, err := runSQL(filepath.Join(roots[0], p), sql)
			okLocal = err == nil
			_, err = runSQL(filepath.Join(roots[1], p), sql)
			okKVFS = err == nil
			if okLocal != okKVFS {
				t.Fatalf("op %d: sqlite3 on %q: local ok %v, kvfs ok %v (%v)", op, p, okLocal, okKVFS, err)
			}
		case k < 5:
			p, mode := randPath(), []os.FileMode{0o755, 0o700, 0o750}[rng.IntN(3)]
			both(fmt.Sprintf("op %d: mkdir %q", op, p), func(root string) error {
				return syscall.Mkdir(filepath.Join(root, p), uint32(mode))
			})
		case k < 6:
			p := randPath()
			both(fmt.Sprintf("op %d: rmdir %q", op, p), func(root string) error { return syscall.Rmdir(filepath.Join(root, p)) })
		case k < 7:
			p := randPath()
			both(fmt.Sprintf("op %d: unlink %q", op, p), func(root string) error { return syscall.Unlink(filepath.Join(root, p)) })
		case k < 10:
			from, to := randPath(), randPath()
			both(fmt.Sprintf("op %d: rename %q %q", op, from, to), func(root string) error {
				return syscall.Rename(filepath.Join(root, from), filepath.Join(root, to))
			})
		default:
			p, mode := randPath(), []uint32{0o600, 0o644, 0o640, 0o755, 0o1777}[rng.IntN(5)]
			both(fmt.Sprintf("op %d: chmod %q %#o", op, p, mode), func(root string) error {
				return syscall.Chmod(filepath.Join(root, p), mode)
			})
		}
		if op%25 == 24 || op == 199 {
			compareTrees(t, fmt.Sprintf("after op %d", op), roots)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	// Files damaged on purpose are not for the integrity check at unmount.
	entries, _ := os.ReadDir(m.Dir)
	for _, e := range entries {
		if err := os.RemoveAll(m.Path(e.Name())); err != nil {
			t.Fatalf("rm -r %s: %v", e.Name(), err)
		}
	}
}

// pwriteAt writes data into the existing file path at frac of the way
// from its start to 2,000 bytes past its end. It returns the first error's
// errno.
func pwriteAt(path string, data []byte, frac float64) error {
	fd, err := syscall.Open(path, syscall.O_WRONLY, 0)
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	werr := syscall.Fstat(fd, &st)
	if werr == nil {
		_, werr = syscall.Pwrite(fd, data, int64(frac*float64(st.Size+2000)))
	}
	if cerr := syscall.Close(fd); werr == nil {
		werr = cerr
	}
	return werr
}

// writeFile writes data to path as cp does (create or truncate, write,
// close) and returns the first error's errno.
func writeFile(path string, data []byte) error {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, werr := syscall.Write(fd, data)
	if cerr := syscall.Close(fd); werr == nil {
		werr = cerr
	}
	return werr
}

// compareTrees fails unless the trees under roots hold the same names,
// kinds and modes, and the same rows in each database.
func compareTrees(t *testing.T, when string, roots []string) {
	t.Helper()
	var trees [2][]string
	for i, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if rel == "." || strings.HasSuffix(rel, "-journal") {
				return nil // the roots differ; journals are host-local, as SQLite left them
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			entry := fmt.Sprintf("%q %v", rel, info.Mode())
			if !d.IsDir() {
				out, err := runSQL(p, "select group_concat(x) from t;")
				if err != nil {
					out = "unreadable"
				}
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				entry += fmt.Sprintf(" %s %d bytes, sha256 %x", strings.TrimSpace(out), len(data), sha256.Sum256(data))
			}
			trees[i] = append(trees[i], entry)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: walk %s: %v", when, root, err)
		}
	}
	if !slices.Equal(trees[0], trees[1]) {
		t.Fatalf("%s: trees differ\nlocal: %q\nkvfs:  %q", when, trees[0], trees[1])
	}
}
