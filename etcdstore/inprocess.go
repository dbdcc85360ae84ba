package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// openInProcess opens a Store whose KV, lease and watch calls go to
// cfg.InProcess through etcd's in-process client (function calls into the
// server; it still enforces its request limits, and Store checks them
// before sending as always). Maintenance calls (status, alarms,
// defragment) go through maint, a network client of the same server: the
// in-process maintenance server lacks parts of the real one (its
// Defragment dereferences nil).
func openInProcess(ctx context.Context, cfg Config, maint *clientv3.Client) (*Store, error) {
	cli := v3client.New(cfg.InProcess.etcd.Server)
	s := &Store{cli: cli, maint: maint, endpoints: maint.Endpoints(), limits: cfg.Limits, timeout: cfg.RequestTimeout, counts: &requestCounts{}}
	countRequests(cli, s.counts)
	if err := s.ping(ctx, cfg.DialTimeout); err != nil {
		s.Close()
		return nil, fmt.Errorf("open etcd %v in-process: %w", cfg.Endpoints, err)
	}
	return s, nil
}
