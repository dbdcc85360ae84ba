package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// runMainEnv makes the test binary run kvfs's main instead of the tests, so
// process tests (signals, sd_notify) exercise the real command without a
// separate build.
const runMainEnv = "KVFS_TEST_RUN_MAIN"

// sharedEtcd serves the tests that use --etcd; each test takes its own
// prefix.
var sharedEtcd *etcdstore.Embedded

func TestMain(m *testing.M) {
	defaultConfigPath = "/nonexistent/kvfs-test/kvfs.yaml"
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	dir, err := os.MkdirTemp("", "kvfs-cmd-etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedEtcd, err = etcdstore.StartEmbedded(context.Background(), etcdstore.EmbedConfig{DataDir: dir, UnsafeNoFsync: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start embedded etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	sharedEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCmd runs kvfs with args and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

var prefixSeq atomic.Int64

// testStore is a fresh key prefix on the shared etcd.
type testStore struct {
	t      *testing.T
	prefix string
}

func newTestStore(t *testing.T) *testStore {
	t.Helper()
	return &testStore{t: t, prefix: fmt.Sprintf("/cmdtest/%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))}
}

// args returns the flags that reach this store.
func (s *testStore) args() []string {
	return []string{"--etcd", strings.Join(sharedEtcd.Endpoints(), ","), "--prefix", s.prefix}
}

// kvfs runs a command against the store; it fails the test unless the exit
// code is want.
func (s *testStore) kvfs(want int, cmd string, args ...string) (string, string) {
	s.t.Helper()
	code, out, errOut := runCmd(context.Background(), append(append([]string{cmd}, args...), s.args()...)...)
	if code != want {
		s.t.Fatalf("kvfs %s %q: exit %d, want %d\nstdout: %s\nstderr: %s", cmd, args, code, want, out, errOut)
	}
	return out, errOut
}

// open returns a store connection for direct inspection.
func (s *testStore) open() *etcdstore.Store {
	s.t.Helper()
	st, err := etcdstore.Open(context.Background(), sharedEtcd.Config())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { st.Close() })
	return st
}

// id returns the id of the database at path: the name its etcd keys and
// write lease are under.
func (s *testStore) id(path string) string {
	s.t.Helper()
	p, err := pager.New(pager.Options{Store: s.open(), Keys: etcdstore.NewKeys(s.prefix), SpoolDir: s.t.TempDir()})
	if err != nil {
		s.t.Fatal(err)
	}
	defer p.Close()
	_, _, e, err := p.Resolve(context.Background(), path)
	if err != nil {
		s.t.Fatal(err)
	}
	return e.ID
}

// requireSQLite skips the test without the sqlite3 CLI.
func requireSQLite(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("no sqlite3 CLI: apt-get install sqlite3 (make deps does)")
	}
}

// sqlite runs sql through the sqlite3 CLI on path.
func sqlite(t *testing.T, path, sql string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", "-bail", path)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// makeDB creates a SQLite database file with rows rows in a few tables,
// big enough to span many pages.
func makeDB(t *testing.T, rows int) string {
	t.Helper()
	requireSQLite(t)
	path := filepath.Join(t.TempDir(), "src.db")
	sqlite(t, path, fmt.Sprintf(`
create table t(id integer primary key, name text, payload blob);
create index t_name on t(name);
with recursive n(i) as (select 1 union all select i+1 from n where i < %d)
insert into t select i, 'row-' || i, randomblob(200) from n;
create table kv(k text primary key, v text);
insert into kv values ('hello', 'world');
`, rows))
	return path
}

// checkIntegrity runs PRAGMA integrity_check on path.
func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	if out := strings.TrimSpace(sqlite(t, path, "pragma integrity_check;")); out != "ok" {
		t.Fatalf("integrity_check %s: %s", path, out)
	}
}

func TestUsage(t *testing.T) {
	code, out, _ := runCmd(context.Background(), "--help")
	if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "version") {
		t.Fatalf("--help: %d %q", code, out)
	}
	for _, c := range commands() {
		code, _, errOut := runCmd(context.Background(), c.name, "--help")
		if code != 0 || !strings.Contains(errOut, "Example:") {
			t.Errorf("%s --help: exit %d, no example: %q", c.name, code, errOut)
		}
	}
	code, _, errOut := runCmd(context.Background(), "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	code, _, errOut = runCmd(context.Background(), "version", "--bogus")
	if code != 2 || !strings.Contains(errOut, "flag provided but not defined") {
		t.Fatalf("bad flag: %d %q", code, errOut)
	}
}
