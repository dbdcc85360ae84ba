// Package compaction folds deltas into shards in the background, under the
// writer's fence, and bounds etcd's size by compacting its history.
//
// Invariant: compaction never changes what any reader at any pinned revision
// sees.
//
// Status: planned (issue "compaction"); this package holds no code yet.
package compaction
