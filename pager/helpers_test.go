package pager

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// testEtcd is the embedded etcd shared by this package's tests; each test
// uses its own key prefix.
var testEtcd *etcdstore.Embedded

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvfs-pager-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// 8 GiB: the commit benchmarks at 100 pages a commit write gigabytes
	// over a few seconds and filled etcd's default 2 GiB.
	testEtcd, err = etcdstore.StartEmbedded(context.Background(), etcdstore.EmbedConfig{DataDir: dir, QuotaBackendBytes: 8 << 30})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start embedded etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	testEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

var prefixSeq atomic.Int64

// env is one test's view: a store, a key prefix and a pager on it.
type env struct {
	t     *testing.T
	store *etcdstore.Store
	keys  etcdstore.Keys
	p     *Pager
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	s, err := etcdstore.Open(context.Background(), testEtcd.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	keys := etcdstore.NewKeys(fmt.Sprintf("/t/%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1)))
	e := &env{t: t, store: s, keys: keys}
	e.p = e.pager(opts)
	return e
}

// pager returns another Pager on the same prefix: another host.
func (e *env) pager(opts Options) *Pager {
	if opts.Store == nil {
		opts.Store = e.store
	}
	opts.Keys = e.keys
	if opts.SpoolDir == "" {
		opts.SpoolDir = e.t.TempDir()
	}
	p, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Close() })
	return p
}

// testFence is a Fence over a plain key: it holds while the key's value is
// its own. steal overwrites the key, as another host taking over would.
type testFence struct {
	e   *env
	key string
	gen uint64
}

func (e *env) fence(db string, gen uint64) *testFence {
	f := &testFence{e: e, key: e.keys.Fence(db), gen: gen}
	e.put(f.key, f.value())
	return f
}

func (f *testFence) value() []byte { return []byte(fmt.Sprintf("gen-%d", f.gen)) }

func (f *testFence) Cmps() ([]etcdstore.Cmp, error) {
	return []etcdstore.Cmp{etcdstore.CmpValue(f.key, f.value())}, nil
}

func (f *testFence) Generation() uint64 { return f.gen }

func (f *testFence) steal() { f.e.put(f.key, []byte(fmt.Sprintf("gen-%d", f.gen+1))) }

func (e *env) put(key string, v []byte) {
	e.t.Helper()
	if _, err := e.store.Txn(context.Background(), nil, []etcdstore.Op{etcdstore.OpPut(key, v)}); err != nil {
		e.t.Fatal(err)
	}
}

// create creates db and opens it as writer under a fresh fence.
func (e *env) create(name string) (*Database, *testFence) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.p.Create(ctx, name); err != nil {
		e.t.Fatal(err)
	}
	db, err := e.p.Open(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	f := e.fence(name, 1)
	if err := db.Acquire(ctx, f); err != nil {
		e.t.Fatal(err)
	}
	return db, f
}

// sqlitePage1 returns a page 1 with a SQLite header for page size ps.
func sqlitePage1(ps int, fill byte) []byte {
	b := make([]byte, ps)
	for i := range b {
		b[i] = fill
	}
	copy(b, sqliteMagic)
	v := ps
	if ps == 65536 {
		v = 1
	}
	b[16], b[17] = byte(v>>8), byte(v)
	return b
}

// pageOf returns a page of ps bytes filled from pgno and a version byte.
func pageOf(ps int, pgno uint32, version byte) []byte {
	b := make([]byte, ps)
	for i := range b {
		b[i] = byte(int(pgno)*7+i/64) ^ version
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeDB writes pages 1..n (page 1 a header) in one transaction and commits.
func writeDB(t *testing.T, db *Database, ps, n int, version byte) CommitInfo {
	t.Helper()
	ctx := ctxT(t)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.WritePage(ctx, 1, sqlitePage1(ps, version)); err != nil {
		t.Fatal(err)
	}
	for p := 2; p <= n; p++ {
		if err := tx.WritePage(ctx, uint32(p), pageOf(ps, uint32(p), version)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := tx.Commit(ctx)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return info
}
