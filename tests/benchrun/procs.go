package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// etcdMember is one etcd server process started from bin/etcd-server.
type etcdMember struct {
	name, dataDir, logPath string
	clientURL, peerURL     string
	cmd                    *exec.Cmd
	done                   chan struct{}
}

// startEtcd starts an n-member etcd cluster on free loopback ports under
// dir, at etcd's default limits and with fsync, and waits until every member
// is healthy. It retries with new ports when one was taken meanwhile. The
// caller stops the members with stopEtcd, also on error.
func startEtcd(ctx context.Context, bin, dir string, n int) ([]*etcdMember, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		members, err := launchEtcd(bin, filepath.Join(dir, fmt.Sprintf("try%d", attempt)), n)
		if err == nil {
			err = waitEtcdHealthy(ctx, members)
		}
		if err == nil {
			return members, nil
		}
		stopEtcd(members)
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start %d-member etcd: %w", n, lastErr)
}

// launchEtcd starts the member processes without waiting for them.
func launchEtcd(bin, dir string, n int) ([]*etcdMember, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	var members []*etcdMember
	var initial []string
	for i := range n {
		name := "etcd" + strconv.Itoa(i)
		m := &etcdMember{
			name:      name,
			dataDir:   filepath.Join(dir, name, "data"),
			logPath:   filepath.Join(dir, name, "etcd.log"),
			clientURL: "http://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			peerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
		}
		members = append(members, m)
		initial = append(initial, name+"="+m.peerURL)
	}
	for _, m := range members {
		if err := os.MkdirAll(filepath.Dir(m.logPath), 0o755); err != nil {
			return members, err
		}
		logf, err := os.Create(m.logPath)
		if err != nil {
			return members, err
		}
		m.cmd = exec.Command(bin,
			"--name="+m.name,
			"--data-dir="+m.dataDir,
			"--listen-client-urls="+m.clientURL,
			"--advertise-client-urls="+m.clientURL,
			"--listen-peer-urls="+m.peerURL,
			"--initial-advertise-peer-urls="+m.peerURL,
			"--initial-cluster="+strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=kvfs-bench-"+hex.EncodeToString(tok),
			"--log-level=warn",
			"--log-outputs=stderr",
		)
		m.cmd.Stdout, m.cmd.Stderr = logf, logf
		m.cmd.Env = withoutEtcdEnv(childEnv())
		m.cmd.SysProcAttr = childAttr(syscall.SIGKILL)
		err = m.cmd.Start()
		logf.Close()
		if err != nil {
			return members, fmt.Errorf("start %s: %w", bin, err)
		}
		m.done = make(chan struct{})
		go func(m *etcdMember) { _ = m.cmd.Wait(); close(m.done) }(m)
	}
	return members, nil
}

// waitEtcdHealthy polls every member's /health until all say true.
func waitEtcdHealthy(ctx context.Context, members []*etcdMember) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, m := range members {
		for {
			err := m.health(ctx)
			if err == nil {
				break
			}
			select {
			case <-m.done:
				return fmt.Errorf("etcd %s exited during startup: %s", m.name, tail(m.logPath, 10))
			case <-ctx.Done():
				return fmt.Errorf("etcd %s not healthy: %v (%w)", m.name, err, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (m *etcdMember) health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.clientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if !strings.Contains(string(b), `"health":"true"`) {
		return fmt.Errorf("GET /health: %s", b)
	}
	return nil
}

// stopEtcd stops the members one at a time (which keeps each leader
// handover short): SIGTERM, then SIGKILL after 10 s.
func stopEtcd(members []*etcdMember) {
	for _, m := range members {
		if m.cmd == nil || m.cmd.Process == nil || m.done == nil {
			continue
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.done
		}
	}
}

// endpoints returns the members' client URLs.
func endpoints(members []*etcdMember) []string {
	var out []string
	for _, m := range members {
		out = append(out, m.clientURL)
	}
	return out
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
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

// withoutEtcdEnv drops ETCD_* variables, which etcd would read as flags.
func withoutEtcdEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "ETCD_UNSUPPORTED_ARCH=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// childAttr puts a child in its own process group, so a ^C aimed at the
// benchmark reaches only the benchmark, which then stops its children in
// order; and asks the kernel to send sig to the child if the benchmark dies
// without cleaning up.
func childAttr(sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
}

// mountProc is one file-system daemon serving a mountpoint: `kvfs mount`,
// or LiteFS's `litefs mount`.
type mountProc struct {
	name    string // for messages: "kvfs mount", "litefs mount"
	bin     string
	args    []string // the whole argument list
	ready   string   // the output line that says the mount serves (its start)
	mnt     string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	pid  int

	rss *rssPeaks // this session's
}

// rssPeaks are the largest RssAnon and RssFile (KiB) sampled from one
// daemon process: /proc keeps the peak of their sum only (VmHWM).
type rssPeaks struct {
	mu         sync.Mutex
	anon, file int64
}

// rssEvery is how often a running daemon's RssAnon and RssFile are sampled.
const rssEvery = 100 * time.Millisecond

// sample reads pid's RssAnon and RssFile once into r.
func (r *rssPeaks) sample(pid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	anon, aerr := statusKiB(string(b), "RssAnon:")
	file, ferr := statusKiB(string(b), "RssFile:")
	if aerr != nil || ferr != nil {
		return
	}
	r.mu.Lock()
	r.anon, r.file = max(r.anon, anon), max(r.file, file)
	r.mu.Unlock()
}

// sampleRSS samples pid into r every rssEvery until done closes.
func sampleRSS(r *rssPeaks, pid int, done <-chan struct{}) {
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	for {
		r.sample(pid)
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// status returns the running daemon's /proc/PID/status.
func (m *mountProc) status() (string, error) {
	if m.cmd == nil {
		return "", errors.New("mount not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
	return string(b), err
}

// anonRSS returns the running daemon's RssAnon now, in KiB.
func (m *mountProc) anonRSS() (int64, error) {
	s, err := m.status()
	if err != nil {
		return 0, err
	}
	return statusKiB(s, "RssAnon:")
}

// peaks samples the running daemon once more and returns the largest
// RssAnon and RssFile of this session.
func (m *mountProc) peaks() (anon, file int64) {
	r := m.rss
	if r == nil {
		return 0, 0
	}
	if m.cmd != nil {
		r.sample(m.pid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.anon, r.file
}

// kvfsMount returns the `kvfs mount` of mnt with flags.
func kvfsMount(bin string, flags []string, mnt, logPath string) *mountProc {
	return &mountProc{name: "kvfs mount", bin: bin, args: append(append([]string{"mount"}, flags...), mnt),
		ready: "kvfs: mounted at", mnt: mnt, logPath: logPath}
}

// start runs the daemon and waits until it prints its ready line (up to 2
// minutes). It returns the time from exec to ready.
func (m *mountProc) start(ctx context.Context) (time.Duration, error) {
	if m.cmd != nil {
		return 0, errors.New("mount already running")
	}
	logf, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return 0, err
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = pw, pw // LiteFS logs its ready line to stderr
	cmd.Env = childEnv()
	// SIGTERM: a daemon whose benchmark died unmounts itself.
	cmd.SysProcAttr = childAttr(syscall.SIGTERM)
	t0 := time.Now()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		logf.Close()
		return 0, fmt.Errorf("start %s: %w", m.name, err)
	}
	m.cmd, m.pid, m.done = cmd, cmd.Process.Pid, make(chan struct{})
	m.rss = &rssPeaks{}
	go sampleRSS(m.rss, m.pid, m.done)
	mounted := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if !signalled && strings.Contains(sc.Text(), m.ready) {
				signalled = true
				close(mounted)
			}
		}
		pr.Close()
		_ = cmd.Wait()
		logf.Close()
		close(m.done)
	}()
	select {
	case <-mounted:
		return time.Since(t0), nil
	case <-m.done:
		m.cmd = nil
		return 0, fmt.Errorf("%s %s exited: %s", m.name, m.mnt, tail(m.logPath, 10))
	case <-ctx.Done():
		m.stop()
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		m.stop()
		return 0, fmt.Errorf("%s %s: not mounted within 2 minutes: %s", m.name, m.mnt, tail(m.logPath, 10))
	}
}

// peakRSS returns the VmHWM of the running mount process, in KiB.
func (m *mountProc) peakRSS() (int64, error) {
	s, err := m.status()
	if err != nil {
		return 0, err
	}
	return parseVmHWM(s)
}

// stop asks the daemon to unmount (SIGTERM) and waits up to 40 s; then it
// stops it with SIGQUIT (and SIGKILL 5 s later). Either way it makes sure nothing is left mounted (umount -l).
func (m *mountProc) stop() error {
	if m.cmd == nil {
		return nil
	}
	var err error
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(40 * time.Second):
		// SIGQUIT first: a Go daemon prints every goroutine's stack to its
		// log (where the hang is), then exits.
		_ = m.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.done
		}
		err = fmt.Errorf("%s %s (pid %d) did not exit within 40 s of SIGTERM; stopped with SIGQUIT (goroutine stacks in %s)", m.name, m.mnt, m.pid, m.logPath)
	}
	m.cmd = nil
	if isMounted(m.mnt) {
		if out, uerr := exec.Command("umount", "-l", m.mnt).CombinedOutput(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("umount -l %s: %v: %s", m.mnt, uerr, out))
		}
	}
	return err
}

// isMounted reports whether dir is a mountpoint in /proc/mounts.
func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	return mountsUnder(string(b), dir, true)
}

// mountsUnder reports whether /proc/mounts text lists dir (exact) or, when
// exact is false, anything at or below dir.
func mountsUnder(procMounts, dir string, exact bool) bool {
	dir = filepath.Clean(dir)
	for _, line := range strings.Split(procMounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		p := strings.ReplaceAll(f[1], `\040`, " ")
		if p == dir || (!exact && strings.HasPrefix(p, dir+"/")) {
			return true
		}
	}
	return false
}

// parseVmHWM returns the VmHWM field of /proc/PID/status text, in KiB.
func parseVmHWM(status string) (int64, error) { return statusKiB(status, "VmHWM:") }

// statusKiB returns the field of /proc/PID/status text whose line starts
// with key (e.g. "VmHWM:"), in KiB.
func statusKiB(status, key string) (int64, error) {
	name := strings.TrimSuffix(key, ":")
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse %s: unexpected %q", name, line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", name, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("parse %s: no %s line", name, name)
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("last lines of %s:\n%s", path, strings.Join(lines, "\n"))
}
