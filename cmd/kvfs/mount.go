package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
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

// storeFlags are the flags every command uses to find etcd.
type storeFlags struct {
	etcd    string
	dataDir string
	prefix  string
}

func (sf *storeFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&sf.etcd, "etcd", "", "etcd client URLs, comma-separated (default: the embedded etcd of --data-dir)")
	fs.StringVar(&sf.dataDir, "data-dir", "/var/lib/kvfs", "data directory of the embedded etcd, used when --etcd is not given")
	fs.StringVar(&sf.prefix, "prefix", etcdstore.DefaultPrefix, "etcd key prefix of this kvfs")
}

// openStore connects to etcd: --etcd, else a kvfs already serving
// --data-dir, else an embedded etcd started on --data-dir (stopped by the
// returned closer).
func (sf *storeFlags) openStore(ctx context.Context, stdout io.Writer) (*etcdstore.Store, func(), error) {
	var (
		cfg  etcdstore.Config
		stop = func() {}
	)
	switch {
	case sf.etcd != "":
		cfg.Endpoints = strings.Split(sf.etcd, ",")
	default:
		dir, err := filepath.Abs(sf.dataDir)
		if err != nil {
			return nil, nil, err
		}
		if info, err := etcdstore.ReadEndpointFile(dir); err == nil {
			fmt.Fprintf(stdout, "kvfs: using the etcd of the kvfs running on %s (pid %d)\n", dir, info.PID)
			cfg = etcdstore.Config{Endpoints: info.Endpoints, Limits: info.Limits}
			break
		}
		e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: dir, AutoCompactionRetention: time.Hour})
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(stdout, "kvfs: embedded etcd on %v (data %s)\n", e.Endpoints(), dir)
		cfg, stop = e.Config(), func() { e.Close() }
	}
	s, err := etcdstore.Open(ctx, cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return s, func() { s.Close(); stop() }, nil
}

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mount", "mount [flags] MOUNTPOINT",
		`Mounts kvfs at MOUNTPOINT and serves it until SIGINT or SIGTERM. Every regular
file in it is a SQLite database whose pages live in etcd; point sqlite3 or any
SQLite application at it. Without --etcd, kvfs runs an embedded etcd on
--data-dir.

Example:
  kvfs mount --data-dir /var/lib/kvfs /mnt/kvfs
  sqlite3 /mnt/kvfs/app.db 'create table t(x); insert into t values (1)'`, stderr)
	var sf storeFlags
	sf.register(fs)
	host, _ := os.Hostname()
	owner := fs.String("owner", fmt.Sprintf("%s/%d", host, os.Getpid()), "this host's name in write leases")
	ttl := fs.Duration("lease-ttl", 10*time.Second, "write lease TTL (etcd's minimum is about 2s)")
	spool := fs.String("spool-dir", os.TempDir(), "directory for journals and large transactions")
	allowOther := fs.Bool("allow-other", false, "let other users access the mount")
	readOnly := fs.Bool("read-only", false, "refuse every write")
	debug := fs.Bool("debug", false, "log every FUSE request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	mnt, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		return fmt.Errorf("mountpoint %s: not a directory (create it first)", mnt)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	store, closeStore, err := sf.openStore(ctx, stdout)
	if err != nil {
		return err
	}
	defer closeStore()
	keys := etcdstore.NewKeys(sf.prefix)
	p, err := pager.New(pager.Options{Store: store, Keys: keys, SpoolDir: *spool, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	fm := fence.NewManager(store, keys, fence.Options{Owner: *owner, TTL: *ttl, Logger: log})
	defer fm.Close(context.Background())
	m, err := kvfuse.Mount(mnt, kvfuse.Options{
		Pager: p, Fence: fm, SpoolDir: *spool, ReadOnly: *readOnly, AllowOther: *allowOther, Debug: *debug, Logger: log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kvfs: mounted at %s (owner %s)\n", mnt, *owner)
	served := make(chan struct{})
	go func() { m.Wait(); close(served) }()
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "kvfs: unmounting")
	case <-served:
		fmt.Fprintln(stdout, "kvfs: unmounted from outside")
	}
	uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Unmount(uctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}
