// Package pager is kvfs's page store: one Database per name, with its head,
// read snapshots, the dirty set of the open write transaction, commits (a
// single fenced etcd transaction when it fits, staged otherwise), the page
// cache, the page index (PIDX), quota and compaction's fold. It knows nothing
// of FUSE.
//
// Invariant: page N at txid T is the newest copy of N in a delta or shard
// with txid ≤ T; a reader pinned to T sees exactly that, whatever commits and
// compaction do meanwhile.
//
// # Storage
//
// A commit stores one LTX delta (Keys.Delta, chunked), one page index row
// listing the delta's pages (Keys.PIDX), and the new head (Head), in one
// fenced etcd transaction when it fits the server's limits, or as staged
// transactions under the reserved txid followed by one head flip. Orphans
// of an unfinished staged commit are exactly the txids above the head;
// Database.Acquire (takeover) deletes them. A commit that grows the file
// stores the exposed pages as zeros, so no copy from before a shrink can come
// back.
//
// # Reading
//
// A view pins a head, the compaction state and an etcd revision at which
// both were current. A page is read from the newest delta the page index
// lists for it at the view (the index remembers the revision of compaction's
// removals), else from its shard version named by the compaction state.
// Blobs are fetched once and cached; a page of a multi-chunk blob costs one
// chunk read, with one chunk of read-ahead.
//
// A Database follows etcd with a watch on its keys, applying other hosts'
// commits and compaction passes, except while it holds the fence: then it
// alone changes them and applies its own commits as it makes them (Acquire
// stops the watch, Release resumes it from the last revision applied).
//
// # Compaction
//
// Database.Compact folds deltas into versioned shards: stage a new version,
// flip the compaction state to it, trim the page index rows, delete what is
// left unreferenced. Usage is Head.UsedBytes (what commits stored) minus
// what compaction freed plus shard bytes; quota counts that.
package pager
