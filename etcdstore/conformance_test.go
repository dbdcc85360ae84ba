package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"
)

// server is one etcd under test, from whichever harness made it.
type server struct {
	cfg Config
	// stop makes the server unreachable (stopped, killed or frozen).
	stop func()
}

// serverOpts are what a conformance test may ask of a fresh server.
type serverOpts struct {
	Limits            Limits
	QuotaBackendBytes int64
}

// harness starts servers of one kind: embedded, separate process, cluster.
type harness struct {
	name  string
	start func(t *testing.T, o serverOpts) server
}

// openStore opens a Store on srv, closed in t.Cleanup.
func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runConformance runs the store conformance suite against servers from h.
// Most subtests share one server and use their own key prefix; tests that
// break the server get their own.
func runConformance(t *testing.T, h harness) {
	shared := h.start(t, serverOpts{})
	s := openStore(t, shared.cfg)
	tests := []struct {
		name string
		fn   func(t *testing.T, s *Store, prefix string)
	}{
		{"CompareSemantics", testCompareSemantics},
		{"PrefixEmpty", testPrefixEmpty},
		{"CompareFailureWritesNothing", testCompareFailureWritesNothing},
		{"LeaseCompare", testLeaseCompare},
		{"ClientSideLimits", testClientSideLimits},
		{"Chunked", testChunked},
		{"ChunkedCorrupt", testChunkedCorrupt},
		{"PinnedReads", testPinnedReads},
		{"RangePaging", testRangePaging},
		{"WatchOrder", testWatchOrder},
		{"Status", testStatus},
		{"Stats", testStats},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, s, fmt.Sprintf("/conf/%d-%s/", i, tc.name))
		})
	}
	// Subtests that need a server of their own.
	t.Run("ServerSideLimits", func(t *testing.T) { testServerSideLimits(t, h) })
	t.Run("NoSpace", func(t *testing.T) { testNoSpace(t, h) })
	t.Run("Compacted", func(t *testing.T) { testCompacted(t, h) })
	t.Run("Unreachable", func(t *testing.T) { testUnreachable(t, h) })
}

// testPrefixEmpty: CmpPrefixEmpty holds exactly while no key has the
// prefix (rmdir's compare), whatever keys sort next to it.
func testPrefixEmpty(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	dir := p + "d/"
	mustTxn(t, s, nil, OpPut(p+"d", []byte("beside")), OpPut(p+"d0/x", []byte("after")))
	mustTxn(t, s, []Cmp{CmpPrefixEmpty(dir)}, OpPut(p+"ok1", nil))
	mustTxn(t, s, nil, OpPut(dir+"a", nil), OpPut(dir+"b", nil))
	if _, err := s.Txn(ctx, []Cmp{CmpPrefixEmpty(dir)}, []Op{OpPut(p+"no", nil)}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("prefix with two keys: %v, want ErrCompareFailed", err)
	}
	mustTxn(t, s, nil, OpDelete(dir+"a"))
	if _, err := s.Txn(ctx, []Cmp{CmpPrefixEmpty(dir)}, []Op{OpPut(p+"no", nil)}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("prefix with one key: %v, want ErrCompareFailed", err)
	}
	mustTxn(t, s, nil, OpDelete(dir+"b"))
	mustTxn(t, s, []Cmp{CmpPrefixEmpty(dir)}, OpPut(p+"ok2", nil))
}

func mustTxn(t *testing.T, s *Store, cmps []Cmp, ops ...Op) TxnResult {
	t.Helper()
	res, err := s.Txn(ctxT(t), cmps, ops)
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	return res
}

func mustGet(t *testing.T, s *Store, key string, rev int64) []byte {
	t.Helper()
	kv, _, err := s.Get(ctxT(t), key, rev)
	if err != nil {
		t.Fatalf("get %s@%d: %v", key, rev, err)
	}
	return kv.Value
}

func testCompareSemantics(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	k := p + "k"
	r1 := mustTxn(t, s, []Cmp{CmpAbsent(k)}, OpPut(k, []byte("v1")))

	// Creating again fails and reports the current value.
	_, err := s.Txn(ctx, []Cmp{CmpAbsent(k)}, []Op{OpPut(k, []byte("v2"))})
	var ce *CompareError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("second create: got %v, want *CompareError", err)
	}
	if cur := ce.Current[k]; cur == nil || string(cur.Value) != "v1" || cur.ModRevision != r1.Revision {
		t.Fatalf("compare error current = %+v, want v1 at %d", cur, r1.Revision)
	}

	// Mod revision compare: right revision wins once, then is stale.
	r2 := mustTxn(t, s, []Cmp{CmpModRevision(k, r1.Revision)}, OpPut(k, []byte("v2")))
	if _, err := s.Txn(ctx, []Cmp{CmpModRevision(k, r1.Revision)}, []Op{OpPut(k, []byte("v3"))}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("stale mod revision: got %v, want ErrCompareFailed", err)
	}
	// Value compare.
	mustTxn(t, s, []Cmp{CmpValue(k, []byte("v2")), CmpModRevision(k, r2.Revision)}, OpPut(k, []byte("v3")))
	if _, err := s.Txn(ctx, []Cmp{CmpValue(k, []byte("v2"))}, []Op{OpPut(k, []byte("v4"))}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("stale value: got %v, want ErrCompareFailed", err)
	}
	// A compare on an absent key names it with a nil current value.
	other := p + "absent"
	_, err = s.Txn(ctx, []Cmp{CmpValue(other, []byte("x"))}, []Op{OpPut(k, []byte("v5"))})
	if !errors.As(err, &ce) {
		t.Fatalf("absent compare: got %v", err)
	}
	if cur, ok := ce.Current[other]; !ok || cur != nil {
		t.Fatalf("absent key in compare error: %v %v", cur, ok)
	}
	if got := mustGet(t, s, k, 0); string(got) != "v3" {
		t.Fatalf("final value %q, want v3", got)
	}
	// Delete with compare.
	kv, _, _ := s.Get(ctx, k, 0)
	mustTxn(t, s, []Cmp{CmpModRevision(k, kv.ModRevision)}, OpDelete(k))
	if _, _, err := s.Get(ctx, k, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
}

func testCompareFailureWritesNothing(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	fence := p + "fence"
	mustTxn(t, s, nil, OpPut(fence, []byte("gen-2")))
	var ops []Op
	for i := 0; i < 50; i++ {
		ops = append(ops, OpPut(fmt.Sprintf("%sdata/%03d", p, i), []byte("x")))
	}
	_, err := s.Txn(ctx, []Cmp{CmpValue(fence, []byte("gen-1"))}, ops)
	if !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("fenced txn: %v", err)
	}
	n, err := s.Count(ctx, p+"data/", 0)
	if err != nil || n != 0 {
		t.Fatalf("keys after failed txn: %d, %v; want 0", n, err)
	}
}

func testLeaseCompare(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	id, ttl, err := s.Grant(ctx, 5*time.Second)
	if err != nil || id == 0 || ttl < 5*time.Second {
		t.Fatalf("grant: %v %v %v", id, ttl, err)
	}
	k := p + "fence"
	mustTxn(t, s, []Cmp{CmpAbsent(k)}, OpPutLease(k, []byte("holder"), id))
	mustTxn(t, s, []Cmp{CmpLease(k, id)}, OpPut(p+"data", []byte("1")))
	if _, err := s.KeepAliveOnce(ctx, id); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	if left, err := s.TimeToLive(ctx, id); err != nil || left <= 0 {
		t.Fatalf("ttl: %v %v", left, err)
	}
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// The key went with the lease, and the lease compare is now false.
	if _, _, err := s.Get(ctx, k, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fence key after revoke: %v", err)
	}
	if _, err := s.Txn(ctx, []Cmp{CmpLease(k, id)}, []Op{OpPut(p+"data", []byte("2"))}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("lease compare after revoke: %v", err)
	}
	if _, err := s.KeepAliveOnce(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive after revoke: %v, want ErrLeaseNotFound", err)
	}
	if _, err := s.TimeToLive(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("ttl after revoke: %v, want ErrLeaseNotFound", err)
	}
	// A put attached to a dead lease is refused.
	if _, err := s.Txn(ctx, nil, []Op{OpPutLease(k, []byte("x"), id)}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with revoked lease: %v, want ErrLeaseNotFound", err)
	}
	if got := mustGet(t, s, p+"data", 0); string(got) != "1" {
		t.Fatalf("data = %q", got)
	}
}

func testClientSideLimits(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	l := s.Limits()
	var ops []Op
	for i := 0; i <= l.MaxTxnOps; i++ {
		ops = append(ops, OpPut(fmt.Sprintf("%sk%04d", p, i), []byte("x")))
	}
	_, err := s.Txn(ctx, nil, ops)
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%d ops: %v, want *LimitError", len(ops), err)
	}
	big := make([]byte, l.MaxRequestBytes)
	if _, err := s.Txn(ctx, nil, []Op{OpPut(p+"big", big)}); !errors.As(err, &le) {
		t.Fatalf("%d-byte put: %v, want *LimitError", len(big), err)
	}
	// Exactly at the limits it lands: MaxTxnOps ops, and a value of
	// ChunkSize bytes.
	mustTxn(t, s, nil, ops[:l.MaxTxnOps]...)
	v := make([]byte, l.ChunkSize(len(p+"big")))
	mustTxn(t, s, nil, OpPut(p+"big", v))
	// Batches splits what does not fit into transactions that do.
	batches, err := l.Batches(nil, ops)
	if err != nil || len(batches) != 2 {
		t.Fatalf("batches: %d, %v", len(batches), err)
	}
	for _, b := range batches {
		mustTxn(t, s, nil, b...)
	}
	if n, _ := s.Count(ctx, p+"k", 0); n != int64(len(ops)) {
		t.Fatalf("count %d, want %d", n, len(ops))
	}
}

// testServerSideLimits tells the client the limits are higher than the
// server's, so the server must refuse.
func testServerSideLimits(t *testing.T, h harness) {
	srv := h.start(t, serverOpts{})
	cfg := srv.cfg
	cfg.Limits = Limits{MaxRequestBytes: 8 << 20, MaxTxnOps: 1000}
	s := openStore(t, cfg)
	ctx := ctxT(t)
	_, err := s.Txn(ctx, nil, []Op{OpPut("/big", make([]byte, 2<<20))})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2 MiB put: %v, want ErrTooLarge from the server", err)
	}
	var ops []Op
	for i := 0; i < 200; i++ {
		ops = append(ops, OpPut(fmt.Sprintf("/k%04d", i), nil))
	}
	if _, err := s.Txn(ctx, nil, ops); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("200 ops: %v, want ErrTooLarge from the server", err)
	}
	if n, _ := s.Count(ctx, "/", 0); n != 0 {
		t.Fatalf("%d keys landed", n)
	}
}

func testChunked(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	for _, size := range []int{0, 1, 3 << 19, 20 << 20} {
		base := fmt.Sprintf("%sv%d", p, size)
		v := make([]byte, size)
		rng.Read(v)
		fence := p + "fence"
		if _, err := s.PutChunked(ctx, base, v, []Cmp{CmpAbsent(fence)}); err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		got, err := s.GetChunked(ctx, base, 0)
		if err != nil {
			t.Fatalf("get %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, v) {
			t.Fatalf("%d bytes: round trip differs (got %d bytes)", size, len(got))
		}
		// Any one chunk locates the rest: read the last chunk alone.
		info, _, err := s.GetChunk(ctx, base, 0, 0)
		if err != nil {
			t.Fatalf("get chunk 0 of %d bytes: %v", size, err)
		}
		last := info.Count - 1
		_, payload, err := s.GetChunk(ctx, base, last, 0)
		if err != nil || !bytes.Equal(payload, v[last*info.Size:]) {
			t.Fatalf("last chunk %d of %d bytes (chunk size %d): %v", last, size, info.Size, err)
		}
	}
	// Overwriting with a shorter value drops the old tail.
	base := fmt.Sprintf("%sv%d", p, 20<<20)
	if _, err := s.PutChunked(ctx, base, []byte("short"), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetChunked(ctx, base, 0); err != nil || string(got) != "short" {
		t.Fatalf("after overwrite: %q, %v", got, err)
	}
	if n, _ := s.Count(ctx, ChunkPrefix(base), 0); n != 1 {
		t.Fatalf("%d chunks after overwrite, want 1", n)
	}
	// A fenced chunked write lands nothing when the fence is wrong.
	fence := p + "fence"
	mustTxn(t, s, nil, OpPut(fence, []byte("taken")))
	if _, err := s.PutChunked(ctx, p+"fenced", make([]byte, 5<<20), []Cmp{CmpAbsent(fence)}); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("fenced put chunked: %v", err)
	}
	if _, err := s.GetChunked(ctx, p+"fenced", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fenced value: %v, want ErrNotFound", err)
	}
}

func testChunkedCorrupt(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	base := p + "v"
	v := bytes.Repeat([]byte("abcdefgh"), 1<<19) // 4 MiB: 3 chunks
	if _, err := s.PutChunked(ctx, base, v, nil); err != nil {
		t.Fatal(err)
	}
	mustTxn(t, s, nil, OpDelete(ChunkKey(base, 1)))
	if _, err := s.GetChunked(ctx, base, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing middle chunk: %v, want ErrCorrupt", err)
	}
	mustTxn(t, s, nil, OpPut(ChunkKey(base, 1), []byte{0, 0, 0, 9, 0, 0, 0, 16, 1}))
	if _, err := s.GetChunked(ctx, base, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("inconsistent count: %v, want ErrCorrupt", err)
	}
	mustTxn(t, s, nil, OpDelete(ChunkKey(base, 2)), OpPut(ChunkKey(base, 1), []byte{1}))
	if _, err := s.GetChunked(ctx, base, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short chunk: %v, want ErrCorrupt", err)
	}
	if _, err := s.GetChunked(ctx, p+"none", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent: %v, want ErrNotFound", err)
	}
}

func testPinnedReads(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	k := p + "head"
	r1 := mustTxn(t, s, nil, OpPut(k, []byte("old")), OpPut(p+"rows/1", []byte("a")))
	if _, err := s.PutChunked(ctx, p+"blob", []byte("old blob"), nil); err != nil {
		t.Fatal(err)
	}
	kv, pinned, err := s.Get(ctx, k, 0)
	if err != nil || string(kv.Value) != "old" {
		t.Fatalf("get: %v %v", kv, err)
	}
	mustTxn(t, s, nil, OpPut(k, []byte("new")), OpPut(p+"rows/2", []byte("b")), OpDelete(p+"rows/1"))
	if _, err := s.PutChunked(ctx, p+"blob", bytes.Repeat([]byte("n"), 3<<20), nil); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, k, r1.Revision); string(got) != "old" {
		t.Fatalf("get at %d: %q, want old", r1.Revision, got)
	}
	if got := mustGet(t, s, k, 0); string(got) != "new" {
		t.Fatalf("get latest: %q, want new", got)
	}
	var rows []string
	rev, err := s.Range(ctx, p+"rows/", RangeOptions{Rev: pinned}, func(kv *KeyValue) error {
		rows = append(rows, kv.Key+"="+string(kv.Value))
		return nil
	})
	if err != nil || rev != pinned || fmt.Sprint(rows) != fmt.Sprintf("[%srows/1=a]", p) {
		t.Fatalf("range at %d: %v rev %d err %v", pinned, rows, rev, err)
	}
	if got, err := s.GetChunked(ctx, p+"blob", pinned); err != nil || string(got) != "old blob" {
		t.Fatalf("chunked at %d: %q %v", pinned, got, err)
	}
	// Several keys in one round trip, pinned too; absent keys are nil.
	many, err := s.GetMany(ctx, []string{k, p + "rows/1", p + "rows/2", p + "none"}, pinned)
	if err != nil || len(many) != 4 || string(many[0].Value) != "old" || string(many[1].Value) != "a" || many[2] != nil || many[3] != nil {
		t.Fatalf("get many at %d: %v %v", pinned, many, err)
	}
	var keys []string
	for i := 0; i < 300; i++ {
		keys = append(keys, fmt.Sprintf("%smany/%d", p, i))
	}
	if many, err := s.GetMany(ctx, keys, 0); err != nil || len(many) != 300 {
		t.Fatalf("get 300 keys: %d %v", len(many), err)
	}
}

func testRangePaging(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	const n = 1000
	var ops []Op
	for i := 0; i < n; i++ {
		ops = append(ops, OpPut(fmt.Sprintf("%s%08x", p, i), []byte(fmt.Sprint(i))))
	}
	batches, err := s.Limits().Batches(nil, ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		mustTxn(t, s, nil, b...)
	}
	i := 0
	_, err = s.Range(ctx, p, RangeOptions{PageSize: 64}, func(kv *KeyValue) error {
		if want := fmt.Sprintf("%s%08x", p, i); kv.Key != want || string(kv.Value) != fmt.Sprint(i) {
			return fmt.Errorf("key %d: %s=%s", i, kv.Key, kv.Value)
		}
		if i == 10 {
			// A write during the scan is not seen: the scan is pinned.
			if _, err := s.Txn(ctx, nil, []Op{OpPut(fmt.Sprintf("%s%08x", p, n+5), nil)}); err != nil {
				return err
			}
		}
		i++
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("range: %d keys, %v; want %d", i, err, n)
	}
	// KeysOnly and End.
	var keys int
	_, err = s.Range(ctx, p, RangeOptions{KeysOnly: true, End: fmt.Sprintf("%s%08x", p, 100)}, func(kv *KeyValue) error {
		if len(kv.Value) != 0 {
			return errors.New("value with KeysOnly")
		}
		keys++
		return nil
	})
	if err != nil || keys != 100 {
		t.Fatalf("bounded range: %d, %v", keys, err)
	}
	stop := errors.New("stop")
	if _, err := s.Range(ctx, p, RangeOptions{}, func(*KeyValue) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}
}

func testWatchOrder(t *testing.T, s *Store, p string) {
	ctx, cancel := context.WithTimeout(ctxT(t), time.Minute)
	defer cancel()
	start := mustTxn(t, s, nil, OpPut(p+"before", nil))
	ch := s.Watch(ctx, p, start.Revision+1)
	const n = 300
	var want []string
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%sk%d", p, i%7)
		if i%5 == 4 {
			// Delete the key written just before: deleting an absent key
			// makes no event.
			k = fmt.Sprintf("%sk%d", p, (i-1)%7)
			mustTxn(t, s, nil, OpDelete(k))
			want = append(want, "D "+k)
		} else {
			mustTxn(t, s, nil, OpPut(k, []byte(fmt.Sprint(i))))
			want = append(want, fmt.Sprintf("P %s=%d", k, i))
		}
	}
	var got []string
	var lastRev int64
	for len(got) < n {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events", len(got))
			}
			if b.Err != nil {
				t.Fatalf("watch: %v", b.Err)
			}
			for _, e := range b.Events {
				if e.KV.ModRevision <= lastRev {
					t.Fatalf("event out of order: rev %d after %d", e.KV.ModRevision, lastRev)
				}
				lastRev = e.KV.ModRevision
				if e.Type == EventDelete {
					got = append(got, "D "+e.KV.Key)
				} else {
					got = append(got, fmt.Sprintf("P %s=%s", e.KV.Key, e.KV.Value))
				}
			}
		case <-ctx.Done():
			t.Fatalf("watch: %d of %d events before timeout", len(got), n)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d: %s, want %s", i, got[i], want[i])
		}
	}
	// Replaying from an old revision delivers the same history.
	ctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	replay := s.Watch(ctx2, p+"k0", start.Revision)
	b := <-replay
	if b.Err != nil || len(b.Events) == 0 {
		t.Fatalf("replay: %+v", b)
	}
}

func testStatus(t *testing.T, s *Store, p string) {
	st, err := s.Status(ctxT(t))
	if err != nil || len(st) == 0 {
		t.Fatalf("status: %v %v", st, err)
	}
	for _, m := range st {
		if m.DBSize <= 0 || m.Revision <= 0 || m.Version == "" || m.Leader == 0 {
			t.Fatalf("status of %s: %+v", m.Endpoint, m)
		}
	}
}

func testCompacted(t *testing.T, h harness) {
	srv := h.start(t, serverOpts{})
	s := openStore(t, srv.cfg)
	ctx := ctxT(t)
	r1 := mustTxn(t, s, nil, OpPut("/k", []byte("1")))
	r2 := mustTxn(t, s, nil, OpPut("/k", []byte("2")))
	if err := s.Compact(ctx, r2.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}
	_, _, err := s.Get(ctx, "/k", r1.Revision)
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
		t.Fatalf("get at compacted revision: %v, want *CompactedError", err)
	}
	if got := mustGet(t, s, "/k", r2.Revision); string(got) != "2" {
		t.Fatalf("get at compact revision: %q", got)
	}
	b := <-s.Watch(ctx, "/k", r1.Revision)
	if !errors.Is(b.Err, ErrCompacted) {
		t.Fatalf("watch from compacted revision: %+v, want ErrCompacted", b)
	}
	for _, m := range mustStatus(t, s) {
		if err := s.Defragment(ctx, m.Endpoint); err != nil {
			t.Fatalf("defragment %s: %v", m.Endpoint, err)
		}
	}
}

func mustStatus(t *testing.T, s *Store) []MemberStatus {
	st, err := s.Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// testNoSpace fills a server with a tiny quota until etcd raises NOSPACE.
func testNoSpace(t *testing.T, h harness) {
	srv := h.start(t, serverOpts{QuotaBackendBytes: 16 << 20})
	s := openStore(t, srv.cfg)
	ctx := ctxT(t)
	v := make([]byte, 1<<20)
	var err error
	i := 0
	for ; i < 200; i++ {
		_, err = s.PutChunked(ctx, fmt.Sprintf("/fill/%04d", i), v, nil)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("after %d MiB: %v, want ErrNoSpace", i, err)
	}
	t.Logf("NOSPACE after %d MiB written", i)
	// Reads still work, writes keep failing cleanly, deletes are allowed.
	if _, err := s.GetChunked(ctx, "/fill/0000", 0); err != nil {
		t.Fatalf("read under NOSPACE: %v", err)
	}
	if _, err := s.Txn(ctx, nil, []Op{OpPut("/x", []byte("x"))}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put under NOSPACE: %v", err)
	}
	alarms, err := s.Alarms(ctx)
	if err != nil || len(alarms) == 0 {
		t.Fatalf("alarms: %v %v", alarms, err)
	}
	if _, err := s.Txn(ctx, nil, []Op{OpDeletePrefix("/fill/")}); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	// Reclaim: compact, defragment, disarm; then writes work again.
	st := mustStatus(t, s)
	if err := s.Compact(ctx, st[0].Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}
	for _, m := range st {
		if err := s.Defragment(ctx, m.Endpoint); err != nil {
			t.Fatalf("defragment: %v", err)
		}
	}
	if err := s.DisarmAll(ctx); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	mustTxn(t, s, nil, OpPut("/x", []byte("x")))
}

// testUnreachable checks that a dead or frozen etcd gives ErrUnavailable
// within the configured deadlines.
func testUnreachable(t *testing.T, h harness) {
	srv := h.start(t, serverOpts{})
	cfg := srv.cfg
	cfg.RequestTimeout = 2 * time.Second
	cfg.DialTimeout = 2 * time.Second
	s := openStore(t, cfg)
	ctx := ctxT(t)
	mustTxn(t, s, nil, OpPut("/k", []byte("1")))
	srv.stop()

	begin := time.Now()
	_, err := s.Txn(ctx, nil, []Op{OpPut("/k", []byte("2"))})
	took := time.Since(begin)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("txn on stopped etcd: %v, want *UnavailableError", err)
	}
	if took > cfg.RequestTimeout+3*time.Second {
		t.Fatalf("txn took %s, deadline %s", took, cfg.RequestTimeout)
	}
	if _, _, err := s.Get(ctx, "/k", 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get on stopped etcd: %v", err)
	}
	// A new client fails within its dial timeout.
	begin = time.Now()
	_, err = Open(ctx, cfg)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open stopped etcd: %v, want ErrUnavailable", err)
	}
	if took := time.Since(begin); took > cfg.DialTimeout+3*time.Second {
		t.Fatalf("open took %s, dial timeout %s", took, cfg.DialTimeout)
	}
	// The caller's own cancellation is reported as such, not as etcd down.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Txn(cctx, nil, []Op{OpPut("/k", []byte("3"))}); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled txn: %v, want context.Canceled", err)
	}
}

// embeddedHarness runs servers in-process.
func embeddedHarness() harness {
	return harness{name: "embedded", start: func(t *testing.T, o serverOpts) server {
		e := startEmbedded(t, EmbedConfig{Limits: o.Limits, QuotaBackendBytes: o.QuotaBackendBytes})
		return server{cfg: e.Config(), stop: func() { e.Close() }}
	}}
}

// startEmbedded starts an embedded etcd in a temporary directory, stopped
// in t.Cleanup.
func startEmbedded(t *testing.T, cfg EmbedConfig) *Embedded {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	e, err := StartEmbedded(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		e.Close()
		if t.Failed() {
			if b, err := os.ReadFile(cfg.DataDir + "/" + etcdLog); err == nil && len(b) > 0 {
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("etcd log tail:\n%s", b)
			}
		}
	})
	return e
}

func TestConformanceEmbedded(t *testing.T) {
	runConformance(t, embeddedHarness())
}

// TestConformanceInProcess runs the suite through the in-process client of
// an embedded server (Config.InProcess), as kvfs mount --data-dir does.
func TestConformanceInProcess(t *testing.T) {
	runConformance(t, harness{name: "in-process", start: func(t *testing.T, o serverOpts) server {
		e := startEmbedded(t, EmbedConfig{Limits: o.Limits, QuotaBackendBytes: o.QuotaBackendBytes})
		cfg := e.Config()
		cfg.InProcess = e
		return server{cfg: cfg, stop: func() { e.Close() }}
	}})
}

// testStats checks that Stats counts each request once: a get, every page
// of a range, a transaction, a read-only transaction.
func testStats(t *testing.T, s *Store, p string) {
	ctx := ctxT(t)
	var ops []Op
	for i := range 100 {
		ops = append(ops, OpPut(fmt.Sprintf("%s%04d", p, i), []byte("v")))
	}
	before := s.Stats()
	mustTxn(t, s, nil, ops...)
	mustGet(t, s, p+"0000", 0)
	if _, err := s.Range(ctx, p, RangeOptions{PageSize: 30}, func(*KeyValue) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMany(ctx, []string{p + "0001", p + "0002"}, 0); err != nil {
		t.Fatal(err)
	}
	got := s.Stats()
	// 1 get + 4 pages of 30 (the last one short) reads; 1 write txn + 1 read-only txn.
	if d := (Stats{Reads: got.Reads - before.Reads, Txns: got.Txns - before.Txns, Writes: got.Writes - before.Writes}); d != (Stats{Reads: 5, Txns: 2}) {
		t.Fatalf("requests counted: %+v, want 5 reads and 2 txns", d)
	}
}
