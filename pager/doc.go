// Package pager is kvfs's page store: one Database per name, with its head,
// read snapshots, the dirty set of the open write transaction, commits (a
// single fenced etcd transaction when it fits, staged otherwise), the page
// cache, the page index (PIDX) and quota. It knows nothing of FUSE.
//
// Invariant: page N at txid T is the newest copy of N in a delta or shard
// with txid ≤ T; a reader pinned to T sees exactly that, whatever commits and
// compaction do meanwhile.
//
// Status: planned (issue "pager"); this package holds no code yet.
package pager
