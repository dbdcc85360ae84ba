package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvfs/kvfs/compaction"
	"github.com/kvfs/kvfs/fence"
	kvfuse "github.com/kvfs/kvfs/fuse"
	"github.com/kvfs/kvfs/pager"
)

func mountCommand() command {
	return command{
		name:    "mount",
		summary: "mount the databases at a directory (foreground)",
		run:     runMount,
	}
}

// readyTimeout bounds the mount's self-check before it reports ready.
const readyTimeout = 30 * time.Second

// parseMount parses kvfs mount's arguments into its configuration, the
// MOUNTPOINT argument (if any) overriding the mountpoint setting.
func parseMount(args []string, stderr io.Writer) (Config, error) {
	fs := newFlagSet("mount", "mount [flags] [MOUNTPOINT]",
		`Mounts kvfs at MOUNTPOINT (default: the mountpoint setting, /mnt/kvfs; created
if missing) and serves it in the foreground. Every regular file in it is a
SQLite database whose pages live in etcd; point sqlite3 or any SQLite
application at it. Without --etcd, kvfs runs an embedded etcd on --data-dir.

With --metrics-addr it serves Prometheus metrics at /metrics and the mount's
health at /healthz. Run by systemd (Type=notify) it reports READY=1 once the
mount answers requests, and STOPPING=1 on shutdown.

SIGTERM or SIGINT unmounts: in-flight operations get --shutdown-timeout to
finish (a mount still busy is detached lazily), write leases are released and
the embedded etcd stops; kvfs then exits 0, also when the signal comes while
the mount is still starting. A second signal exits at once.
`+storeFlagsHelp+`

Example:
  kvfs mount --data-dir /var/lib/kvfs --metrics-addr 127.0.0.1:9100 /mnt/kvfs
  sqlite3 /mnt/kvfs/app.db 'create table t(x); insert into t values (1)'
  curl -s 127.0.0.1:9100/healthz`, stderr)
	cf := registerConfigFlags(fs, true)
	cfg, pos, err := parseCommand(fs, cf, args, 0, 1)
	if err != nil {
		return Config{}, err
	}
	if len(pos) == 1 {
		cfg.Mountpoint = pos[0]
	}
	return cfg, nil
}

// extraProcs is how many Ps a mount runs beyond the CPUs it may use.
const extraProcs = 4

// raiseGOMAXPROCS gives the mount extraProcs more Ps than CPUs, unless
// GOMAXPROCS is set. go-fuse's reader goroutines wait for requests inside
// read(2) on /dev/fuse, each holding a P while it waits; with no more Ps
// than CPUs the runtime keeps retaking those Ps and handing them over, and
// requests pay for extra thread switches. Measured on 2 CPUs, 1,000
// autocommit inserts through the sqlite3 CLI, runs interleaved: 1,478 →
// 1,692 inserts/s, 32 → 28 context switches and 0.50 → 0.40 ms of kvfs CPU
// per insert. Four extra keep the garbage collector's dedicated workers at
// a quarter of the Ps: one on 2 CPUs.
func raiseGOMAXPROCS(log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := runtime.GOMAXPROCS(0) + extraProcs
	runtime.GOMAXPROCS(n)
	log.Debug("GOMAXPROCS raised for the FUSE readers", "procs", n)
}

// failpointEnv names a point of the commit protocol (fuse.Options.Failpoint)
// where kvfs kills itself with SIGKILL: a seam for crash tests, unset in
// production.
const failpointEnv = "KVFS_TEST_FAILPOINT"

// runMount runs a mount until a stop signal (ctx) or an unmount from
// outside. A stop signal that arrives while the mount is still starting is a
// stop like any other, not a failure: kvfs undoes what it started and exits
// 0, as systemd and the tests that stop a mount right after it appears
// expect.
func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := serveMount(ctx, args, stdout, stderr)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(stdout, "kvfs: stopped while starting (%v)\n", err)
		return nil
	}
	return err
}

func serveMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseMount(args, stderr)
	if err != nil {
		return err
	}
	mnt, err := filepath.Abs(cfg.Mountpoint)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		return fmt.Errorf("mountpoint %s: not a directory", mnt)
	}
	if cfg.SpoolDir != "" {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			return fmt.Errorf("spool dir: %w", err)
		}
	}
	log := newLogger(cfg, stderr)
	raiseGOMAXPROCS(log)

	sess, err := openSession(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sess.close() // last: stops the embedded etcd after everything else

	reg := newRegistry()
	opts := sess.pagerOptions()
	opts.Metrics, opts.Registerer = pager.NewMetrics(reg), reg
	var worker *compaction.Worker
	if cfg.Compaction.MaxDeltas > 0 {
		opts.Backpressure = func(db string, s pager.Stats) time.Duration { return worker.Backpressure(db, s) }
	}
	p, err := pager.New(opts)
	if err != nil {
		return err
	}
	defer p.Close()
	copts := cfg.compactionOptions(sess.embedded)
	copts.Metrics, copts.Logger = compaction.NewMetrics(reg), log
	copts.SamplesKey = sess.keys.Revisions()
	worker = compaction.New(sess.store, p, copts)
	if cfg.Compaction.MaxDeltas > 0 {
		wctx, stopWorker := context.WithCancel(context.Background())
		workerDone := make(chan struct{})
		go func() { defer close(workerDone); worker.Run(wctx) }()
		defer func() { stopWorker(); <-workerDone }()
	}
	owner := sess.owner("")
	fm := fence.NewManager(sess.store, sess.keys, fence.Options{
		Owner: owner, TTL: time.Duration(cfg.LeaseTTL), Metrics: fence.NewMetrics(reg), Logger: log,
	})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := fm.Close(cctx); err != nil {
			log.Warn("release write leases", "err", err)
		}
	}()

	var mounted atomic.Bool
	reg.MustRegister(newStoreCollector(sess, &mounted))
	if cfg.MetricsAddr != "" {
		ms, err := serveMetrics(cfg.MetricsAddr, reg, sess, fm, &mounted)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer ms.Close()
		log.Info("serving metrics", "addr", "http://"+ms.addr.String()+"/metrics")
	}

	fopts := kvfuse.Options{
		Pager: p, Fence: fm, SpoolDir: cfg.SpoolDir, ReadOnly: cfg.ReadOnly, AllowOther: cfg.AllowOther,
		ForwardLocks: cfg.ForwardLocks, NoPassthrough: !cfg.JournalPassthrough, IdleRelease: time.Duration(cfg.IdleRelease),
		JournalMemMax: int64(cfg.Cache.DirtyMemBytes),
		Debug:         cfg.FUSEDebug, Logger: log,
		Space: sess.space,
	}
	if cfg.Compaction.MaxDeltas > 0 {
		fopts.BeforeRelease = worker.BeforeRelease
	}
	if fp := os.Getenv(failpointEnv); fp != "" {
		// Crash tests: die as kill -9 would at that point of a commit.
		log.Warn("failpoint armed: kvfs kills itself there", "failpoint", fp)
		fopts.Failpoint = func(name string) {
			if name == fp {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	m, err := kvfuse.Mount(mnt, fopts)
	if err != nil {
		return err
	}
	unhook := onForcedExit(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	defer unhook()
	served := make(chan struct{})
	go func() { m.Wait(); close(served) }()

	// Ready only once the kernel routes requests to us and we answer one.
	if err := selfCheck(ctx, mnt); err != nil {
		unmount(m, log, time.Duration(cfg.ShutdownTimeout))
		return err
	}
	mounted.Store(true)
	if err := sdNotify("READY=1\nSTATUS=serving " + mnt); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	log.Info("mounted", "mountpoint", mnt, "owner", owner, "read_only", cfg.ReadOnly, "prefix", sess.keys.Prefix())
	fmt.Fprintf(stdout, "kvfs: mounted at %s (owner %s)\n", mnt, owner)

	select {
	case <-ctx.Done():
		log.Info("stopping: unmounting", "mountpoint", mnt)
	case <-served:
		log.Info("unmounted from outside", "mountpoint", mnt)
	}
	mounted.Store(false)
	sdNotify("STOPPING=1\nSTATUS=unmounting " + mnt)
	unmount(m, log, time.Duration(cfg.ShutdownTimeout))
	fmt.Fprintf(stdout, "kvfs: unmounted %s\n", mnt)
	return nil
}

// selfCheck lists the mount's root through the kernel, proving the mount
// serves requests.
func selfCheck(ctx context.Context, mnt string) error {
	done := make(chan error, 1)
	go func() {
		_, err := os.ReadDir(mnt)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mount self-check: %w", err)
		}
		return nil
	case <-time.After(readyTimeout):
		return fmt.Errorf("mount self-check: listing %s took over %v", mnt, readyTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unmount removes the mount, waiting up to timeout for in-flight operations
// (a busy mount is detached lazily and lives on until its last file
// closes; after timeout kvfs stops waiting for it).
func unmount(m *kvfuse.FS, log interface {
	Warn(string, ...any)
}, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Unmount(ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("unmount", "err", err)
		}
	case <-ctx.Done():
		log.Warn("unmount: files still open after the shutdown timeout; exiting with the mount detached", "timeout", timeout)
	}
}
