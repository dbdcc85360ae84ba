package pager

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
)

// multiEnv is n databases of one Pager, each written once (10 pages of
// version 1) and open as writer under its own fence.
type multiEnv struct {
	e      *env
	p      *Pager
	dbs    []*Database
	fences []*testFence
	names  []string
}

func newMultiEnv(t *testing.T, n int, fs *faultStore) *multiEnv {
	t.Helper()
	e := newEnv(t, Options{})
	opts := Options{}
	if fs != nil {
		fs.Store = e.store
		opts = Options{Store: fs, ResolveTimeout: 5e9}
	}
	m := &multiEnv{e: e, p: e.pager(opts)}
	ctx := ctxT(t)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d.db", i)
		if err := m.p.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		db, err := m.p.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f := e.fence(name, 1)
		if err := db.Acquire(ctx, f); err != nil {
			t.Fatal(err)
		}
		writeDB(t, db, 4096, 10, 1)
		m.dbs, m.fences, m.names = append(m.dbs, db), append(m.fences, f), append(m.names, name)
	}
	return m
}

// begin opens a transaction on every database writing pages pages of
// version v (page 1 a header): random pages, so that many of them stage.
func (m *multiEnv) begin(t *testing.T, pages int, v byte) []*Tx {
	t.Helper()
	ctx := ctxT(t)
	rng := rand.New(rand.NewSource(int64(v)))
	var txs []*Tx
	for _, db := range m.dbs {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx.WritePage(ctx, 1, sqlitePage1(4096, v))
		for q := 2; q <= pages; q++ {
			page := pageOf(4096, uint32(q), v)
			if pages > 100 {
				rng.Read(page[:3000])
			}
			tx.WritePage(ctx, uint32(q), page)
		}
		txs = append(txs, tx)
	}
	return txs
}

// heads reads every database's head from etcd through a Pager of another
// host.
func (m *multiEnv) heads(t *testing.T) []Head {
	t.Helper()
	ctx := ctxT(t)
	other := m.e.pager(Options{})
	var hs []Head
	for _, name := range m.names {
		db, err := other.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, db.Head())
		db.Close()
	}
	return hs
}

// TestCommitAll commits 2 and 5 databases together, small (one etcd
// transaction for all) and large (staged deltas, one flip): every head
// moves at the same etcd revision, and the pages read back.
func TestCommitAll(t *testing.T) {
	for _, tc := range []struct {
		n, pages int
		staged   bool
	}{{2, 5, false}, {5, 5, false}, {2, 600, true}, {5, 300, true}} {
		t.Run(fmt.Sprintf("%d-dbs-%d-pages", tc.n, tc.pages), func(t *testing.T) {
			m := newMultiEnv(t, tc.n, nil)
			ctx := ctxT(t)
			var hooked []int
			if tc.staged {
				// Before the flip no head has moved on any host.
				testHookStaged = func(i int) {
					hooked = append(hooked, i)
					for j, h := range m.heads(t) {
						if h.TXID != 1 {
							t.Errorf("staged batch %d: %s already at txid %d", i, m.names[j], h.TXID)
						}
					}
				}
				defer func() { testHookStaged = nil }()
			}
			infos, err := CommitAll(ctx, m.begin(t, tc.pages, 2)...)
			testHookStaged = nil
			if err != nil {
				t.Fatal(err)
			}
			if tc.staged && len(hooked) < 2 {
				t.Fatalf("hook ran %v: the commit did not stage", hooked)
			}
			for i, info := range infos {
				if info.Head.TXID != 2 || info.Staged != tc.staged || (!tc.staged && info.Txns != 1) {
					t.Errorf("%s: %+v", m.names[i], info)
				}
			}
			var rev int64
			for i, name := range m.names {
				kv, _, err := m.e.store.Get(ctx, m.e.keys.Head(name), 0)
				if err != nil {
					t.Fatal(err)
				}
				if i > 0 && kv.ModRevision != rev {
					t.Errorf("%s's head at revision %d, %s's at %d: not one transaction", name, kv.ModRevision, m.names[0], rev)
				}
				rev = kv.ModRevision
			}
			other := m.e.pager(Options{})
			for _, name := range m.names {
				db, err := other.Open(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				snap, err := db.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4096)
				if err := snap.ReadPage(ctx, 1, buf); err != nil || buf[99] != 2 {
					t.Errorf("%s page 1: %v, fill %d", name, err, buf[99])
				}
				snap.Close()
				if db.Head().Pages != uint32(max(tc.pages, 10)) {
					t.Errorf("%s: %d pages", name, db.Head().Pages)
				}
				db.Close()
			}
		})
	}
}

// TestCommitAllFaults refuses, or loses the answer of, each etcd
// transaction of a multi-database commit in turn, and takes one database's
// lease away: either every database moves or none does.
func TestCommitAllFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pages  int
		failAt int // 1-based txn of the commit that fails; -1: the flip
		landAt int // 1-based txn whose answer is lost after it landed; -1: the flip
		steal  int // the database whose fence is stolen before the commit, +1
	}{
		{"small-refused", 5, 1, 0, 0},
		{"small-lost-answer", 5, 0, 1, 0},
		{"staged-first-batch-refused", 400, 1, 0, 0},
		{"staged-flip-refused", 400, -1, 0, 0},
		{"staged-flip-lost-answer", 400, 0, -1, 0},
		{"small-fenced", 5, 0, 0, 2},
		{"staged-fenced", 400, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &faultStore{}
			m := newMultiEnv(t, 3, fs)
			ctx := ctxT(t)
			before := m.heads(t)
			txs := m.begin(t, tc.pages, 3)
			fs.mu.Lock()
			base := fs.n
			switch {
			case tc.failAt > 0:
				fs.failAt = base + tc.failAt
			case tc.landAt > 0:
				fs.landAt = base + tc.landAt
			case tc.failAt < 0 || tc.landAt < 0:
				fs.flipKey, fs.flipLand = m.e.keys.Head(m.names[0]), tc.landAt < 0
			}
			fs.mu.Unlock()
			if tc.steal > 0 {
				m.fences[tc.steal-1].steal()
			}
			_, err := CommitAll(ctx, txs...)
			fs.mu.Lock()
			used := fs.n - base
			fs.mu.Unlock()
			after := m.heads(t)
			t.Logf("commit: %v after %d etcd transactions", err, used)
			moved := 0
			for i := range after {
				if after[i] != before[i] {
					moved++
				}
			}
			switch {
			case moved == len(after):
				if err != nil {
					t.Fatalf("every head moved, but the commit failed: %v", err)
				}
			case moved == 0:
				if err == nil {
					t.Fatal("the commit succeeded, but no head moved")
				}
				if tc.steal > 0 && !errors.Is(err, ErrFenced) {
					t.Fatalf("error %v, want ErrFenced", err)
				}
				if tc.steal == 0 && !errors.Is(err, etcdstore.ErrUnavailable) {
					t.Fatalf("error %v, want ErrUnavailable", err)
				}
			default:
				t.Fatalf("%d of %d heads moved (err %v): not atomic", moved, len(after), err)
			}
			if tc.landAt != 0 && err != nil {
				t.Fatalf("the flip landed but the commit reported %v", err)
			}
			if tc.failAt < 0 && used < 2 {
				t.Fatalf("%d etcd transactions: the commit did not stage", used)
			}
			for _, tx := range txs {
				if _, err := tx.Commit(ctx); !errors.Is(err, ErrTxDone) {
					t.Fatalf("transaction not finished: %v", err)
				}
			}
			// The databases whose fence holds commit again.
			if tc.steal == 0 {
				if _, err := CommitAll(ctx, m.begin(t, 5, 4)...); err != nil {
					t.Fatalf("next commit: %v", err)
				}
			}
		})
	}
}

// TestCommitAllRefuses: two transactions of one database, and nothing to
// commit.
func TestCommitAllRefuses(t *testing.T) {
	m := newMultiEnv(t, 1, nil)
	ctx := ctxT(t)
	tx, err := m.dbs[0].Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CommitAll(ctx, tx, tx); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("same transaction twice: %v", err)
	}
	infos, err := CommitAll(ctx, tx)
	if err != nil || infos[0].Head != m.dbs[0].Head() {
		t.Fatalf("empty transaction: %+v %v", infos, err)
	}
	if infos, err := CommitAll(context.Background()); err != nil || len(infos) != 0 {
		t.Fatalf("no transaction: %v %v", infos, err)
	}
}

// TestGroupNames: a head's group survives JSON with names of any bytes,
// and heads of an older kvfs (names joined by '\n') still read.
func TestGroupNames(t *testing.T) {
	names := []string{"a.db", "b\xff\n%2F.db", "c d", "é\x01"}
	h := Head{TXID: 3, PageSize: 4096, Pages: 1, Group: groupOf(names)}
	got, err := parseHead(h.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if g := got.GroupNames(); !slices.Equal(g, names) {
		t.Fatalf("group %q, want %q", g, names)
	}
	if g := (Head{Group: "x.db\ny.db"}).GroupNames(); !slices.Equal(g, []string{"x.db", "y.db"}) {
		t.Fatalf("legacy group %q", g)
	}
	if (Head{}).GroupNames() != nil {
		t.Fatal("a one-database commit has a group")
	}
}
