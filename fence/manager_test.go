package fence

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

func TestAcquireReleaseReacquire(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	b := newManager(t, cfg, "host-b", Options{})
	ctx := ctxT(t)
	const db = "main.db"

	if _, err := a.Holder(ctx, db); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("holder of a fresh database: %v, want ErrNotHeld", err)
	}
	la := mustAcquire(t, a, db)
	if la.Generation() != 1 || la.Owner() != "host-a" || la.DB() != db || la.ID() == 0 {
		t.Fatalf("first lease: gen %d owner %q db %q id %x", la.Generation(), la.Owner(), la.DB(), la.ID())
	}
	info, err := b.Holder(ctx, db)
	if err != nil || info.Owner != "host-a" || info.Generation != 1 || info.Lease != la.ID() {
		t.Fatalf("holder = %+v, %v", info, err)
	}

	// Another host is refused, naming the holder; so is a second lease of
	// the same host.
	_, err = b.Acquire(ctx, db)
	wantHeld(t, err, "host-a", 1)
	_, err = a.Acquire(ctx, db)
	wantHeld(t, err, "host-a", 1)

	// Release hands the database over at once, with the next generation.
	mustRelease(t, la)
	select {
	case <-la.Done():
	default:
		t.Fatal("Done open after Release")
	}
	if _, err := la.Cmps(); !errors.Is(err, ErrFenced) {
		t.Fatalf("Cmps after Release: %v, want ErrFenced", err)
	}
	var fe *FencedError
	if !errors.As(la.Err(), &fe) || fe.Reason != reasonReleased {
		t.Fatalf("Err after Release: %v", la.Err())
	}
	mustRelease(t, la) // idempotent
	if keyExists(t, b.store, testKeys.Fence(db)) {
		t.Fatal("fence key survived Release")
	}

	lb := mustAcquire(t, b, db)
	if lb.Generation() != 2 {
		t.Fatalf("after release: generation %d, want 2", lb.Generation())
	}
	_, err = a.Acquire(ctx, db)
	wantHeld(t, err, "host-b", 2)
	mustRelease(t, lb)
	la = mustAcquire(t, a, db)
	if la.Generation() != 3 {
		t.Fatalf("third acquisition: generation %d, want 3", la.Generation())
	}

	// Databases are independent.
	lo := mustAcquire(t, b, "other.db")
	if lo.Generation() != 1 {
		t.Fatalf("other database: generation %d, want 1", lo.Generation())
	}
	st := a.Stats()
	if st.Held != 1 || st.Acquired != 2 || st.Refused != 2 || st.Released != 1 {
		t.Fatalf("stats of a: %+v", st)
	}
}

func TestAcquireInvalidName(t *testing.T) {
	cfg := startEmbedded(t)
	m := newManager(t, cfg, "host-a", Options{})
	for _, name := range []string{"", "a/b", "..", "x\x00"} {
		if _, err := m.Acquire(ctxT(t), name); !errors.Is(err, etcdstore.ErrInvalidName) {
			t.Errorf("acquire %q: %v, want ErrInvalidName", name, err)
		}
	}
}

func TestManagerClose(t *testing.T) {
	cfg := startEmbedded(t)
	m := newManager(t, cfg, "host-a", Options{})
	l1, l2 := mustAcquire(t, m, "one"), mustAcquire(t, m, "two")
	if err := m.Close(ctxT(t)); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, l := range []*Lease{l1, l2} {
		if !errors.Is(l.Err(), ErrFenced) {
			t.Errorf("%s after Close: %v", l.DB(), l.Err())
		}
		if keyExists(t, m.store, testKeys.Fence(l.DB())) {
			t.Errorf("%s: fence key survived Close", l.DB())
		}
	}
	if _, err := m.Acquire(ctxT(t), "one"); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after Close: %v, want ErrClosed", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{Owner: "x"}.withDefaults()
	if o.TTL != DefaultTTL || o.SafetyMargin != DefaultTTL/5 || o.KeepAliveInterval != DefaultTTL/4 {
		t.Fatalf("defaults: %+v", o)
	}
	o = Options{Owner: "x", TTL: time.Second, SafetyMargin: 2500 * time.Millisecond, KeepAliveInterval: time.Hour}.withDefaults()
	if o.TTL != MinTTL || o.SafetyMargin != MinTTL/5 || o.KeepAliveInterval != (MinTTL-MinTTL/5)/2 {
		t.Fatalf("clamped: %+v", o)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("no panic without Owner")
		}
	}()
	Options{}.withDefaults()
}

// TestCmpsAndClassify checks that the holder's writes land and that
// Classify leaves a failure of the caller's own compare alone.
func TestCmpsAndClassify(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	ctx := ctxT(t)
	l := mustAcquire(t, a, "db")
	cmps, err := l.Cmps()
	if err != nil {
		t.Fatalf("cmps: %v", err)
	}
	head := testKeys.Head("db")
	res, err := a.store.Txn(ctx, append(cmps, etcdstore.CmpAbsent(head)), []etcdstore.Op{etcdstore.OpPut(head, []byte("1"))})
	if err != nil {
		t.Fatalf("fenced write: %v", err)
	}
	// A head conflict is the caller's business, not a lost fence.
	_, err = a.store.Txn(ctx, append(cmps, etcdstore.CmpModRevision(head, res.Revision-1)), []etcdstore.Op{etcdstore.OpPut(head, []byte("2"))})
	if got := l.Classify(err); got != err || errors.Is(got, ErrFenced) {
		t.Fatalf("classify head conflict: %v", got)
	}
	if l.Err() != nil {
		t.Fatalf("lease lost after a head conflict: %v", l.Err())
	}
	// Errors that are not compare failures pass through.
	other := errors.New("boom")
	if l.Classify(other) != other || l.Classify(nil) != nil {
		t.Fatal("classify changed an unrelated error")
	}
	// A compare failure of a transaction without the fence passes through.
	_, err = a.store.Txn(ctx, []etcdstore.Cmp{etcdstore.CmpAbsent(head)}, nil)
	if got := l.Classify(err); got != err {
		t.Fatalf("classify unfenced failure: %v", got)
	}
}

// TestRevokedLeaseDetected revokes the holder's lease behind its back: the
// fence watch sees the key vanish and Done closes long before the TTL.
func TestRevokedLeaseDetected(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{TTL: 10 * time.Second})
	l := mustAcquire(t, a, "db")
	cmps, _ := l.Cmps()
	if err := a.store.Revoke(ctxT(t), l.ID()); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	took := waitDone(t, l, 3*time.Second)
	t.Logf("Done closed %s after the revoke", took)
	if _, err := l.Cmps(); !errors.Is(err, ErrFenced) {
		t.Fatalf("Cmps after revoke: %v", err)
	}
	_, err := a.store.Txn(ctxT(t), cmps, []etcdstore.Op{etcdstore.OpPut(testKeys.Head("db"), []byte("x"))})
	if err = l.Classify(err); !errors.Is(err, ErrFenced) || errors.Is(err, etcdstore.ErrCompareFailed) {
		t.Fatalf("write after revoke: %v, want ErrFenced", err)
	}
	if keyExists(t, a.store, testKeys.Head("db")) {
		t.Fatal("write after revoke landed")
	}
	if st := a.Stats(); st.Lost != 1 || st.Held != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestOwnClockDeadline drives a holder's clock by hand: keep-alives extend
// the deadline, and once they stop the holder fences itself as soon as its
// own clock passes TTL minus the margin, while etcd still has the lease.
func TestOwnClockDeadline(t *testing.T) {
	cfg := startEmbedded(t)
	clock := newFakeClock()
	ttl := 10 * time.Second
	a := newManager(t, cfg, "host-a", Options{TTL: ttl, Clock: clock})
	o := a.Options()
	l := mustAcquire(t, a, "db")
	if want := clock.Now().Add(ttl - o.SafetyMargin); !l.Deadline().Equal(want) {
		t.Fatalf("deadline %v, want %v", l.Deadline(), want)
	}

	// Three keep-alive rounds: each moves the deadline forward.
	for i := 0; i < 3; i++ {
		before := l.Deadline()
		clock.waitTimers(t, 2) // keep-alive and watchdog
		clock.Advance(o.KeepAliveInterval)
		waitFor(t, 5*time.Second, func() bool { return l.Deadline().After(before) })
		if _, err := l.Cmps(); err != nil {
			t.Fatalf("round %d: Cmps: %v", i, err)
		}
	}

	// Frozen: no keep-alive; just before the deadline the lease holds,
	// at the deadline it is gone.
	l.pauseKeepAlive()
	rest := l.Deadline().Sub(clock.Now())
	clock.Advance(rest - time.Millisecond)
	if _, err := l.Cmps(); err != nil {
		t.Fatalf("1ms before the deadline: %v", err)
	}
	clock.Advance(time.Millisecond)
	waitDone(t, l, 5*time.Second)
	if _, err := l.Cmps(); !errors.Is(err, ErrFenced) {
		t.Fatalf("Cmps past the deadline: %v", err)
	}
	// etcd still holds the lease: the holder stopped first.
	if _, err := a.store.TimeToLive(ctxT(t), l.ID()); err != nil {
		t.Fatalf("etcd lease: %v (want still alive)", err)
	}
	// Release still revokes it.
	mustRelease(t, l)
	if _, err := a.store.TimeToLive(ctxT(t), l.ID()); !errors.Is(err, etcdstore.ErrLeaseNotFound) {
		t.Fatalf("etcd lease after Release: %v", err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExpiryStaleWriter freezes the holder's keep-alive: etcd drops the
// fence after the TTL, another host takes over with the next generation,
// and a write the frozen holder prepared before the freeze fails at etcd
// with ErrFenced and lands nothing.
func TestExpiryStaleWriter(t *testing.T) {
	cfg := startEmbedded(t)
	opts := Options{TTL: 2 * time.Second}
	a := newManager(t, cfg, "host-a", opts)
	b := newManager(t, cfg, "host-b", opts)
	ctx := ctxT(t)
	const db = "stale.db"
	head, page := testKeys.Head(db), testKeys.PIDX(db, 1)

	la := mustAcquire(t, a, db)
	cmpsA, err := la.Cmps() // taken at the start of a commit...
	if err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	la.pauseKeepAlive() // ...and then the host freezes

	// The holder's own clock fences it before etcd expires the lease.
	took := waitDone(t, la, opts.TTL)
	t.Logf("own clock fenced the frozen holder after %s", took)
	if _, err := la.Cmps(); !errors.Is(err, ErrFenced) {
		t.Fatalf("Cmps of the frozen holder: %v", err)
	}

	// B takes over once etcd expires the lease.
	var lb *Lease
	for {
		lb, err = b.Acquire(ctx, db)
		if err == nil {
			break
		}
		wantHeld(t, err, "host-a", 1)
		if time.Since(frozen) > 4*opts.TTL {
			t.Fatalf("no takeover %s after the freeze", time.Since(frozen))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("takeover %s after the freeze (TTL %s)", time.Since(frozen), opts.TTL)
	if lb.Generation() != la.Generation()+1 {
		t.Fatalf("takeover generation %d, want %d", lb.Generation(), la.Generation()+1)
	}
	cmpsB, err := lb.Cmps()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Txn(ctx, cmpsB, []etcdstore.Op{etcdstore.OpPut(head, []byte("B"))}); err != nil {
		t.Fatalf("B's commit: %v", err)
	}

	// A wakes up mid-commit and sends the write it prepared.
	_, err = a.store.Txn(ctx, cmpsA, []etcdstore.Op{
		etcdstore.OpPut(head, []byte("A")), etcdstore.OpPut(page, []byte("A")),
	})
	if !errors.Is(err, etcdstore.ErrCompareFailed) {
		t.Fatalf("stale write: %v, want ErrCompareFailed", err)
	}
	if err := la.Classify(err); !errors.Is(err, ErrFenced) {
		t.Fatalf("classified stale write: %v, want ErrFenced", err)
	}
	kv, _, err := b.store.Get(ctx, head, 0)
	if err != nil || string(kv.Value) != "B" {
		t.Fatalf("head after the stale write: %v %v", kv, err)
	}
	if keyExists(t, b.store, page) {
		t.Fatal("stale page write landed")
	}
	var fe *FencedError
	if !errors.As(la.Err(), &fe) {
		t.Fatalf("Err: %v", la.Err())
	}
	t.Logf("A: %v", la.Err())
}

// TestRacingContenders runs rounds of five hosts acquiring the same
// database at once: exactly one wins each round, with the next generation.
func TestRacingContenders(t *testing.T) {
	cfg := startEmbedded(t)
	const n, rounds, db = 5, 20, "race.db"
	ms := make([]*Manager, n)
	for i := range ms {
		ms[i] = newManager(t, cfg, fmt.Sprintf("host-%d", i), Options{})
	}
	ctx := ctxT(t)
	for r := 1; r <= rounds; r++ {
		leases := make([]*Lease, n)
		errs := make([]error, n)
		var start, wg sync.WaitGroup
		start.Add(1)
		for i, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				leases[i], errs[i] = m.Acquire(ctx, db)
			}()
		}
		start.Done()
		wg.Wait()
		var winner *Lease
		for i := range ms {
			switch {
			case errs[i] == nil && winner == nil:
				winner = leases[i]
			case errs[i] == nil:
				t.Fatalf("round %d: two winners: %s and %s", r, winner.Owner(), leases[i].Owner())
			}
		}
		if winner == nil {
			t.Fatalf("round %d: no winner: %v", r, errs)
		}
		if winner.Generation() != uint64(r) {
			t.Fatalf("round %d: generation %d", r, winner.Generation())
		}
		for i := range ms {
			if errs[i] != nil {
				wantHeld(t, errs[i], winner.Owner(), winner.Generation())
			}
		}
		mustRelease(t, winner)
	}
}

// TestChurnGenerations has five hosts acquire and release the same database
// as fast as they can: every generation is handed out exactly once and none
// is skipped, even when an acquirer loses the race on the generation key.
func TestChurnGenerations(t *testing.T) {
	cfg := startEmbedded(t)
	const n, each, db = 5, 8, "churn.db"
	ctx := ctxT(t)
	var mu sync.Mutex
	var gens []uint64
	var wg sync.WaitGroup
	ms := make([]*Manager, n)
	for i := 0; i < n; i++ {
		m := newManager(t, cfg, fmt.Sprintf("host-%d", i), Options{})
		ms[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got := 0; got < each; {
				l, err := m.Acquire(ctx, db)
				if errors.Is(err, ErrHeld) {
					continue
				}
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				mu.Lock()
				gens = append(gens, l.Generation())
				mu.Unlock()
				got++
				if err := l.Release(ctx); err != nil {
					t.Errorf("release: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	races := uint64(0)
	for _, m := range ms {
		races += m.Stats().Races
	}
	t.Logf("%d acquisitions, %d retried after a race on the generation key", len(gens), races)
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	for i, g := range gens {
		if g != uint64(i+1) {
			t.Fatalf("generations %v: position %d holds %d", gens, i, g)
		}
	}
	kv, _, err := openStore(t, cfg).Get(ctx, testKeys.Generation(db), 0)
	if err != nil || string(kv.Value) != strconv.Itoa(n*each) {
		t.Fatalf("generation key: %v %v, want %d", kv, err, n*each)
	}
}

// TestStaleOwnLeaseRevoked: a lease this host lost while etcd still holds
// it (keep-alives failed, as without a quorum) is revoked by the host's
// next acquisition instead of waited for until etcd expires it; another
// host still finds the fence held, and the lost lease's writes stay
// fenced.
func TestStaleOwnLeaseRevoked(t *testing.T) {
	cfg := startEmbedded(t)
	clock := newFakeClock()
	ttl := 30 * time.Second // etcd keeps the lost lease for the whole test
	a := newManager(t, cfg, "host-a", Options{TTL: ttl, Clock: clock})
	b := newManager(t, cfg, "host-b", Options{TTL: ttl})
	l := mustAcquire(t, a, "db")
	stale, err := l.Cmps()
	if err != nil {
		t.Fatal(err)
	}
	l.pauseKeepAlive()
	clock.waitTimers(t, 2)
	clock.Advance(l.Deadline().Sub(clock.Now()))
	waitDone(t, l, 5*time.Second)
	if _, err := a.store.TimeToLive(ctxT(t), l.ID()); err != nil {
		t.Fatalf("etcd lease: %v (want still alive)", err)
	}
	_, err = b.Acquire(ctxT(t), "db")
	wantHeld(t, err, "host-a", 1)

	l2, err := a.Acquire(ctxT(t), "db")
	if err != nil {
		t.Fatalf("host A's acquisition over its own lost lease: %v", err)
	}
	defer mustRelease(t, l2)
	if l2.Generation() != 2 {
		t.Fatalf("generation %d, want 2", l2.Generation())
	}
	if _, err := a.store.TimeToLive(ctxT(t), l.ID()); !errors.Is(err, etcdstore.ErrLeaseNotFound) {
		t.Fatalf("the lost lease after the new acquisition: %v, want revoked", err)
	}
	// A write under the lost lease's compares lands nothing.
	if _, err := a.store.Txn(ctxT(t), stale, []etcdstore.Op{etcdstore.OpPut("/x", []byte("stale"))}); !errors.Is(err, etcdstore.ErrCompareFailed) {
		t.Fatalf("write under the lost lease: %v, want a failed compare", err)
	}
}
