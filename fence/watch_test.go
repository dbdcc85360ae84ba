package fence

import (
	"context"
	"testing"
	"time"
)

// TestWatchHolder: the watch reports nobody, then each holder in turn as
// leases are acquired and released, with their generations.
func TestWatchHolder(t *testing.T) {
	cfg := startEmbedded(t)
	a := newManager(t, cfg, "host-a", Options{})
	b := newManager(t, cfg, "host-b", Options{})
	const db = "watch.db"
	ctx, cancel := context.WithCancel(ctxT(t))
	ch := a.WatchHolder(ctx, db)
	next := func(want string) Info {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case info, ok := <-ch:
				if !ok {
					t.Fatal("watch closed")
				}
				if info.Owner == want {
					return info
				}
			case <-timeout:
				t.Fatalf("no report of holder %q", want)
			}
		}
	}
	if info := next(""); info.Lease != 0 {
		t.Fatalf("nobody holds it, yet lease %x", info.Lease)
	}
	la := mustAcquire(t, a, db)
	if info := next("host-a"); info.Generation != la.Generation() || info.Lease != la.ID() {
		t.Fatalf("report %+v, want generation %d lease %x", info, la.Generation(), la.ID())
	}
	mustRelease(t, la)
	next("")
	lb := mustAcquire(t, b, db)
	if info := next("host-b"); info.Generation != la.Generation()+1 {
		t.Fatalf("report %+v, want generation %d", info, la.Generation()+1)
	}
	mustRelease(t, lb)
	next("")
	cancel()
	for range ch { // drains, then closes
	}
}
