package fence

import (
	"errors"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/etcdstore/etcdtest"
)

// TestUnreachableEtcd freezes a separate etcd process: keep-alives get no
// answer, and the holder fences itself by its own clock within TTL minus
// the margin of its last successful keep-alive, before etcd could expire
// the lease. After etcd comes back another host takes over.
func TestUnreachableEtcd(t *testing.T) {
	p := etcdtest.StartProcess(t, etcdtest.Options{UnsafeNoFsync: true})
	cfg := etcdstore.Config{Endpoints: p.Endpoints(), RequestTimeout: time.Second}
	opts := Options{TTL: 2 * time.Second}
	a := newManager(t, cfg, "host-a", opts)
	const db = "unreachable.db"
	la := mustAcquire(t, a, db)
	// Let a keep-alive or two succeed first.
	time.Sleep(3 * a.Options().KeepAliveInterval / 2)
	if _, err := la.Cmps(); err != nil {
		t.Fatalf("cmps: %v", err)
	}
	lastDeadline := la.Deadline()
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	o := a.Options()
	took := waitDone(t, la, o.TTL)
	t.Logf("Done closed %s after etcd froze (TTL %s, margin %s, keep-alive every %s)",
		took, o.TTL, o.SafetyMargin, o.KeepAliveInterval)
	if limit := o.TTL - o.SafetyMargin; took > limit+100*time.Millisecond {
		t.Errorf("Done closed %s after the freeze, want within TTL-margin %s", took, limit)
	}
	if time.Now().Before(lastDeadline) {
		t.Errorf("Done closed before the deadline %v", lastDeadline)
	}
	if _, err := la.Cmps(); !errors.Is(err, ErrFenced) {
		t.Fatalf("Cmps while etcd is frozen: %v", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd frozen for %s", time.Since(paused))

	// etcd expires the lease once it runs again; B takes over.
	b := newManager(t, cfg, "host-b", opts)
	lb, err := b.AcquireWithHandoff(ctxT(t), db, 4*opts.TTL)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if lb.Generation() != 2 {
		t.Fatalf("generation %d", lb.Generation())
	}
	// Releasing the lost lease is harmless.
	mustRelease(t, la)
}
