package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// historyCLI runs the kvfs binary against m's etcd and prefix, with the
// default configuration (history.retention 24h).
func historyCLI(t *testing.T, m *mount, args ...string) (string, error) {
	t.Helper()
	args = append([]string{args[0], "--etcd", strings.Join(sharedEtcd.Endpoints(), ","), "--prefix", m.Prefix}, args[1:]...)
	out, err := exec.Command(kvfsBinary(t), args...).CombinedOutput()
	return string(out), err
}

func mustHistoryCLI(t *testing.T, m *mount, args ...string) string {
	t.Helper()
	out, err := historyCLI(t, m, args...)
	if err != nil {
		t.Fatalf("kvfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// headOf returns the head of database name as m's pager has it.
func headOf(t *testing.T, m *mount, name string) pager.Head {
	t.Helper()
	db, err := m.Pager.Open(context.Background(), m.id(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return db.Head()
}

// TestHistoryFiles: past versions of a database open with the stock
// sqlite3 CLI as app.db@TXID and app.db@TIME while writers go on, read-only
// and unlisted; kvfs log lists them, kvfs restore brings one back (and can
// be undone), kvfs fork copies one into an independent database; bad
// versions and names get clear errors and change nothing.
func TestHistoryFiles(t *testing.T) {
	m := mountKVFS(t, mountOpts{History: time.Hour})
	app := m.Path("app.db")
	mustSQL(t, app, "create table t(id integer primary key, v text);")
	dumps := map[uint64]string{}
	times := map[uint64]time.Time{}
	var txids []uint64
	for i := range 12 {
		mustSQL(t, app, fmt.Sprintf("insert into t(v) values ('row %d %s');", i, strings.Repeat("x", i*3)))
		if i == 6 {
			mustSQL(t, app, "delete from t where id < 4; create index t_v on t(v);")
		}
		h := headOf(t, m, "app.db")
		dumps[h.TXID], times[h.TXID] = mustSQL(t, app, ".dump"), time.UnixMilli(h.Timestamp)
		txids = append(txids, h.TXID)
		time.Sleep(5 * time.Millisecond) // distinct commit times
	}

	// Writers continue meanwhile.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := runSQL(app, fmt.Sprintf(".timeout 5000\ninsert into t(v) values ('later %d');", i)); err != nil {
				writeErr = err
				return
			}
		}
	}()
	// An open time-travel file keeps reading the same bytes across commits.
	old := fmt.Sprintf("%s@%d", app, txids[2])
	f, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, txid := range txids {
		if got := mustSQL(t, fmt.Sprintf("%s@%d", app, txid), ".dump"); got != dumps[txid] {
			t.Fatalf("app.db@%d:\n%s\nwant\n%s", txid, got, dumps[txid])
		}
		at := times[txid].UTC().Format(time.RFC3339Nano)
		if got := mustSQL(t, app+"@"+at, ".dump"); got != dumps[txid] {
			t.Fatalf("app.db@%s (txid %d):\n%s\nwant\n%s", at, txid, got, dumps[txid])
		}
	}
	again := make([]byte, len(first)+1)
	if n, err := f.ReadAt(again, 0); n != len(first) || string(again[:n]) != string(first) {
		t.Fatalf("the open app.db@%d read %d bytes (%v) after commits, want the same %d", txids[2], n, err, len(first))
	}
	close(stop)
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("writer: %v", writeErr)
	}
	if st, err := os.Stat(old); err != nil || st.Mode().Perm() != 0o444 || st.Size() != int64(len(first)) {
		t.Fatalf("stat app.db@%d: %v %v", txids[2], st, err)
	}

	// Not listed; read-only.
	ents, err := os.ReadDir(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), "@") {
			t.Fatalf("ls lists %s", e.Name())
		}
	}
	if out, err := runSQL(old, "insert into t(v) values ('no');"); err == nil || !strings.Contains(out, "readonly") {
		t.Fatalf("insert into app.db@%d: %v %s, want a read-only database", txids[2], err, out)
	}
	for _, c := range []struct {
		name  string
		flags int
		want  syscall.Errno
	}{
		{fmt.Sprintf("app.db@%d", txids[2]), os.O_RDWR, syscall.EROFS},
		{fmt.Sprintf("app.db@%d", txids[2]), os.O_RDONLY | os.O_TRUNC, syscall.EROFS},
		{fmt.Sprintf("app.db@%d-journal", txids[2]), os.O_RDWR | os.O_CREATE, syscall.EROFS},
		{"app.db@99999999", os.O_RDWR | os.O_CREATE, syscall.EROFS},
		{"app.db@99999999", os.O_RDONLY, syscall.ENOENT},
		{"app.db@0", os.O_RDONLY, syscall.ENOENT},
		{"app.db@2026-12-01T10:00:00", os.O_RDONLY, syscall.ENOENT},             // no zone
		{"app.db@2026-12-01T10:00:00", os.O_RDWR | os.O_CREATE, syscall.EINVAL}, // not made a database
		{"app.db@2000-01-01T00:00:00Z", os.O_RDONLY, syscall.ENOENT},            // before the history
		{"app.db@12x", os.O_RDONLY, syscall.ENOENT},                             // malformed
		{"nosuch.db@1", os.O_RDONLY, syscall.ENOENT},
	} {
		f, err := os.OpenFile(m.Path(c.name), c.flags, 0o644)
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, c.want) {
			t.Errorf("open %s (flags %#x): %v, want %v", c.name, c.flags, err, c.want)
		}
	}
	if err := os.WriteFile(m.Path("notes@1"), []byte("a plain file whose name has an @"), 0o644); err != nil {
		t.Fatalf("a name with '@' that names no version: %v", err)
	}
	ents, _ = os.ReadDir(m.Dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if slices.Contains(names, "app.db@2026-12-01T10:00:00") || !slices.Contains(names, "notes@1") {
		t.Fatalf("directory after the bad opens: %v", names)
	}

	// kvfs log: newest first, every txid above among them.
	logOut := mustHistoryCLI(t, m, "log", "app.db")
	var listed []uint64
	for _, mm := range regexp.MustCompile(`(?m)^\s*(\d+)\s+20\d\d-`).FindAllStringSubmatch(logOut, -1) {
		var v uint64
		fmt.Sscan(mm[1], &v)
		listed = append(listed, v)
	}
	if len(listed) < len(txids) || !slices.IsSortedFunc(listed, func(a, b uint64) int { return int(b) - int(a) }) || listed[0] != headOf(t, m, "app.db").TXID {
		t.Fatalf("kvfs log app.db: %v\n%s", listed, logOut)
	}
	for _, txid := range txids {
		if !slices.Contains(listed, txid) {
			t.Fatalf("kvfs log lacks txid %d:\n%s", txid, logOut)
		}
	}
	if out := mustHistoryCLI(t, m, "log", "--since", fmt.Sprint(txids[10]), "app.db"); strings.Contains(out, fmt.Sprintf("\n%*d ", 6, txids[9])) {
		t.Fatalf("kvfs log --since %d lists %d:\n%s", txids[10], txids[9], out)
	}

	// Restore, then undo it.
	before := headOf(t, m, "app.db")
	latest := mustSQL(t, app, ".dump")
	mustHistoryCLI(t, m, "restore", "--to", fmt.Sprint(txids[4]), "app.db")
	eventuallySQL(t, fmt.Sprintf("app.db after restore --to %d", txids[4]), app, ".dump", dumps[txids[4]])
	if h := headOf(t, m, "app.db"); h.TXID != before.TXID+1 {
		t.Fatalf("restore landed txid %d, want one commit after %d", h.TXID, before.TXID)
	}
	mustSQL(t, app, "pragma integrity_check; insert into t(v) values ('after restore');")
	mustHistoryCLI(t, m, "restore", "--to", time.UnixMilli(before.Timestamp).UTC().Format(time.RFC3339Nano), "app.db")
	// The mount applies the CLI's commit as it does any other host's.
	eventuallySQL(t, "app.db after undoing the restore", app, ".dump", latest)

	// Fork: an independent copy of a past version.
	mustHistoryCLI(t, m, "fork", "--at", fmt.Sprint(txids[7]), "app.db", "sub/fork.db")
	fork := m.Path("sub/fork.db")
	eventuallySQL(t, "fork.db", fork, ".dump", dumps[txids[7]])
	mustSQL(t, fork, "insert into t(v) values ('only in the fork');")
	mustSQL(t, app, "insert into t(v) values ('only in app');")
	if got := mustSQL(t, fork, "select count(*) from t where v like 'only in%';"); strings.TrimSpace(got) != "1" {
		t.Fatalf("fork sees %s rows of either", got)
	}
	if got := mustSQL(t, app, "select v from t where v like 'only in%';"); strings.TrimSpace(got) != "only in app" {
		t.Fatalf("app sees %q", got)
	}

	// Bad input: a clear error, nothing changed.
	head := headOf(t, m, "app.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "--to", "2026-12-01T10:00:00", "app.db"}, "has no zone"},
		{[]string{"restore", "--to", "12:00", "app.db"}, "RFC 3339"},
		{[]string{"restore", "--to", "99999999", "app.db"}, "after the last commit"},
		{[]string{"restore", "app.db"}, "--to VERSION is required"},
		{[]string{"restore", "--to", "1", "nosuch.db"}, "not found"},
		{[]string{"fork", "app.db", "sub/fork.db"}, "sub/fork.db exists"},
		{[]string{"fork", "--at", "x1", "app.db", "new.db"}, "want a txid"},
		{[]string{"log", "--since", "yesterday", "app.db"}, "want a txid"},
	} {
		out, err := historyCLI(t, m, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("kvfs %s: %v %q, want an error saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
	if h := headOf(t, m, "app.db"); h.TXID != head.TXID {
		t.Fatalf("the bad commands moved app.db from txid %d to %d", head.TXID, h.TXID)
	}
	if slices.Contains(m.databases(t), "new.db") {
		t.Fatalf("a failed fork left new.db")
	}
}

// TestHistoryWAL: a version of a WAL-mode database opens read-only with the
// stock CLI (no -wal or -shm can be made for it).
func TestHistoryWAL(t *testing.T) {
	m := mountKVFS(t, mountOpts{History: time.Hour})
	w := m.Path("w.db")
	mustSQL(t, w, "pragma journal_mode=wal; create table t(x); insert into t values (1);")
	mustSQL(t, w, "insert into t values (2);")
	mid := headOf(t, m, "w.db").TXID
	want := mustSQL(t, w, "select group_concat(x) from t;")
	mustSQL(t, w, "insert into t values (3); pragma wal_checkpoint(truncate);")
	got := mustSQL(t, fmt.Sprintf("%s@%d", w, mid), "select group_concat(x) from t; pragma integrity_check;")
	if got != want+"ok\n" {
		t.Fatalf("w.db@%d: %q, want %q", mid, got, want+"ok\n")
	}
}

// TestRestoreReadersSeeWholeVersions: while another process's kvfs restore
// replaces every page of a database again and again (two versions,
// alternately), readers on the mount see one version or the other whole,
// never a mix and never a malformed file.
func TestRestoreReadersSeeWholeVersions(t *testing.T) {
	m := mountKVFS(t, mountOpts{History: time.Hour})
	app := m.Path("app.db")
	mustSQL(t, app, bigTable)
	var versions []uint64
	for v := 1; v <= 2; v++ {
		mustSQL(t, app, fmt.Sprintf("update t set v = %d, pad = randomblob(500);", v))
		versions = append(versions, headOf(t, m, "app.db").TXID)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	seen := map[string]int{}
	for r := range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := runSQL(app, ".timeout 10000\nselect count(*), min(v), max(v) from t; pragma quick_check;")
				got := strings.Join(strings.Fields(out), " ")
				mu.Lock()
				switch {
				case err == nil && (got == "4000|1|1 ok" || got == "4000|2|2 ok"):
					seen[got]++
				default:
					bad = append(bad, fmt.Sprintf("reader %d: %q (%v)", r, got, err))
				}
				mu.Unlock()
			}
		})
	}
	for i := range 12 {
		to := versions[i%2]
		mustHistoryCLI(t, m, "restore", "--to", fmt.Sprint(to), "app.db")
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("readers saw %v", seen)
	if len(bad) > 0 {
		t.Fatalf("%d reads saw neither version whole, first: %s", len(bad), bad[0])
	}
	if len(seen) < 2 {
		t.Fatalf("readers saw only %v across 12 restores", seen)
	}
}
