package etcdtest

import (
	"testing"
	"time"
)

// leaderTimeout bounds how long Leader waits for an election to settle.
const leaderTimeout = 10 * time.Second

// Cluster is an n-member static etcd cluster of separate processes.
type Cluster struct {
	// Members are in --initial-cluster order, named etcd0, etcd1, ...
	Members []*Process
}

// StartCluster starts an n-member static cluster (--initial-cluster), every
// member on free 127.0.0.1 ports, and waits until every member is healthy,
// failing tb if they are not within 30 s. Members start concurrently, since
// each needs a quorum before it reports healthy. Cleanup is as for
// StartProcess, stopping the members as Cluster.Stop does.
func StartCluster(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("etcdtest: StartCluster: n = %d, want ≥ 1", n)
	}
	return &Cluster{Members: startMembers(tb, n, opts)}
}

// Endpoints returns the client URLs of all members, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Stop stops every member (see Process.Stop), followers concurrently and
// the leader last so that no member waits to hand over leadership to a
// member that is stopping, and returns their errors joined.
func (c *Cluster) Stop() error { return stopAll(c.Members) }

// Restart starts every member that is not running, together, with the same
// flags, data dirs and ports, and waits until all members are healthy,
// failing tb if they are not within 30 s. It is how a test brings a cluster
// back after Stop, or after killing more members than the quorum allows.
func (c *Cluster) Restart(tb testing.TB) {
	tb.Helper()
	for _, m := range c.Members {
		if m.Running() {
			continue
		}
		if err := m.start(); err != nil {
			tb.Fatalf("etcdtest: restart %s: %v", m.Name, err)
		}
	}
	if err := waitAllHealthy(c.Members); err != nil {
		tb.Fatalf("etcdtest: restart cluster: %v\n%s", err, logTails(c.Members))
	}
}

// Leader returns the member that is currently the raft leader, asking each
// running member through the JSON gateway (POST /v3/maintenance/status) and
// retrying for up to 10 s while an election settles; it fails tb if no
// member reports itself leader by then. Paused members do not answer and so
// are never returned.
func (c *Cluster) Leader(tb testing.TB) *Process {
	tb.Helper()
	deadline := time.Now().Add(leaderTimeout)
	for {
		if l := findLeader(c.Members); l != nil {
			return l
		}
		if time.Now().After(deadline) {
			tb.Fatalf("etcdtest: no member reports itself leader within %v", leaderTimeout)
		}
		time.Sleep(pollInterval)
	}
}
