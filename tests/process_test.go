package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore/etcdtest"
	"github.com/kvfs/kvfs/internal/testutil"
)

// kvfsBinEnv names the environment variable that, when set, holds the path
// of a kvfs binary for the tests that run kvfs as a separate process
// (make builds bin/kvfs).
const kvfsBinEnv = "KVFS_BIN"

var (
	kvfsBuildOnce sync.Once
	kvfsBuildPath string
	kvfsBuildErr  error
)

// kvfsBinary returns the path of a kvfs binary: $KVFS_BIN when set,
// otherwise ./cmd/kvfs built once per test process. Like etcdtest's server
// binary it is built in a fresh directory under the user cache directory and
// renamed to a path keyed by the module root, so nothing accumulates in /tmp
// and concurrent test processes never run a half-written file.
func kvfsBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(kvfsBinEnv); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("%s=%q is not an executable file (%v)", kvfsBinEnv, p, err)
		}
		return p
	}
	kvfsBuildOnce.Do(func() { kvfsBuildPath, kvfsBuildErr = buildKVFS() })
	if kvfsBuildErr != nil {
		t.Fatalf("build kvfs: %v (or set %s to a built kvfs binary)", kvfsBuildErr, kvfsBinEnv)
	}
	return kvfsBuildPath
}

func buildKVFS() (string, error) {
	return etcdtest.BuildBinary("github.com/kvfs/kvfs/cmd/kvfs", "kvfs")
}

// kvfsProc is `kvfs mount` running as a child process. The cleanup
// registered by startKVFS stops it (SIGTERM, then SIGKILL) and lazily
// unmounts its mountpoint if the mount outlived it.
type kvfsProc struct {
	t    *testing.T
	Dir  string // the mountpoint
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{} // closed when the process has been reaped
	err  error         // cmd.Wait's result, set before done closes
}

// procOpts configure one kvfs process.
type procOpts struct {
	Endpoints []string // etcd client URLs (--etcd)
	Prefix    string   // --prefix
	Dir       string   // mountpoint; "" = a fresh directory
	LeaseTTL  time.Duration
	Args      []string // extra flags
	Env       []string // extra environment (KEY=VALUE)
}

// startKVFS starts `kvfs mount` and waits until the kernel serves its mount.
func startKVFS(t *testing.T, o procOpts) *kvfsProc {
	t.Helper()
	requireFUSE(t)
	bin := kvfsBinary(t)
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(o.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	args := []string{"mount", "--etcd", strings.Join(o.Endpoints, ","), "--prefix", o.Prefix,
		"--lease-ttl", o.LeaseTTL.String(), "--spool-dir", t.TempDir()}
	args = append(append(args, o.Args...), o.Dir)
	p := &kvfsProc{t: t, Dir: o.Dir, out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if o.Env != nil {
		p.cmd.Env = append(os.Environ(), o.Env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Its own process group, so a ^C at the test reaches the cleanup first;
	// killed by the kernel if the test binary dies without its cleanups.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start kvfs: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.cleanup)
	deadline := time.Now().Add(20 * time.Second)
	for !isKVFSMount(o.Dir) {
		select {
		case <-p.done:
			t.Fatalf("kvfs exited before mounting: %v\n%s", p.err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvfs did not mount %s within 20s\n%s", o.Dir, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// Path returns the path of name in the mount.
func (p *kvfsProc) Path(name string) string { return filepath.Join(p.Dir, name) }

// PID returns the process id.
func (p *kvfsProc) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to die; its mount stays,
// dead (ENOTCONN), until Detach.
func (p *kvfsProc) Kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("kill kvfs %d: %v", p.PID(), err)
	}
	<-p.done
}

// Detach lazily unmounts a mount whose server is dead.
func (p *kvfsProc) Detach() {
	p.t.Helper()
	if !isKVFSMount(p.Dir) {
		return
	}
	if err := detach(p.Dir); err != nil {
		p.t.Fatalf("umount -l %s: %v", p.Dir, err)
	}
}

// detach lazily unmounts dir: umount(2) with MNT_DETACH as root, else
// fusermount3 -uz.
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || os.Geteuid() == 0 {
		return err
	}
	if out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); ferr != nil {
		return fmt.Errorf("%v; fusermount3 -uz: %v: %s", err, ferr, out)
	}
	return nil
}

// Stop asks kvfs to unmount and exit (SIGTERM) and checks that it did,
// cleanly, within 30 s.
func (p *kvfsProc) Stop() {
	p.t.Helper()
	if err := p.stop(30 * time.Second); err != nil {
		p.t.Errorf("stop kvfs: %v\n%s", err, p.out)
	}
}

func (p *kvfsProc) stop(wait time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("kvfs exited after SIGTERM: %w", p.err)
		}
		if isKVFSMount(p.Dir) {
			return fmt.Errorf("kvfs exited but %s is still mounted", p.Dir)
		}
		return nil
	case <-time.After(wait):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("kvfs did not exit within %s of SIGTERM; killed", wait)
	}
}

// cleanup stops the process if it still runs and clears its mount.
func (p *kvfsProc) cleanup() {
	if err := p.stop(30 * time.Second); err != nil {
		p.t.Errorf("cleanup: %v\n%s", err, p.out)
	}
	if isKVFSMount(p.Dir) {
		if err := detach(p.Dir); err != nil {
			p.t.Errorf("cleanup: umount -l %s: %v", p.Dir, err)
		}
	}
	if p.t.Failed() {
		p.t.Logf("kvfs %d output:\n%s", p.PID(), p.out)
	}
}

// isKVFSMount reports whether dir is a kvfs FUSE mountpoint, per
// /proc/self/mountinfo (the mount point is field 5, the file system type
// follows the " - " separator).
func isKVFSMount(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		sep := strings.Index(line, " - ")
		if len(fields) < 5 || sep < 0 {
			continue
		}
		post := strings.Fields(line[sep+3:])
		if unescapeMountinfo(fields[4]) == dir && len(post) > 0 && strings.HasPrefix(post[0], "fuse.kvfs") {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
