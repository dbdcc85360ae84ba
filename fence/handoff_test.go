package fence

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHandoff: B asks A for the lease; A's "pager" releases at its idle
// point; B acquires with the next generation and the request is gone.
func TestHandoff(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	b := newManager(t, cfg, "host-b", Options{})
	const db = "handoff.db"
	la := mustAcquire(t, a, db)

	released := make(chan error, 1)
	go func() {
		select {
		case <-la.HandoffRequested():
			released <- la.Release(ctxT(t))
		case <-time.After(30 * time.Second):
			released <- errors.New("no handoff request")
		}
	}()
	start := time.Now()
	lb, err := b.AcquireWithHandoff(ctxT(t), db, 10*time.Second)
	if err != nil {
		t.Fatalf("acquire with handoff: %v", err)
	}
	t.Logf("handoff took %s", time.Since(start))
	if err := <-released; err != nil {
		t.Fatalf("holder: %v", err)
	}
	if lb.Generation() != la.Generation()+1 {
		t.Fatalf("generation %d, want %d", lb.Generation(), la.Generation()+1)
	}
	if got := la.HandoffRequester(); got != "host-b" {
		t.Fatalf("requester %q", got)
	}
	if keyExists(t, b.store, testKeys.Handoff(db)) {
		t.Fatal("handoff key left behind")
	}
	// The new holder was not asked by its own request.
	select {
	case <-lb.HandoffRequested():
		t.Fatal("new holder signalled by its own request")
	default:
	}
	if sa, sb := a.Stats(), b.Stats(); sa.HandedOff != 1 || sb.Handoffs != 1 || sb.HandoffRequests != 1 {
		t.Fatalf("stats a %+v, b %+v", sa, sb)
	}

	// Without contention AcquireWithHandoff is a plain Acquire.
	mustRelease(t, lb)
	la2, err := a.AcquireWithHandoff(ctxT(t), db, time.Second)
	if err != nil || la2.Generation() != lb.Generation()+1 {
		t.Fatalf("uncontended: %v", err)
	}
}

// TestHandoffBusy: A never reaches an idle point; B gives up after its wait
// with ErrBusy, and its request is deleted.
func TestHandoffBusy(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	b := newManager(t, cfg, "host-b", Options{})
	const db = "busy.db"
	la := mustAcquire(t, a, db)

	wait := time.Second
	start := time.Now()
	_, err := b.AcquireWithHandoff(ctxT(t), db, wait)
	took := time.Since(start)
	var be *BusyError
	if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrHeld) || !errors.As(err, &be) {
		t.Fatalf("got %v, want *BusyError", err)
	}
	wantHeld(t, err, "host-a", la.Generation())
	if took < wait || took > wait+2*time.Second {
		t.Fatalf("gave up after %s, wait was %s", took, wait)
	}
	select {
	case <-la.HandoffRequested():
	default:
		t.Fatal("holder not signalled")
	}
	if keyExists(t, b.store, testKeys.Handoff(db)) {
		t.Fatal("handoff key left behind")
	}
	if la.Err() != nil {
		t.Fatalf("holder lost its lease: %v", la.Err())
	}
	if st := b.Stats(); st.Busy != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// A zero wait asks nothing.
	if _, err := b.AcquireWithHandoff(ctxT(t), db, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("zero wait: %v", err)
	}
}

// TestHandoffAfterCrash: the holder dies without releasing (no more
// keep-alives); a waiting requester gets the lease about one TTL later.
func TestHandoffAfterCrash(t *testing.T) {
	cfg := startEmbedded(t)
	opts := Options{TTL: 2 * time.Second}
	a := newManager(t, cfg, "host-a", opts)
	b := newManager(t, cfg, "host-b", opts)
	const db = "crash.db"
	la := mustAcquire(t, a, db)
	crashed := time.Now()
	la.pauseKeepAlive()
	lb, err := b.AcquireWithHandoff(ctxT(t), db, 10*time.Second)
	if err != nil {
		t.Fatalf("acquire with handoff: %v", err)
	}
	took := time.Since(crashed)
	t.Logf("takeover %s after the holder crashed (TTL %s)", took, opts.TTL)
	if took > opts.TTL+1500*time.Millisecond {
		t.Errorf("takeover took %s, want about the TTL %s", took, opts.TTL)
	}
	if lb.Generation() != 2 {
		t.Fatalf("generation %d", lb.Generation())
	}
	if keyExists(t, b.store, testKeys.Handoff(db)) {
		t.Fatal("handoff key left behind")
	}
}

// TestHandoffRequestBeforeAcquire: a request already waiting when a new
// holder acquires (it was aimed at the previous one) signals the new holder.
func TestHandoffRequestBeforeAcquire(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	b := newManager(t, cfg, "host-b", Options{})
	c := newManager(t, cfg, "host-c", Options{})
	const db = "three.db"
	la := mustAcquire(t, a, db)

	// B and C both ask; A hands over; one of them wins and the other's
	// renewed request reaches the winner, which hands over in turn.
	type result struct {
		l   *Lease
		err error
	}
	results := make(chan result, 2)
	stop := make(chan struct{})
	defer close(stop)
	for _, m := range []*Manager{b, c} {
		go func() {
			l, err := m.AcquireWithHandoff(ctxT(t), db, 20*time.Second)
			results <- result{l, err}
			if err != nil {
				return
			}
			// The "pager": release when asked.
			select {
			case <-l.HandoffRequested():
				l.Release(context.Background())
			case <-stop:
			}
		}()
	}
	select {
	case <-la.HandoffRequested():
		mustRelease(t, la)
	case <-time.After(20 * time.Second):
		t.Fatal("A not asked")
	}
	gens := map[uint64]string{}
	for i := 0; i < 2; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("requester: %v", r.err)
		}
		gens[r.l.Generation()] = r.l.Owner()
	}
	if len(gens) != 2 || gens[2] == "" || gens[3] == "" {
		t.Fatalf("generations %v, want 2 and 3", gens)
	}
}
