package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/internal/testutil"
)

// requireFUSE skips the test when a real mount is impossible here.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: load the fuse module (modprobe fuse) to run mount tests")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("not root and no fusermount3: run as root or apt-get install fuse3")
		}
	}
	requireSQLite(t)
}

// isMounted reports whether dir is a mountpoint in /proc/mounts.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// kvfsProcess is `kvfs mount` running as a child process (this test binary
// re-executed as kvfs).
type kvfsProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	mnt    string
	stderr *testutil.SyncBuffer
	exited chan struct{}
	err    error
}

// startMount runs kvfs mount with args (the mountpoint last) and stops it
// in t.Cleanup if the test did not.
func startMount(t *testing.T, mnt string, args ...string) *kvfsProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append(append([]string{"mount"}, args...), mnt)...)
	// Compact after two commits, so a short test sees compaction run.
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "KVFS_COMPACTION_MAX_DELTAS=2")
	p := &kvfsProcess{t: t, cmd: cmd, mnt: mnt, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if isMounted(t, mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("kvfs mount output:\n%s", p.stderr.String())
		}
	})
	return p
}

// waitExit waits for the process to exit and returns its exit code.
func (p *kvfsProcess) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("kvfs mount did not exit within %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

// waitMessage waits for a notification starting with prefix.
func waitMessage(t *testing.T, ch <-chan string, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				t.Fatalf("notify socket closed before %q", prefix)
			}
			if strings.HasPrefix(msg, prefix) {
				return msg
			}
		case <-deadline:
			t.Fatalf("no %q notification within %v", prefix, timeout)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metricSum adds the values of the samples of name whose labels contain
// every label given (`db="app.db"`).
func metricSum(body, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series := line[:i]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMount runs `kvfs mount` as systemd would: READY=1 only once the mount
// answers, queries and writes through it, /metrics and /healthz, other
// commands reaching its embedded etcd through the data dir, and SIGTERM:
// STOPPING=1, exit 0, no mount and no etcd left.
func TestMount(t *testing.T) {
	requireFUSE(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	mnt := filepath.Join(t.TempDir(), "mnt") // created by kvfs mount
	src := makeDB(t, 1000)
	if code, _, errOut := runCmd(ctx, "import", "--data-dir", dataDir, src, "app.db"); code != 0 {
		t.Fatalf("import: %s", errOut)
	}

	notes := notifySocket(t)
	addr := freePort(t)
	p := startMount(t, mnt, "--data-dir", dataDir, "--metrics-addr", addr, "--spool-dir", t.TempDir(),
		"--lease-ttl", "3s", "--quota-bytes", "100MiB", "--log-format", "json")
	ready := waitMessage(t, notes, "READY=1", 60*time.Second)
	// Ready means serving: no retry needed.
	if !isMounted(t, mnt) {
		t.Fatalf("READY=1 (%q) before the mount appeared", ready)
	}
	q := "select count(*), sum(length(payload)) from t;"
	if got, want := sqlite(t, filepath.Join(mnt, "app.db"), q), sqlite(t, src, q); got != want {
		t.Fatalf("query through the mount: %q, want %q", got, want)
	}
	sqlite(t, filepath.Join(mnt, "app.db"), "insert into kv values ('through', 'the mount'); update t set name = 'x' where id < 100;")
	dump := sqlite(t, filepath.Join(mnt, "app.db"), ".dump")

	// df reports the embedded etcd's quota (2 GiB by default) as the size.
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || st.Blocks*uint64(st.Bsize) != 2<<30 || st.Bavail == 0 || st.Bavail >= st.Blocks {
		t.Fatalf("statfs: %v, %d blocks of %d, %d free", err, st.Blocks, st.Bsize, st.Bavail)
	}

	// Other commands reach the mount's etcd through the data dir.
	code, out, errOut := runCmd(ctx, "ls", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "app.db") {
		t.Fatalf("ls while mounted: %d %q %q", code, out, errOut)
	}
	exp := filepath.Join(t.TempDir(), "exp.db")
	if code, _, errOut := runCmd(ctx, "export", "--data-dir", dataDir, "app.db", exp); code != 0 {
		t.Fatalf("export while mounted: %s", errOut)
	}
	checkIntegrity(t, exp)
	if got := sqlite(t, exp, ".dump"); got != dump {
		t.Fatal("the export's .dump differs from the mount's")
	}
	if code, out, errOut := runCmd(ctx, "verify", "--data-dir", dataDir); code != 0 || !strings.Contains(out, "app.db: ok: txid 3") {
		t.Fatalf("verify while mounted: %d %q %q", code, out, errOut)
	}

	// Health and metrics, with plausible values.
	status, body := httpGet(t, "http://"+addr+"/healthz")
	var h health
	if err := json.Unmarshal([]byte(body), &h); err != nil || status != 200 || !h.OK || !h.Mounted || h.Etcd != "ok" || h.LeasesHeld > 1 {
		t.Fatalf("healthz: %d %q", status, body)
	}
	_, body = httpGet(t, "http://"+addr+"/metrics")
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if v, found := metricSum(body, "kvfs_compaction_runs_total", `result="ok"`); found && v >= 1 {
			break
		}
		_, body = httpGet(t, "http://"+addr+"/metrics")
	}
	checks := []struct {
		name   string
		labels []string
		ok     func(float64) bool
	}{
		{"kvfs_mount_up", nil, func(v float64) bool { return v == 1 }},
		{"kvfs_etcd_up", nil, func(v float64) bool { return v == 1 }},
		{"kvfs_pager_commits_total", nil, func(v float64) bool { return v >= 1 }},
		{"kvfs_pager_commit_seconds_count", nil, func(v float64) bool { return v >= 1 }},
		{"kvfs_pager_pages_read_total", nil, func(v float64) bool { return v >= 1 }},
		{"kvfs_fence_acquisitions_total", nil, func(v float64) bool { return v >= 1 }},
		{"kvfs_compaction_runs_total", []string{`result="ok"`}, func(v float64) bool { return v >= 1 }},
		{"kvfs_compaction_deltas_outstanding", []string{`db="app.db"`}, func(v float64) bool { return v < 2 }},
		{"kvfs_compaction_reclaimed_bytes_total", nil, func(v float64) bool { return v > 0 }},
		{"kvfs_quota_used_bytes", []string{`db="app.db"`}, func(v float64) bool { return v > 100e3 && v < 100<<20 }},
		{"kvfs_quota_max_bytes", []string{`db="app.db"`}, func(v float64) bool { return v == 100<<20 }},
		{"kvfs_db_txid", []string{`db="app.db"`}, func(v float64) bool { return v == 3 }},
		{"kvfs_etcd_headroom_bytes", nil, func(v float64) bool { return v > 1<<30 && v < 2<<30 }},
		{"go_goroutines", nil, func(v float64) bool { return v > 5 }},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 1<<20 }},
	}
	for _, c := range checks {
		v, found := metricSum(body, c.name, c.labels...)
		if !found || !c.ok(v) {
			t.Errorf("metric %s%v = %v (found %v)", c.name, c.labels, v, found)
		}
	}

	// An import replaces the database under the mount, which hands its
	// write lease over; the mount then serves the new contents.
	if code, out, errOut := runCmd(ctx, "import", "--force", "--data-dir", dataDir, src, "app.db"); code != 0 || !strings.Contains(out, "txid 4") {
		t.Fatalf("import while mounted: %d %q %q", code, out, errOut)
	}
	if got, want := sqlite(t, filepath.Join(mnt, "app.db"), ".dump"), sqlite(t, src, ".dump"); got != want {
		t.Fatal("the mount does not serve the imported database")
	}

	// SIGTERM: STOPPING=1, exit 0, nothing left behind.
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitMessage(t, notes, "STOPPING=1", 30*time.Second)
	if code := p.waitExit(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if isMounted(t, mnt) {
		t.Fatal("still mounted after exit")
	}
	if _, err := etcdstore.ReadEndpointFile(dataDir); !errors.Is(err, etcdstore.ErrNotRunning) {
		t.Fatalf("embedded etcd still announced after exit: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.Signal(0)); err == nil {
		t.Fatal("kvfs process still alive")
	}
	// The data survived the restart of the embedded etcd.
	if code, out, errOut := runCmd(ctx, "verify", "--data-dir", dataDir, "app.db"); code != 0 || !strings.Contains(out, "txid 4") {
		t.Fatalf("verify after stop: %q %q", out, errOut)
	}
}

// TestStopWhileStarting stops a mount at points of its start (while the
// embedded etcd starts, and as soon as the mount appears, while kvfs still
// checks that it serves): each is a clean stop, exit 0 with no mount and no
// etcd left, not a failure.
func TestStopWhileStarting(t *testing.T) {
	requireFUSE(t)
	for _, when := range []string{"200ms", "mounted"} {
		t.Run(when, func(t *testing.T) {
			dataDir := t.TempDir()
			mnt := filepath.Join(t.TempDir(), "mnt")
			p := startMount(t, mnt, "--data-dir", dataDir, "--spool-dir", t.TempDir())
			if d, err := time.ParseDuration(when); err == nil {
				time.Sleep(d)
			} else {
				for deadline := time.Now().Add(60 * time.Second); !isMounted(t, mnt); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("no mount within 60s")
					}
				}
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			if code := p.waitExit(60 * time.Second); code != 0 {
				t.Fatalf("exit code %d after SIGTERM %s into the start", code, when)
			}
			if isMounted(t, mnt) {
				t.Fatal("still mounted after exit")
			}
			if _, err := etcdstore.ReadEndpointFile(dataDir); !errors.Is(err, etcdstore.ErrNotRunning) {
				t.Fatalf("embedded etcd still announced after exit: %v", err)
			}
			t.Logf("%s: %s", when, strings.TrimSpace(p.stderr.String()))
		})
	}
}

// TestMountBusy stops a mount that has a file open: SIGTERM detaches it
// lazily and exits 0 after --shutdown-timeout; a second signal exits at
// once.
func TestMountBusy(t *testing.T) {
	requireFUSE(t)
	s := newTestStore(t)
	s.kvfs(0, "import", makeDB(t, 10), "app.db")
	for _, twice := range []bool{false, true} {
		t.Run(fmt.Sprintf("twice=%v", twice), func(t *testing.T) {
			notes := notifySocket(t)
			mnt := filepath.Join(t.TempDir(), "mnt")
			timeout := "1s"
			if twice {
				timeout = "1m"
			}
			p := startMount(t, mnt, append(s.args(), "--shutdown-timeout", timeout, "--lease-ttl", "2s")...)
			waitMessage(t, notes, "READY=1", 60*time.Second)
			f, err := os.Open(filepath.Join(mnt, "app.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			want := 0
			if twice {
				waitMessage(t, notes, "STOPPING=1", 30*time.Second)
				time.Sleep(200 * time.Millisecond)
				p.cmd.Process.Signal(syscall.SIGINT)
				want = 1
			}
			if code := p.waitExit(30 * time.Second); code != want {
				t.Fatalf("exit code %d, want %d", code, want)
			}
			if el := time.Since(start); el > 20*time.Second {
				t.Fatalf("took %v to stop", el)
			}
			if isMounted(t, mnt) {
				t.Fatal("busy mount not detached")
			}
		})
	}
	s.kvfs(0, "verify", "app.db")
}

// TestRaiseGOMAXPROCS: a mount runs extraProcs more Ps than CPUs, unless
// GOMAXPROCS is set by the user.
func TestRaiseGOMAXPROCS(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	raiseGOMAXPROCS(log)
	if got := runtime.GOMAXPROCS(0); got != before+extraProcs {
		t.Fatalf("GOMAXPROCS unset: %d Ps, want %d", got, before+extraProcs)
	}

	runtime.GOMAXPROCS(before)
	t.Setenv("GOMAXPROCS", "3")
	raiseGOMAXPROCS(log)
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS set by the user: %d Ps, want %d untouched", got, before)
	}
}
