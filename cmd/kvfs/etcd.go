package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

func etcdCommand() command {
	return command{
		name:    "etcd",
		summary: "run the embedded etcd server in the foreground",
		run:     runEtcd,
	}
}

func runEtcd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("etcd", "etcd [flags]",
		`Runs kvfs's embedded etcd server on a data directory until interrupted, and
writes its client endpoint to `+etcdstore.EndpointFile+` in that directory so other
kvfs commands can reach it. 'kvfs mount' starts the same server by itself when
no --etcd is given; this command is for running the store on its own.

Example:
  kvfs etcd --data-dir /var/lib/kvfs`, stderr)
	dataDir := fs.String("data-dir", "/var/lib/kvfs", "directory for etcd's data, its log (etcd.log) and the endpoint file")
	clientURL := fs.String("listen-client-url", "", "client URL to listen on, http://127.0.0.1:PORT (default: a free loopback port)")
	maxRequest := fs.Int("max-request-bytes", etcdstore.DefaultLimits().MaxRequestBytes, "largest request etcd accepts, bytes")
	maxOps := fs.Int("max-txn-ops", etcdstore.DefaultLimits().MaxTxnOps, "most operations in one etcd transaction")
	quota := fs.Int64("quota-backend-bytes", 0, "etcd backend size that raises the NOSPACE alarm (0: etcd's default, 2 GiB)")
	retention := fs.Duration("auto-compaction-retention", time.Hour, "keep this much etcd history; 0 disables automatic history compaction")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{
		DataDir:                 dir,
		ClientURL:               *clientURL,
		Limits:                  etcdstore.Limits{MaxRequestBytes: *maxRequest, MaxTxnOps: *maxOps},
		QuotaBackendBytes:       *quota,
		AutoCompactionRetention: *retention,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stdout, "kvfs: embedded etcd serving on %v (data %s, log %s)\n", e.Endpoints(), dir, filepath.Join(dir, "etcd.log"))
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "kvfs: stopping embedded etcd")
		return nil
	case err := <-e.Err():
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}
