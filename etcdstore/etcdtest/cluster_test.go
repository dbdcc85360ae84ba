package etcdtest

import (
	"fmt"
	"testing"
	"time"
)

func TestCluster3(t *testing.T) {
	tr := trackPIDs(t)
	start := time.Now()
	c := StartCluster(t, 3, Options{UnsafeNoFsync: true})
	tr.add(c.Members...)
	t.Logf("3-member cluster healthy in %v", time.Since(start))

	if got := len(c.Endpoints()); got != 3 {
		t.Fatalf("len(Endpoints()) = %d, want 3", got)
	}
	for _, m := range c.Members {
		if err := m.CheckHealth(); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}
	m0, m2 := c.Members[0], c.Members[2]
	if err := put(m0, "k", "v1"); err != nil {
		t.Fatalf("put on %s: %v", m0.Name, err)
	}
	mustGet(t, m2, "k", "v1")

	// Kill the leader: the other two elect a new one and keep accepting
	// writes.
	leader := c.Leader(t)
	t.Logf("leader is %s", leader.Name)
	if err := leader.Kill(); err != nil {
		t.Fatalf("Kill leader: %v", err)
	}
	var alive []*Process
	for _, m := range c.Members {
		if m != leader {
			alive = append(alive, m)
		}
	}
	start = time.Now()
	if err := eventually(15*time.Second, func() error { return put(alive[0], "k", "v2") }); err != nil {
		t.Fatalf("put on %s after killing the leader: %v", alive[0].Name, err)
	}
	t.Logf("put accepted %v after killing the leader", time.Since(start))
	mustGet(t, alive[1], "k", "v2")
	if l := c.Leader(t); l == leader {
		t.Fatalf("killed member %s still leader", leader.Name)
	}

	// The killed member rejoins and catches up.
	leader.Restart(t)
	tr.add(leader)
	if err := eventually(10*time.Second, func() error {
		v, _, err := get(leader, "k")
		if err == nil && v != "v2" {
			err = fmt.Errorf("k = %q, want v2", v)
		}
		return err
	}); err != nil {
		t.Fatalf("restarted %s: %v", leader.Name, err)
	}

	pids := make([]int, len(c.Members))
	for i, m := range c.Members {
		pids[i] = m.PID()
	}
	start = time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("cluster stopped in %v", time.Since(start))
	for _, pid := range pids {
		assertGone(t, pid)
	}

	// A stopped cluster comes back with its data.
	c.Restart(t)
	tr.add(c.Members...)
	mustGet(t, m2, "k", "v2")
}
