// Package compaction runs kvfs's background compaction: it folds the
// deltas of every database this host writes into shards (the mechanism is
// pager.Database.Compact), slows commits down when they outpace folding,
// and bounds etcd's size by compacting its history and defragmenting.
//
// Invariant: compaction never changes what any reader at any pinned
// revision sees. Passes run under the writer's fence, so a host that lost
// its lease lands nothing; etcd history is kept for Options.HistoryRetention
// so readers pinned that long can still read their revision.
//
// # When a database is compacted
//
// A database this host holds the write lease for is folded when it has
// MaxDeltas or more deltas outstanding (page index rows), when they take
// MaxDeltaBytes or more, or when any are left after IdleAfter without a
// commit. Above 16×MaxDeltas, Backpressure delays
// each commit a little, so a sustained write load cannot outrun folding
// until etcd runs out of space.
//
// # etcd history
//
// Four times per HistoryRetention the worker samples etcd's revision; it
// compacts history up to the revision sampled HistoryRetention ago, and,
// when Defrag is set (the embedded server), defragments a member once more
// than DefragMinBytes, and a quarter, of its backend is free. Defragmenting blocks a member while it runs, so it
// is off for external clusters unless asked for.
package compaction
