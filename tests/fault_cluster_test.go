package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/etcdstore/etcdtest"
	"github.com/kvfs/kvfs/pager"
)

// The fault suite's etcd faults, on a 3-member cluster of separate etcd
// processes under a kvfs process (host A) and an in-process mount (host B).
// Each runs the faultLoad writer and reader through A in rollback (delete)
// and WAL mode, and checks every commit's outcome afterwards on A and on B,
// and that no goroutine or mount is left behind.

// faultRequestTimeout is the kvfs hosts' etcd request timeout in these
// tests: a commit on a cluster without quorum fails within it.
const faultRequestTimeout = 2 * time.Second

// faultRig is one fault trial's cluster and hosts.
type faultRig struct {
	c      *etcdtest.Cluster
	prefix string
	a      *kvfsProc
	leaks  *fcLeaks // no goroutine or mount left behind
}

func startFaultRig(t *testing.T) *faultRig {
	t.Helper()
	requireFUSE(t)
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier: run with KVFS_INTEGRATION=1 (make test-integration)")
	}
	leaks := fcCheckLeaks(t) // first: its check runs after every other cleanup
	r := &faultRig{c: etcdtest.StartCluster(t, 3, etcdtest.Options{}), prefix: fmt.Sprintf("/fault-%d/", seq.Add(1)), leaks: leaks}
	r.a = startKVFS(t, procOpts{Endpoints: r.c.Endpoints(), Prefix: r.prefix,
		Args: []string{"--etcd-request-timeout", faultRequestTimeout.String(), "--owner", "host-a"}})
	leaks.watch(r.a.Dir)
	return r
}

// hostB mounts the same prefix in this process, after the faults.
func (r *faultRig) hostB(t *testing.T) *mount {
	cfg := etcdstore.Config{Endpoints: r.c.Endpoints(), DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second}
	m := mountKVFS(t, mountOpts{Etcd: cfg, Prefix: r.prefix, Owner: "host-b"})
	r.leaks.watch(m.Dir)
	return m
}

// finish stops the loads and checks each on A and on B, runs kvfs
// verify, and returns the commits lost (must be 0) and those reported
// failed with an unknown outcome that landed.
func (r *faultRig) finish(t *testing.T, loads ...*faultLoad) (lost, landedUnknown int) {
	t.Helper()
	for _, l := range loads {
		l.stop()
		t.Logf("%s: %s", l.mode, l.summary())
		if l.summary().Acked == 0 {
			t.Errorf("%s: no commit acknowledged", l.path)
		}
	}
	// A commit that failed with its outcome unknown may land: kvfs says so
	// in its log, and only as many may.
	unknown := 0
	for _, line := range strings.Split(r.a.out.String(), "\n") {
		if strings.Contains(line, `msg="commit failed"`) && strings.Contains(line, "whether it landed is unknown") {
			unknown++
		}
	}
	b := r.hostB(t)
	for _, l := range loads {
		name := filepath.Base(l.path)
		n, u := l.check(t, r.a.Path(name), unknown)
		l.check(t, b.Path(name), unknown)
		lost += n
		landedUnknown += u
	}
	kvfsVerifyPrefix(t, r.c.Endpoints(), r.prefix)
	if t.Failed() || os.Getenv("KVFS_FAULT_LOG") != "" {
		t.Logf("host A's log:\n%s", r.a.out)
	}
	return lost, landedUnknown
}

// TestFaultLeaderKillCluster kills the etcd leader with SIGKILL in the
// middle of the load, restarts it, then does the same to a follower:
// commits go on after the election, no acknowledged commit is lost, no
// failed one lands, readers see only whole transactions.
func TestFaultLeaderKillCluster(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			r := startFaultRig(t)
			seed := seedOf(t, "KVFS_FAULT_SEED")
			l := startFaultLoad(t, r.a.Path("f.db"), mode, seed)
			l.waitAcked(50, 30*time.Second, "before the faults")

			leader := r.c.Leader(t)
			killedAt := time.Now()
			if err := leader.Kill(); err != nil {
				t.Fatal(err)
			}
			l.waitAcked(20, 30*time.Second, "after the leader was killed")
			t.Logf("leader %s killed; 20 more commits %s later", leader.Name, time.Since(killedAt).Round(time.Millisecond))
			leader.Restart(t)
			l.waitAcked(20, 30*time.Second, "after the old leader returned")

			var follower *etcdtest.Process
			now := r.c.Leader(t)
			for _, m := range r.c.Members {
				if m != now {
					follower = m
					break
				}
			}
			if err := follower.Kill(); err != nil {
				t.Fatal(err)
			}
			l.waitAcked(20, 30*time.Second, "after a follower was killed")
			follower.Restart(t)
			l.waitAcked(20, 30*time.Second, "after the follower returned")
			r.finish(t, l)
			if s := l.summary(); s.Stall > 15*time.Second {
				t.Errorf("longest stall %s", s.Stall)
			}
		})
	}
}

// TestFaultQuorumLossCluster stops two of the three members (SIGSTOP, and
// SIGKILL), for longer than the hosts' request timeout: a commit fails
// with a disk I/O error without hanging past its bound, reads of what the
// host already holds go on, and once the quorum is back the same writer
// commits again without a remount.
func TestFaultQuorumLossCluster(t *testing.T) {
	for _, v := range []struct{ mode, how string }{{"delete", "pause"}, {"wal", "pause"}, {"delete", "kill"}, {"wal", "kill"}} {
		t.Run(v.mode+"/"+v.how, func(t *testing.T) {
			r := startFaultRig(t)
			seed := seedOf(t, "KVFS_FAULT_SEED")
			l := startFaultLoad(t, r.a.Path("q.db"), v.mode, seed)
			l.waitAcked(50, 30*time.Second, "before the fault")
			genBefore := fenceGeneration(t, r, "q.db")

			leader := r.c.Leader(t)
			var stopped []*etcdtest.Process
			for _, m := range r.c.Members {
				if m != leader && len(stopped) < 1 {
					stopped = append(stopped, m)
				}
			}
			stopped = append(stopped, leader) // a follower and the leader
			lostAt := time.Now()
			for _, m := range stopped {
				var err error
				if v.how == "pause" {
					err = m.Pause()
				} else {
					err = m.Kill()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// Hold the fault well past the request timeout.
			const hold = 4 * faultRequestTimeout
			time.Sleep(hold)
			if os.Getenv("KVFS_FAULT_DUMP") != "" {
				syscall.Kill(r.a.PID(), syscall.SIGQUIT)
				time.Sleep(time.Second)
				t.Fatalf("dump:\n%s", r.a.out)
			}
			f, ok := l.failedSince(lostAt)
			if !ok {
				t.Fatalf("no commit failed in the %s without quorum (last error %v)", hold, l.lastErr())
			}
			if !strings.Contains(f.err.Error(), "disk I/O error") {
				t.Errorf("commit without quorum failed with %q, want a disk I/O error", f.err)
			}
			failAfter := f.end.Sub(lostAt)
			t.Logf("first commit without quorum failed %s after the loss (its call took %s): %v",
				failAfter.Round(time.Millisecond), f.end.Sub(f.start).Round(time.Millisecond), f.err)
			if failAfter > 2*faultRequestTimeout+2*time.Second {
				t.Errorf("the first failure came %s after the quorum loss; the request timeout is %s", failAfter, faultRequestTimeout)
			}
			if n := l.readsBetween(lostAt.Add(faultRequestTimeout), time.Now()); n == 0 {
				t.Errorf("no read succeeded without quorum: reads of cached data must go on")
			} else {
				t.Logf("%d whole reads without quorum", n)
			}

			backAt := time.Now()
			if v.how == "pause" {
				for _, m := range stopped {
					if err := m.Resume(); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				r.c.Restart(t)
			}
			l.waitAcked(10, 60*time.Second, "after the quorum returned")
			t.Logf("quorum back: 10 commits within %s", time.Since(backAt).Round(time.Millisecond))
			genAfter := fenceGeneration(t, r, "q.db")
			if genAfter == genBefore {
				t.Logf("fence generation %d before and after: the lease survived the quorum loss", genBefore)
			} else {
				t.Logf("fence generation %d → %d: the lease expired and a new one replaced it", genBefore, genAfter)
			}
			r.finish(t, l)
		})
	}
}

// TestFaultSlowEtcdCluster freezes one member at a time (SIGSTOP) in short
// random bursts, the leader as often as a follower, while the load runs:
// a commit may be slow or fail, but none reported failed lands and none
// reported acknowledged is missing.
func TestFaultSlowEtcdCluster(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			r := startFaultRig(t)
			seed := seedOf(t, "KVFS_FAULT_SEED")
			l := startFaultLoad(t, r.a.Path("s.db"), mode, seed)
			l.waitAcked(30, 30*time.Second, "before the faults")
			bursts := slowBursts(t, r.c, seed, 10*time.Second)
			t.Logf("%d bursts of a frozen member", bursts)
			l.waitAcked(20, 30*time.Second, "after the bursts")
			r.finish(t, l)
		})
	}
}

// slowBursts freezes a random member (the leader half the time) for 100 ms
// to 1.5 s, every 0.3 to 1 s, for d, and returns how many bursts ran.
func slowBursts(t *testing.T, c *etcdtest.Cluster, seed uint64, d time.Duration) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x736c6f77))
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		m := c.Members[rng.IntN(len(c.Members))]
		if rng.IntN(2) == 0 {
			m = c.Leader(t)
		}
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100*time.Millisecond + time.Duration(rng.IntN(1400))*time.Millisecond)
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300*time.Millisecond + time.Duration(rng.IntN(700))*time.Millisecond)
	}
	return n
}

// fenceGeneration returns the write lease generation of the last commit
// of database name, read from etcd.
func fenceGeneration(t *testing.T, r *faultRig, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: r.c.Endpoints(), DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := etcdstore.NewKeys(r.prefix)
	p, err := pager.New(pager.Options{Store: s, Keys: keys, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, _, e, err := p.Resolve(ctx, name)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	info, err := pager.ReadInfo(ctx, s, keys, e.ID)
	if err != nil {
		t.Fatalf("read the head of %s: %v", name, err)
	}
	return info.Head.Generation
}
