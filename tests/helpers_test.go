package tests

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	kvfuse "github.com/kvfs/kvfs/fuse"
	"github.com/kvfs/kvfs/pager"
)

// sharedEtcd serves the tests that do not stop their etcd.
var sharedEtcd *etcdstore.Embedded

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvfs-e2e-etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedEtcd, err = etcdstore.StartEmbedded(context.Background(), etcdstore.EmbedConfig{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start embedded etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	sharedEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireFUSE skips the test when a real mount is impossible here.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: load the fuse module (modprobe fuse) to run mount tests")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("not root and no fusermount3: run as root or apt-get install fuse3")
		}
	}
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("no sqlite3 CLI: apt-get install sqlite3 (make test does)")
	}
}

// mountOpts configure one mount ("host").
type mountOpts struct {
	Prefix        string // key prefix; "" = a fresh one
	Etcd          etcdstore.Config
	Quota         pager.Quota
	Owner         string
	HandoffWait   time.Duration
	ForwardLocks  bool
	ReadOnly      bool
	NoPassthrough bool
	JournalMemMax int64
	AllowOther    bool
	SpaceQuota    int64         // etcd quota statfs reports (default 2 GiB, etcd's)
	EntryTimeout  time.Duration // the kernel's cache time of names, present and absent (default 1 s)
	PlainMaxBytes int64         // largest plain file (default pager.DefaultPlainMaxBytes)
	History       time.Duration // history retention (pager.Options.History; 0: none)
}

// mount is one kvfs mount, unmounted in t.Cleanup.
type mount struct {
	t      *testing.T
	Dir    string
	Prefix string
	Store  *etcdstore.Store
	Pager  *pager.Pager
	Fence  *fence.Manager
	FS     *kvfuse.FS
	Spool  string // the mount's spool directory
	done   bool
}

var seq atomic.Int64

func mountKVFS(t *testing.T, o mountOpts) *mount {
	t.Helper()
	requireFUSE(t)
	n := seq.Add(1)
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("/e2e/%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), n)
	}
	if o.Etcd.Endpoints == nil {
		o.Etcd = sharedEtcd.Config()
	}
	if o.Owner == "" {
		o.Owner = fmt.Sprintf("host-%d", n)
	}
	ctx := context.Background()
	store, err := etcdstore.Open(ctx, o.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	keys := etcdstore.NewKeys(o.Prefix)
	spool := t.TempDir()
	p, err := pager.New(pager.Options{Store: store, Keys: keys, SpoolDir: spool, Quota: o.Quota, PlainMaxBytes: o.PlainMaxBytes, ResolveTimeout: 3 * time.Second, History: o.History})
	if err != nil {
		t.Fatal(err)
	}
	fm := fence.NewManager(store, keys, fence.Options{Owner: o.Owner, TTL: 3 * time.Second})
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if o.SpaceQuota == 0 {
		o.SpaceQuota = 2 << 30
	}
	space := func(ctx context.Context) (int64, int64, error) {
		used, err := store.BackendSize(ctx)
		return o.SpaceQuota, used, err
	}
	fsys, err := kvfuse.Mount(dir, kvfuse.Options{Pager: p, Space: space, Fence: fm, SpoolDir: spool, HandoffWait: o.HandoffWait, ForwardLocks: o.ForwardLocks, NoPassthrough: o.NoPassthrough, JournalMemMax: o.JournalMemMax, ReadOnly: o.ReadOnly, AllowOther: o.AllowOther, EntryTimeout: o.EntryTimeout, NegativeTimeout: o.EntryTimeout, Debug: testing.Verbose() && os.Getenv("KVFS_FUSE_DEBUG") != "", Logger: testLogger(o.Owner)})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	m := &mount{t: t, Dir: dir, Prefix: o.Prefix, Store: store, Pager: p, Fence: fm, FS: fsys, Spool: spool}
	t.Cleanup(m.Unmount)
	return m
}

// id returns the id of the database at path: its etcd keys and write
// lease are under it.
func (m *mount) id(t *testing.T, path string) string {
	t.Helper()
	_, _, e, err := m.Pager.Resolve(context.Background(), path)
	if err != nil {
		t.Fatalf("resolve %s: %v", path, err)
	}
	return e.ID
}

// headKey returns the etcd key of the head of the database at path.
func (m *mount) headKey(t *testing.T, path string) string {
	t.Helper()
	return etcdstore.NewKeys(m.Prefix).Head(m.id(t, path))
}

// databases returns the paths of every database in etcd.
func (m *mount) databases(t *testing.T) []string {
	t.Helper()
	dbs, err := m.Pager.Walk(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, d := range dbs {
		paths = append(paths, d.Path)
	}
	return paths
}

// Path returns the path of name in the mount.
func (m *mount) Path(name string) string { return filepath.Join(m.Dir, name) }

// Unmount checks every database's integrity, then unmounts and releases
// everything. It is idempotent.
func (m *mount) Unmount() {
	if m.done {
		return
	}
	m.done = true
	if !m.t.Failed() {
		entries, _ := os.ReadDir(m.Dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".db") && e.Type().IsRegular() {
				if out, err := runSQL(m.Path(e.Name()), "pragma integrity_check;"); err != nil || strings.TrimSpace(out) != "ok" {
					m.t.Errorf("integrity_check %s at unmount: %q %v", e.Name(), out, err)
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.FS.Unmount(ctx); err != nil {
		m.t.Errorf("unmount: %v", err)
	}
	m.Fence.Close(ctx)
	m.Pager.Close()
	m.Store.Close()
}

// sqlHangAfter is how long runSQL lets the sqlite3 CLI run: far beyond
// any statement of the tests, so only a hang reaches it.
const sqlHangAfter = 3 * time.Minute

// seedOf returns the seed of a randomised test: env's value when set (to
// replay a run), else a new one, logged with how to replay it.
func seedOf(t *testing.T, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: %s=%d go test -count=1 -run '^%s$' ./tests)", seed, env, seed, t.Name())
	return seed
}

// runSQL runs sql through the stock sqlite3 CLI on path. A CLI still
// running after sqlHangAfter is killed and reported, with where kvfs's
// goroutines wait (hangReport), instead of stalling the package until go
// test's timeout.
func runSQL(path, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sqlHangAfter)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sqlite3", "-batch", "-bail", path)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("sqlite3 %s hung (killed after %v); kvfs goroutines:\n%s", filepath.Base(path), sqlHangAfter, hangReport())
	}
	if err != nil {
		return string(out), fmt.Errorf("sqlite3 %s: %w: %s", filepath.Base(path), err, out)
	}
	return string(out), nil
}

// hangReport summarises the goroutines of this process that wait inside
// kvfs: a line each, "HANG" first so CI's filtered output keeps it, with
// the wait state and kvfs's frames innermost first.
func hangReport() string {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var b strings.Builder
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		var frames []string
		for _, l := range lines[1:] {
			if i := strings.Index(l, "github.com/kvfs/kvfs/"); i >= 0 && !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "created by") {
				fn := l[i+len("github.com/kvfs/kvfs/"):]
				if j := strings.LastIndex(fn, "("); j > 0 {
					fn = fn[:j]
				}
				frames = append(frames, fn)
			}
		}
		if len(frames) == 0 || strings.Contains(lines[0], "[running]") {
			continue
		}
		if len(frames) > 6 {
			frames = frames[:6]
		}
		fmt.Fprintf(&b, "HANG %s %s\n", strings.TrimSuffix(lines[0], ":"), strings.Join(frames, " < "))
		if n++; n == 80 {
			b.WriteString("HANG (more left out)\n")
			break
		}
	}
	return b.String()
}

func mustSQL(t *testing.T, path, sql string) string {
	t.Helper()
	out, err := runSQL(path, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testLogger logs the mount's errors to standard error when KVFS_TEST_LOG
// is set (debug, info, warn or error), and discards them otherwise.
func testLogger(host string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("KVFS_TEST_LOG"))); err != nil {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("host", host)
}
