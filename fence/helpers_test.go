package fence

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// integrationEnv enables the integration tier (make test-integration).
const integrationEnv = "KVFS_INTEGRATION"

// testKeys is the key layout every test uses.
var testKeys = etcdstore.NewKeys("/fence-test/")

// ctxT returns a context ended by the test's cleanup.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startEmbedded runs an in-process etcd for the test and returns its config.
func startEmbedded(t testing.TB) etcdstore.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e.Config()
}

// openStore opens a client of cfg, one per simulated host, closed in
// t.Cleanup.
func openStore(t testing.TB, cfg etcdstore.Config) *etcdstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newManager returns a Manager for owner on its own client of cfg. Its
// cleanup closes it and checks that no lease is left behind. Cleanups run
// last-in first-out, so the manager closes before its store.
func newManager(t testing.TB, cfg etcdstore.Config, owner string, opts Options) *Manager {
	t.Helper()
	opts.Owner = owner
	m := NewManager(openStore(t, cfg), testKeys, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Logf("close manager %s: %v", owner, err)
		}
		if n := m.Stats().Held; n != 0 {
			t.Errorf("manager %s still tracks %d leases after Close", owner, n)
		}
	})
	return m
}

func mustAcquire(t testing.TB, m *Manager, db string) *Lease {
	t.Helper()
	l, err := m.Acquire(ctxT(t), db)
	if err != nil {
		t.Fatalf("%s: acquire %s: %v", m.Options().Owner, db, err)
	}
	return l
}

func mustRelease(t testing.TB, l *Lease) {
	t.Helper()
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("release %s gen %d: %v", l.DB(), l.Generation(), err)
	}
}

// wantHeld checks that err is a *HeldError naming owner and gen.
func wantHeld(t testing.TB, err error, owner string, gen uint64) {
	t.Helper()
	var he *HeldError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeld) {
		t.Fatalf("got %v, want *HeldError", err)
	}
	if he.Owner != owner || he.Generation != gen {
		t.Fatalf("held by %q gen %d, want %q gen %d", he.Owner, he.Generation, owner, gen)
	}
}

// waitDone waits for l.Done up to d and returns how long it took.
func waitDone(t testing.TB, l *Lease, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-l.Done():
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("lease %s gen %d: Done not closed within %s", l.DB(), l.Generation(), d)
		return 0
	}
}

// keyExists reports whether key is present.
func keyExists(t testing.TB, s *etcdstore.Store, key string) bool {
	t.Helper()
	_, _, err := s.Get(ctxT(t), key, 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return true
}

// fakeClock is a Clock the test advances by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock forward by d, firing every timer due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	sort.Slice(c.waiters, func(i, j int) bool { return c.waiters[i].at.Before(c.waiters[j].at) })
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// waitTimers waits until at least n timers are pending, so that an Advance
// reaches goroutines that are about to wait.
func (c *fakeClock) waitTimers(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.waiters)
		c.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake clock: %d timers pending, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

var _ Clock = (*fakeClock)(nil)
