package etcdstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseID identifies an etcd lease; 0 means none.
type LeaseID int64

// Grant creates a lease with the given TTL (rounded up to whole seconds;
// etcd may raise it to its minimum) and returns it with the TTL granted.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (LeaseID, time.Duration, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Grant(cctx, secs)
	if err != nil {
		return 0, 0, classify("lease grant", ctx, cctx, s.timeout, 0, err)
	}
	return LeaseID(resp.ID), time.Duration(resp.TTL) * time.Second, nil
}

// KeepAliveOnce renews the lease once and returns its new TTL, or
// ErrLeaseNotFound when it already expired or was revoked.
func (s *Store) KeepAliveOnce(ctx context.Context, id LeaseID) (time.Duration, error) {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.cli.KeepAliveOnce(cctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, classify(fmt.Sprintf("lease keepalive %x", id), ctx, cctx, s.timeout, 0, err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// TimeToLive returns the lease's remaining TTL, or ErrLeaseNotFound.
func (s *Store) TimeToLive(ctx context.Context, id LeaseID) (time.Duration, error) {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.cli.TimeToLive(cctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, classify(fmt.Sprintf("lease ttl %x", id), ctx, cctx, s.timeout, 0, err)
	}
	if resp.TTL < 0 {
		return 0, fmt.Errorf("lease ttl %x: %w", id, ErrLeaseNotFound)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Revoke ends the lease now, deleting every key attached to it. Revoking a
// lease that is already gone returns ErrLeaseNotFound.
func (s *Store) Revoke(ctx context.Context, id LeaseID) error {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Revoke(cctx, clientv3.LeaseID(id)); err != nil {
		return classify(fmt.Sprintf("lease revoke %x", id), ctx, cctx, s.timeout, 0, err)
	}
	return nil
}
