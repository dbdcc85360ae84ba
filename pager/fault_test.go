package pager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
)

// faultStore wraps a Store and fails one transaction: failAt (1-based)
// fails before sending, landAt lets the transaction land and then reports
// etcd unavailable, as a lost answer would. With flipKey set, the first
// transaction writing that key is the one (failed, or landed with its
// answer lost when flipLand).
type faultStore struct {
	Store
	mu       sync.Mutex
	n        int
	failAt   int
	landAt   int
	flipKey  string
	flipLand bool
}

func (f *faultStore) Txn(ctx context.Context, cmps []etcdstore.Cmp, ops []etcdstore.Op) (etcdstore.TxnResult, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	if f.flipKey != "" && slices.ContainsFunc(ops, func(o etcdstore.Op) bool { return o.Key() == f.flipKey }) {
		if f.flipLand {
			f.landAt = n
		} else {
			f.failAt = n
		}
		f.flipKey = ""
	}
	f.mu.Unlock()
	injected := &etcdstore.UnavailableError{Op: "txn", Err: fmt.Errorf("injected fault at txn %d", n)}
	if n == f.failAt {
		return etcdstore.TxnResult{}, injected
	}
	res, err := f.Store.Txn(ctx, cmps, ops)
	if err == nil && n == f.landAt {
		return etcdstore.TxnResult{}, injected
	}
	return res, err
}

// TestCommitFaults fails, or loses the answer of, each transaction of a
// staged commit in turn: the head moves completely or not at all, and only
// orphans (txids above the head) remain, which takeover removes.
func TestCommitFaults(t *testing.T) {
	const pages = 700 // ~2.8 MiB of random pages: 2 staged batches and a flip
	rng := rand.New(rand.NewSource(3))
	content := make([][]byte, pages+1)
	content[1] = sqlitePage1(4096, 4)
	for p := 2; p <= pages; p++ {
		content[p] = make([]byte, 4096)
		rng.Read(content[p])
	}
	for _, mode := range []string{"fail", "land"} {
		for n := 1; n <= 3; n++ {
			t.Run(fmt.Sprintf("%s-txn-%d", mode, n), func(t *testing.T) {
				e := newEnv(t, Options{})
				ctx := ctxT(t)
				fs := &faultStore{Store: e.store}
				p := e.pager(Options{Store: fs, ResolveTimeout: 5e9})
				if err := p.Create(ctx, "x.db"); err != nil {
					t.Fatal(err)
				}
				db, err := p.Open(ctx, "x.db")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				f := e.fence("x.db", 1)
				if err := db.Acquire(ctx, f); err != nil {
					t.Fatal(err)
				}
				writeDB(t, db, 4096, 10, 1)
				before := db.Head()
				pinned, _ := db.Snapshot(ctx)
				defer pinned.Close()

				fs.mu.Lock()
				base := fs.n
				if mode == "fail" {
					fs.failAt = base + n
				} else {
					fs.landAt = base + n
				}
				fs.mu.Unlock()
				tx, _ := db.Begin(ctx)
				for q := 1; q <= pages; q++ {
					tx.WritePage(ctx, uint32(q), content[q])
				}
				info, err := tx.Commit(ctx)
				t.Logf("commit: %+v, %v", info, err)
				if fs.n < base+3 && err == nil {
					t.Fatalf("commit used %d txns, want 3 (2 batches and a flip)", fs.n-base)
				}

				// Ground truth from another host.
				other, oerr := e.pager(Options{}).Open(ctx, "x.db")
				if oerr != nil {
					t.Fatal(oerr)
				}
				defer other.Close()
				h := other.Head()
				switch {
				case err == nil:
					if h.TXID != before.TXID+1 || h.Pages != pages || h != db.Head() {
						t.Fatalf("commit succeeded but head is %+v (writer %+v)", h, db.Head())
					}
					checkPages(t, other, content[1:])
				case h == before:
					if !errors.Is(err, etcdstore.ErrUnavailable) {
						t.Fatalf("failed commit error %v, want ErrUnavailable", err)
					}
					old := [][]byte{sqlitePage1(4096, 1)}
					for q := uint32(2); q <= 10; q++ {
						old = append(old, pageOf(4096, q, 1))
					}
					checkPages(t, other, old)
				default:
					t.Fatalf("commit error %v and head %+v: neither old nor new", err, h)
				}
				// The pinned reader saw the old state throughout.
				buf := make([]byte, 4096)
				if perr := pinned.ReadPage(ctx, 5, buf); perr != nil || !bytes.Equal(buf, pageOf(4096, 5, 1)) {
					t.Fatalf("pinned reader: %v", perr)
				}
				// Takeover leaves no orphans and exact usage.
				if aerr := other.Acquire(ctx, e.fence("x.db", 2)); aerr != nil {
					t.Fatal(aerr)
				}
				for _, prefix := range []string{e.keys.Deltas("x.db"), e.keys.PIDXs("x.db")} {
					e.store.Range(ctx, prefix, etcdstore.RangeOptions{KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
						if info, _ := e.keys.Parse(kv.Key); info.TXID > other.Head().TXID {
							t.Errorf("orphan %s left after takeover", kv.Key)
						}
						return nil
					})
				}
				if got := usageInEtcd(t, e, "x.db"); got != other.Head().UsedBytes {
					t.Fatalf("usage %d, recomputed %d", other.Head().UsedBytes, got)
				}
			})
		}
	}
}

// checkPages reads the latest snapshot of db and compares pages 1..len(want).
func checkPages(t *testing.T, db *Database, want [][]byte) {
	t.Helper()
	ctx := ctxT(t)
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Head().Pages != uint32(len(want)) {
		t.Fatalf("%d pages, want %d", snap.Head().Pages, len(want))
	}
	buf := make([]byte, snap.Head().PageSize)
	for i, w := range want {
		if err := snap.ReadPage(ctx, uint32(i+1), buf); err != nil || !bytes.Equal(buf, w) {
			t.Fatalf("page %d: %v (differs: %v)", i+1, err, !bytes.Equal(buf, w))
		}
	}
}
