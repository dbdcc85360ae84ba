package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds how long a start waits for /health.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// pollInterval is the /health polling period while starting.
	pollInterval = 50 * time.Millisecond
	// logTailLines is how much of a member's log failures print.
	logTailLines = 40
)

// Process is one etcd member running as a separate process. Its exported
// fields are fixed when it is created and must not be changed; its methods
// are safe for concurrent use.
//
// A Process lives until the cleanup registered by StartProcess or
// StartCluster stops it; in between it can be stopped, killed, paused and
// restarted any number of times, always on the same data dir and ports.
type Process struct {
	Name      string // member name (--name)
	DataDir   string // --data-dir; kept across Kill, Stop and Restart
	LogPath   string // stdout and stderr of every run, appended
	ClientURL string // http://127.0.0.1:port, for clients and the JSON gateway
	PeerURL   string // http://127.0.0.1:port, for raft traffic

	bin  string   // server binary
	args []string // full command line after the binary

	mu      sync.Mutex
	cmd     *exec.Cmd     // current or last run; nil before the first start
	done    chan struct{} // closed once cmd has been reaped
	exitErr error         // cmd.Wait's result, set before done closes
	paused  bool          // SIGSTOP sent and no SIGCONT since
}

// StartProcess starts a single-member etcd cluster on free 127.0.0.1 ports
// with its data dir under tb.TempDir(), and waits until it is healthy,
// failing tb if it is not within 30 s. A tb.Cleanup stops it (resuming it
// first if paused) and, if the test failed, prints the end of its log. It
// skips the test under -short and when no server binary is available (see
// ServerBinary).
func StartProcess(tb testing.TB, opts Options) *Process {
	tb.Helper()
	return startMembers(tb, 1, opts)[0]
}

// Endpoints returns the member's client URLs, for clientv3.Config.Endpoints.
func (p *Process) Endpoints() []string { return []string{p.ClientURL} }

// PID returns the process id of the current run, or of the last one when the
// member is not running, or 0 before the first start.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the member's process exists (it may be paused).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Process) runningLocked() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// state returns the current run's command and reap channel, or nils when
// the member is not running.
func (p *Process) state() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return nil, nil
	}
	return p.cmd, p.done
}

// Stop shuts the member down gracefully: SIGCONT if it is paused, SIGTERM,
// then SIGKILL if it has not exited within 10 s. It returns after the
// process has been reaped, and returns an error only when SIGKILL was needed
// (the process is gone even then). Stopping a member that is not running is a
// no-op, so Stop is idempotent. The data dir is kept.
func (p *Process) Stop() error {
	cmd, done := p.state()
	if cmd == nil {
		return nil
	}
	p.mu.Lock()
	paused := p.paused
	p.paused = false
	p.mu.Unlock()
	if paused {
		// A stopped process does not act on SIGTERM until continued.
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	// os.Process.Signal uses a pidfd, so a reaped PID is never signalled;
	// errors here mean the process already exited, which done reports.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return fmt.Errorf("etcd %s (pid %d) ignored SIGTERM for %v; killed", p.Name, cmd.Process.Pid, stopTimeout)
}

// Kill crashes the member with SIGKILL and returns after the process has
// been reaped. The data dir is kept, so Restart recovers from what etcd had
// made durable. Killing a member that is not running is a no-op.
func (p *Process) Kill() error {
	cmd, done := p.state()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill etcd %s: %w", p.Name, err)
	}
	<-done
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return nil
}

// Pause freezes the member with SIGSTOP: its sockets stay open but nothing
// answers, which to its peers and clients looks like a partition or a long
// GC pause. Resume undoes it; Stop and the cleanup resume it first.
func (p *Process) Pause() error { return p.signalPause(syscall.SIGSTOP, true) }

// Resume continues a member frozen by Pause with SIGCONT.
func (p *Process) Resume() error { return p.signalPause(syscall.SIGCONT, false) }

// resumeIfPaused sends SIGCONT if the member is paused.
func (p *Process) resumeIfPaused() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused && p.runningLocked() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
}

func (p *Process) signalPause(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return fmt.Errorf("etcd %s: %v: not running", p.Name, sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("etcd %s: %v: %w", p.Name, sig, err)
	}
	p.paused = paused
	if paused {
		// SIGSTOP is asynchronous: wait until every thread has stopped, or
		// a request already on its way can still be answered.
		return waitStopped(p.cmd.Process.Pid, 2*time.Second)
	}
	return nil
}

// waitStopped waits until every thread of pid is in the stopped state
// (/proc/PID/task/*/stat state T).
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return nil // not Linux, or the process is gone: nothing to wait for
		}
		stopped := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
			if err != nil {
				continue
			}
			// The state follows the parenthesised command name.
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] != 'T' && b[i+2] != 't' {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: not stopped within %v", pid, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Restart stops the member if it is running (as Stop does), starts it again
// with the same flags, data dir and ports, and waits until it is healthy,
// failing tb if it is not within 30 s. A cluster member becomes healthy only
// once a quorum is up; to bring back several stopped members use
// Cluster.Restart, which starts them together.
func (p *Process) Restart(tb testing.TB) {
	tb.Helper()
	if err := p.Stop(); err != nil {
		tb.Logf("etcdtest: %v", err)
	}
	if err := p.start(); err != nil {
		tb.Fatalf("etcdtest: restart %s: %v", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := p.waitHealthy(ctx); err != nil {
		tb.Fatalf("etcdtest: restart %s: %v\n%s", p.Name, err, p.logTail(logTailLines))
	}
}

// start launches the server process; it does not wait for it to be ready.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(p.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "=== etcdtest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))

	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = serverEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.paused = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// serverEnv is the test's environment without ETCD_* variables, which etcd
// would read as flags (ETCD_UNSUPPORTED_ARCH is kept: it is needed to run at
// all on some platforms).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "ETCD_UNSUPPORTED_ARCH=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exitError reports a member that exited while it was expected to start.
type exitError struct {
	Name string
	Err  error // from cmd.Wait
	// PortInUse is true when the log says a listener could not bind, which a
	// start with new ports can fix.
	PortInUse bool
}

func (e *exitError) Error() string {
	return fmt.Sprintf("etcd %s exited during startup: %v", e.Name, e.Err)
}

func (e *exitError) Unwrap() error { return e.Err }

// waitHealthy polls /health until it reports healthy, the process exits, or
// ctx ends.
func (p *Process) waitHealthy(ctx context.Context) error {
	_, done := p.state()
	if done == nil {
		return &exitError{Name: p.Name, Err: p.lastExit()}
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		if last = p.CheckHealth(); last == nil {
			return nil
		}
		select {
		case <-done:
			tail := p.logTail(logTailLines)
			return &exitError{
				Name:      p.Name,
				Err:       p.lastExit(),
				PortInUse: strings.Contains(tail, "address already in use"),
			}
		case <-ctx.Done():
			return fmt.Errorf("etcd %s not healthy: %w (last check: %v)", p.Name, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (p *Process) lastExit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// logTail returns the last n lines of the member's log, labelled.
func (p *Process) logTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("--- etcd %s log %s: %v", p.Name, p.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- last %d lines of etcd %s log %s:\n%s", len(lines), p.Name, p.LogPath, strings.Join(lines, "\n"))
}
