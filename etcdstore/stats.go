package etcdstore

import (
	"context"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Stats are counts of the key-value requests a Store has sent to etcd
// since Open: what a caller's operation cost in round trips (a test checks
// that listing a directory is one range read, however many names it has).
type Stats struct {
	// Reads are range requests: Get, each page of Range, Count and
	// GetChunk(ed) reads.
	Reads int64
	// Txns are transactions, writes and read-only ones (GetMany) alike.
	Txns int64
	// Writes are single puts and deletes outside a transaction.
	Writes int64
}

// Stats returns s's request counts.
func (s *Store) Stats() Stats {
	c := s.counts
	return Stats{Reads: c.reads.Load(), Txns: c.txns.Load(), Writes: c.writes.Load()}
}

// requestCounts back Stats.
type requestCounts struct {
	reads, txns, writes atomic.Int64
}

// countingKV counts the requests that pass through it to kv.
type countingKV struct {
	kv clientv3.KV
	c  *requestCounts
}

// countRequests makes cli's key-value calls count into c.
func countRequests(cli *clientv3.Client, c *requestCounts) {
	cli.KV = countingKV{kv: cli.KV, c: c}
}

func (k countingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	k.c.writes.Add(1)
	return k.kv.Put(ctx, key, val, opts...)
}

func (k countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.c.reads.Add(1)
	return k.kv.Get(ctx, key, opts...)
}

func (k countingKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	k.c.writes.Add(1)
	return k.kv.Delete(ctx, key, opts...)
}

func (k countingKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	return k.kv.Compact(ctx, rev, opts...)
}

func (k countingKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	switch {
	case op.IsGet():
		k.c.reads.Add(1)
	case op.IsTxn():
		k.c.txns.Add(1)
	default:
		k.c.writes.Add(1)
	}
	return k.kv.Do(ctx, op)
}

// Txn counts at creation: every Txn kvfs builds is committed once.
func (k countingKV) Txn(ctx context.Context) clientv3.Txn {
	k.c.txns.Add(1)
	return k.kv.Txn(ctx)
}
