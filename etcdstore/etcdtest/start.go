package etcdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// startAttempts is how many times a start picks fresh ports when a member
// could not bind one (another process took it between probe and use).
const startAttempts = 3

// startMembers starts n members forming one cluster, registering their
// cleanup, and retries with new ports and data dirs when a port was taken.
func startMembers(tb testing.TB, n int, opts Options) []*Process {
	tb.Helper()
	if testing.Short() {
		tb.Skip("etcdtest: starts real etcd server processes; run without -short")
	}
	bin := ServerBinary(tb)
	for attempt := 1; ; attempt++ {
		members, err := newMembers(tb, bin, n, opts)
		if err != nil {
			tb.Fatalf("etcdtest: %v", err)
		}
		tb.Cleanup(func() { cleanup(tb, members) })
		for _, m := range members {
			if err = m.start(); err != nil {
				break
			}
		}
		if err == nil {
			err = waitAllHealthy(members)
		}
		if err == nil {
			return members
		}
		if errors.Is(err, errRetryPorts) && attempt < startAttempts {
			tb.Logf("etcdtest: attempt %d: %v; retrying with new ports", attempt, err)
			_ = stopAll(members)
			continue
		}
		tb.Fatalf("etcdtest: start %d-member etcd cluster: %v\n%s", n, err, logTails(members))
	}
}

// errRetryPorts marks a start failure that new ports can fix.
var errRetryPorts = errors.New("port in use")

// waitAllHealthy waits until every member is healthy, up to startTimeout.
// It gives up as soon as one member exits, since the others then wait for
// a quorum in vain; the error wraps errRetryPorts if that member could not
// bind its ports.
func waitAllHealthy(members []*Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			if errs[i] = m.waitHealthy(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// Report the root cause: a member that exited, not the ones cancelled
	// because of it.
	for _, err := range errs {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.PortInUse {
				return fmt.Errorf("%w: %w", errRetryPorts, err)
			}
			return err
		}
	}
	return errors.Join(errs...)
}

// newMembers lays out n members on fresh ports under a new temp dir.
func newMembers(tb testing.TB, bin string, n int, opts Options) ([]*Process, error) {
	ports, err := pickPorts(2 * n)
	if err != nil {
		return nil, err
	}
	token, err := clusterToken()
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	members := make([]*Process, n)
	var initial []string
	for i := range members {
		name := "etcd" + strconv.Itoa(i)
		members[i] = &Process{
			Name:      name,
			DataDir:   filepath.Join(dir, name, "data"),
			LogPath:   filepath.Join(dir, name, "etcd.log"),
			ClientURL: "http://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			PeerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			bin:       bin,
		}
		initial = append(initial, name+"="+members[i].PeerURL)
	}
	for _, m := range members {
		// Only the member dir: etcd creates the data dir itself, 0700.
		if err := os.MkdirAll(filepath.Dir(m.LogPath), 0o755); err != nil {
			return nil, err
		}
		m.args = append([]string{
			"--name=" + m.Name,
			"--data-dir=" + m.DataDir,
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=" + token,
			"--log-level=warn",
			"--log-outputs=stderr",
		}, opts.flags()...)
	}
	return members, nil
}

// pickPorts chooses the ports of new members; tests replace it to simulate
// a port taken between probe and use.
var pickPorts = freePorts

// freePorts returns n distinct TCP ports that were free on 127.0.0.1. All
// listeners are held until every port is chosen, so the ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// clusterToken returns a random --initial-cluster-token, so members of
// different test clusters never accept each other's raft messages.
func clusterToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "kvfs-etcdtest-" + hex.EncodeToString(b), nil
}

// cleanup is the tb.Cleanup of a started set of members: on failure it logs
// their log tails, then it stops them all and checks they are gone.
func cleanup(tb testing.TB, members []*Process) {
	if tb.Failed() {
		for _, m := range members {
			if m.PID() != 0 {
				tb.Logf("%s", m.logTail(logTailLines))
			}
		}
	}
	if err := stopAll(members); err != nil {
		tb.Logf("etcdtest: cleanup: %v", err)
	}
	for _, m := range members {
		if m.Running() {
			tb.Errorf("etcdtest: cleanup: etcd %s (pid %d) still running", m.Name, m.PID())
		}
	}
}

// stopAll stops members (see Process.Stop) and joins their errors.
//
// The order matters: a leader asked to stop first hands its leadership to
// a follower, and when that follower is stopping too the handover waits out
// etcd's request timeout (7 s). So stopAll stops the followers concurrently
// and the leader last (a leader whose peers are gone skips the handover);
// when no member can say which is leader, it stops them one at a time,
// which keeps every handover short.
func stopAll(members []*Process) error {
	for _, m := range members {
		m.resumeIfPaused()
	}
	if len(members) == 1 {
		return members[0].Stop()
	}
	leader := findLeader(members)
	if leader == nil {
		var errs []error
		for _, m := range members {
			errs = append(errs, m.Stop())
		}
		return errors.Join(errs...)
	}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m != leader {
			wg.Go(func() { errs[i] = m.Stop() })
		}
	}
	wg.Wait()
	errs = append(errs, leader.Stop())
	return errors.Join(errs...)
}

// findLeader asks every running member concurrently which member leads and
// returns the one that says it is the leader, or nil.
func findLeader(members []*Process) *Process {
	says := make([]bool, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if !m.Running() {
			continue
		}
		wg.Go(func() {
			st, err := m.status()
			says[i] = err == nil && st.Leader != 0 && st.Leader == st.Header.MemberID
		})
	}
	wg.Wait()
	for i, m := range members {
		if says[i] {
			return m
		}
	}
	return nil
}

// logTails joins the log tails of the members that were started.
func logTails(members []*Process) string {
	var b strings.Builder
	for _, m := range members {
		if m.PID() != 0 {
			b.WriteString(m.logTail(logTailLines))
			b.WriteByte('\n')
		}
	}
	return b.String()
}
