package etcdtest

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pidTracker checks, after every etcdtest cleanup of a test has run, that
// each recorded etcd process is gone (not even a zombie).
type pidTracker struct{ pids []int }

// trackPIDs must be called before the test starts any member: cleanups run
// last-registered first, so its check runs after the members are stopped.
func trackPIDs(t *testing.T) *pidTracker {
	t.Helper()
	tr := &pidTracker{}
	t.Cleanup(func() {
		for _, pid := range tr.pids {
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("etcd pid %d still exists after cleanup", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return tr
}

// add records the current PID of each member.
func (tr *pidTracker) add(ps ...*Process) {
	for _, p := range ps {
		tr.pids = append(tr.pids, p.PID())
	}
}

// assertGone fails t if pid still exists.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d still exists", pid)
	}
}

// gatewayKV is a key-value pair as the JSON gateway encodes it ([]byte as
// base64).
type gatewayKV struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// put writes key=value through the member's JSON gateway.
func put(p *Process, key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reply struct{}
	return p.postJSON(ctx, "/v3/kv/put", gatewayKV{Key: []byte(key), Value: []byte(value)}, &reply)
}

// get reads key through the member's JSON gateway (a linearizable read);
// ok is false when the key does not exist.
func get(p *Process, key string) (value string, ok bool, err error) {
	var reply struct {
		Kvs []gatewayKV `json:"kvs"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.postJSON(ctx, "/v3/kv/range", gatewayKV{Key: []byte(key)}, &reply); err != nil {
		return "", false, err
	}
	if len(reply.Kvs) == 0 {
		return "", false, nil
	}
	return string(reply.Kvs[0].Value), true, nil
}

// mustGet fails t unless key reads as want on p.
func mustGet(t *testing.T, p *Process, key, want string) {
	t.Helper()
	got, ok, err := get(p, key)
	if err != nil {
		t.Fatalf("get %q on %s: %v", key, p.Name, err)
	}
	if !ok || got != want {
		t.Fatalf("get %q on %s = %q, %v; want %q", key, p.Name, got, ok, want)
	}
}

// eventually retries f every 100 ms until it succeeds or d has passed.
func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStartProcess(t *testing.T) {
	tr := trackPIDs(t)
	const quota = 64 << 20
	start := time.Now()
	p := StartProcess(t, Options{
		MaxRequestBytes:   64 << 10,
		QuotaBackendBytes: quota,
		UnsafeNoFsync:     true,
	})
	tr.add(p)
	t.Logf("single member healthy in %v", time.Since(start))

	if err := p.CheckHealth(); err != nil {
		t.Fatalf("CheckHealth: %v", err)
	}
	if eps := p.Endpoints(); len(eps) != 1 || eps[0] != p.ClientURL || !strings.HasPrefix(p.ClientURL, "http://127.0.0.1:") {
		t.Fatalf("Endpoints() = %q, ClientURL %q", eps, p.ClientURL)
	}
	if err := put(p, "/kvfs/hello", "world"); err != nil {
		t.Fatalf("put: %v", err)
	}
	mustGet(t, p, "/kvfs/hello", "world")
	if _, ok, err := get(p, "/kvfs/absent"); err != nil || ok {
		t.Fatalf("get absent key: ok=%v err=%v", ok, err)
	}

	// The options reach the server.
	var st struct {
		Version     string `json:"version"`
		DBSizeQuota int64  `json:"dbSizeQuota,string"`
	}
	if err := p.postJSON(t.Context(), "/v3/maintenance/status", struct{}{}, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	t.Logf("etcd server version %s", st.Version)
	if st.DBSizeQuota != quota {
		t.Errorf("dbSizeQuota = %d, want %d", st.DBSizeQuota, quota)
	}
	err := put(p, "/kvfs/big", strings.Repeat("x", 100<<10))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("put of 100 KiB with --max-request-bytes=64KiB: err = %v, want request too large", err)
	}

	pid := p.PID()
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if p.Running() {
		t.Fatal("Running after Stop")
	}
	assertGone(t, pid)
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := p.CheckHealth(); err == nil {
		t.Fatal("CheckHealth succeeded on a stopped member")
	}
}

func TestProcessKillRestart(t *testing.T) {
	tr := trackPIDs(t)
	p := StartProcess(t, Options{}) // fsync on: a crash must not lose the put
	tr.add(p)
	if err := put(p, "k", "survives a crash"); err != nil {
		t.Fatalf("put: %v", err)
	}
	pid := p.PID()
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	assertGone(t, pid)
	if err := p.CheckHealth(); err == nil {
		t.Fatal("CheckHealth succeeded on a killed member")
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}

	start := time.Now()
	p.Restart(t)
	tr.add(p)
	t.Logf("restarted in %v", time.Since(start))
	if p.PID() == pid {
		t.Fatalf("PID unchanged after Restart: %d", pid)
	}
	mustGet(t, p, "k", "survives a crash")

	// Restart of a running member stops it first.
	pid = p.PID()
	p.Restart(t)
	tr.add(p)
	assertGone(t, pid)
	mustGet(t, p, "k", "survives a crash")
}

func TestPauseResume(t *testing.T) {
	tr := trackPIDs(t)
	p := StartProcess(t, Options{UnsafeNoFsync: true})
	tr.add(p)

	if err := p.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	start := time.Now()
	err := p.CheckHealth()
	if err == nil {
		t.Fatal("CheckHealth succeeded on a paused member")
	}
	t.Logf("paused: CheckHealth failed after %v: %v", time.Since(start), err)
	if !p.Running() {
		t.Fatal("a paused member is not Running")
	}

	if err := p.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := eventually(10*time.Second, p.CheckHealth); err != nil {
		t.Fatalf("not healthy after Resume: %v", err)
	}
	if err := put(p, "after", "resume"); err != nil {
		t.Fatalf("put after Resume: %v", err)
	}

	// Stop resumes a paused member first, so it shuts down gracefully
	// instead of waiting out the SIGKILL fallback.
	if err := p.Pause(); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	start = time.Now()
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop of a paused member: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop of a paused member took %v", d)
	}
	if err := p.Pause(); err == nil {
		t.Error("Pause of a stopped member succeeded")
	}
}

// TestPausedCleanup leaves a member paused for the cleanup, which must
// resume and stop it (the pid tracker checks it is gone).
func TestPausedCleanup(t *testing.T) {
	tr := trackPIDs(t)
	p := StartProcess(t, Options{UnsafeNoFsync: true})
	tr.add(p)
	if err := p.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
}

// TestStartRetriesTakenPort hands the first start a client port that is in
// use: etcd exits with "address already in use" and the start retries on
// fresh ports.
func TestStartRetriesTakenPort(t *testing.T) {
	tr := trackPIDs(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if err == nil && calls == 1 {
			ports[0] = taken.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()

	p := StartProcess(t, Options{UnsafeNoFsync: true})
	tr.add(p)
	if calls != 2 {
		t.Fatalf("ports picked %d times, want 2", calls)
	}
	if p.ClientURL == "http://"+taken.Addr().String() {
		t.Fatalf("started on the taken port %s", p.ClientURL)
	}
	if err := put(p, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
}
