package tests

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore/etcdtest"
)

// soakEnv sets the soak's duration (make soak: SOAK=30m); the soak is
// skipped without it.
const soakEnv = "KVFS_SOAK"

// TestSoak runs the fault suite's etcd faults in a random schedule (seed
// printed) for KVFS_SOAK, under a rollback-mode and a WAL-mode load on a
// 3-member cluster, then checks every commit's outcome on two hosts and
// writes a summary table (faults, commits acknowledged, lost: must be 0,
// longest stall) to the log and to soak-results/.
func TestSoak(t *testing.T) {
	v := os.Getenv(soakEnv)
	if v == "" {
		t.Skipf("soak: run with %s=30m (make soak SOAK=30m)", soakEnv)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", soakEnv, v, err)
	}
	t.Setenv("KVFS_INTEGRATION", "1")
	r := startFaultRig(t)
	seed := seedOf(t, "KVFS_SOAK_SEED")
	rng := rand.New(rand.NewPCG(seed, 0x736f616b))
	loads := []*faultLoad{
		startFaultLoad(t, r.a.Path("soak-delete.db"), "delete", rng.Uint64()),
		startFaultLoad(t, r.a.Path("soak-wal.db"), "wal", rng.Uint64()),
	}
	faults := map[string]int{}
	start := time.Now()
	settle := func(what string) {
		for _, l := range loads {
			l.waitAcked(5, 2*time.Minute, what)
		}
	}
	settle("before the faults")
	for i := 1; time.Since(start) < d; i++ {
		kind := soakFaults[rng.IntN(len(soakFaults))]
		t.Logf("%s fault %d: %s", time.Since(start).Round(time.Second), i, kind.name)
		kind.run(t, r.c, rng)
		faults[kind.name]++
		settle("after " + kind.name)
		// Run unharmed for a while (1 to 10 s) before the next fault.
		time.Sleep(time.Second + time.Duration(rng.IntN(9000))*time.Millisecond)
	}
	lost, landed := r.finish(t, loads...)
	sums := make([]faultSummary, len(loads))
	for i, l := range loads {
		sums[i] = l.summary()
	}
	table := soakTable(d, seed, faults, loads, sums, lost, landed)
	t.Logf("soak summary:\n%s", table)
	dir := filepath.Join("..", "soak-results")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		name := filepath.Join(dir, fmt.Sprintf("soak-%s.md", time.Now().UTC().Format("2006-01-02T1504")))
		if err := os.WriteFile(name, []byte(table), 0o644); err == nil {
			t.Logf("summary written to %s", name)
		}
	}
	if lost != 0 {
		t.Errorf("%d commits lost or reported failed and landed", lost)
	}
}

// soakFault is one kind of fault of the schedule.
type soakFault struct {
	name string
	run  func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand)
}

var soakFaults = []soakFault{
	{"kill -9 the leader, restart it", func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) {
		m := c.Leader(t)
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(1+rng.IntN(5)) * time.Second)
		m.Restart(t)
	}},
	{"kill -9 a follower, restart it", func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) {
		m := soakFollower(t, c, rng)
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(1+rng.IntN(5)) * time.Second)
		m.Restart(t)
	}},
	{"quorum loss (SIGSTOP two members)", func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) {
		ms := []*etcdtest.Process{c.Leader(t)}
		ms = append(ms, soakFollower(t, c, rng))
		for _, m := range ms {
			if err := m.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(faultRequestTimeout + time.Duration(rng.IntN(6000))*time.Millisecond)
		for _, m := range ms {
			if err := m.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"quorum loss (kill -9 two members)", func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) {
		ms := []*etcdtest.Process{c.Leader(t)}
		ms = append(ms, soakFollower(t, c, rng))
		for _, m := range ms {
			if err := m.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(faultRequestTimeout + time.Duration(rng.IntN(6000))*time.Millisecond)
		c.Restart(t)
	}},
	{"slow etcd (SIGSTOP bursts, 5 s)", func(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) {
		slowBursts(t, c, rng.Uint64(), 5*time.Second)
	}},
}

// soakFollower returns a random member that is not the leader.
func soakFollower(t *testing.T, c *etcdtest.Cluster, rng *rand.Rand) *etcdtest.Process {
	leader := c.Leader(t)
	var fs []*etcdtest.Process
	for _, m := range c.Members {
		if m != leader {
			fs = append(fs, m)
		}
	}
	return fs[rng.IntN(len(fs))]
}

func soakTable(d time.Duration, seed uint64, faults map[string]int, loads []*faultLoad, sums []faultSummary, lost, landed int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kvfs soak: %s on a 3-member etcd cluster, seed %d (replay: KVFS_SOAK_SEED=%d)\n\n", d, seed, seed)
	b.WriteString("| fault | injected |\n|---|---:|\n")
	names := make([]string, 0, len(faults))
	for n := range faults {
		names = append(names, n)
	}
	sort.Strings(names)
	total := 0
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %d |\n", n, faults[n])
		total += faults[n]
	}
	fmt.Fprintf(&b, "| all | %d |\n\n", total)
	b.WriteString("| load | commits | acknowledged | failed | longest stall | reads (failed) |\n|---|---:|---:|---:|---:|---:|\n")
	for i, l := range loads {
		s := sums[i]
		fmt.Fprintf(&b, "| %s (%s) | %d | %d | %d | %s | %d (%d) |\n", filepath.Base(l.path), l.mode, s.Commits, s.Acked, s.Failed, s.Stall.Round(time.Millisecond), s.Reads, s.ReadErrs)
	}
	fmt.Fprintf(&b, "\nlost (acknowledged and missing, or reported failed and landed): **%d**; reported failed with the outcome unknown (no quorum) and landed: %d\n", lost, landed)
	return b.String()
}
