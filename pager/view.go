package pager

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// compState is a database's compaction-owned state (Keys.Compaction),
// written only by compaction passes, so commits never contend with it.
type compState struct {
	// ShardPages is the number of pages per shard, fixed by the first pass.
	ShardPages uint32 `json:"shard_pages"`
	// Shards maps a shard number to the txid of its live version.
	Shards map[uint32]uint64 `json:"shards,omitempty"`
	// ShardBytes is the payload bytes of the live shard versions.
	ShardBytes int64 `json:"shard_bytes"`
	// FreedBytes is the bytes of deltas and page index rows compaction
	// deleted or shrank: usage is Head.UsedBytes − FreedBytes + ShardBytes.
	FreedBytes int64 `json:"freed_bytes"`
	// Materialized is the txid the last complete pass folded up to.
	Materialized uint64 `json:"materialized"`

	// History (history.go): the epochs kept, oldest first; per shard, the
	// versions kept for them besides the live one, ascending; the bytes of
	// those versions and of the deltas kept after their rows were folded
	// (not in the usage above); and the oldest epoch expiry kept.
	Epochs       []epochRef          `json:"epochs,omitempty"`
	Kept         map[uint32][]uint64 `json:"kept,omitempty"`
	HistoryBytes int64               `json:"history_bytes,omitempty"`
	HistoryFrom  uint64              `json:"history_from,omitempty"`
}

// epochRef names an epoch (Keys.Epoch) and its commit time, Unix ms.
type epochRef struct {
	TXID      uint64 `json:"txid"`
	Timestamp int64  `json:"ts"`
}

func (c *compState) clone() *compState {
	out := *c
	out.Shards = maps.Clone(c.Shards)
	if out.Shards == nil {
		out.Shards = map[uint32]uint64{}
	}
	out.Epochs = slices.Clone(c.Epochs)
	out.Kept = make(map[uint32][]uint64, len(c.Kept))
	for k, v := range c.Kept {
		out.Kept[k] = slices.Clone(v)
	}
	return &out
}

// keeps reports whether version txid of shard n is live or kept for history.
func (c *compState) keeps(n uint32, txid uint64) bool {
	if t, ok := c.Shards[n]; ok && t == txid {
		return true
	}
	_, kept := slices.BinarySearch(c.Kept[n], txid)
	return kept
}

func (c *compState) marshal() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // integers and a map of integers always marshal
	}
	return b
}

func parseCompState(b []byte) (*compState, error) {
	c := &compState{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("parse compaction state: %v: %w", err, ErrCorrupt)
	}
	if c.ShardPages == 0 {
		return nil, fmt.Errorf("parse compaction state: no shard size: %w", ErrCorrupt)
	}
	return c, nil
}

// view is what a reader is pinned to: a head, the compaction state that
// went with it, and an etcd revision at which both (and the page index) were
// current. Reads of deltas and shards happen at that revision.
type view struct {
	head Head
	comp *compState // nil before the first compaction
	rev  int64
	inc  int64 // database incarnation (head key create revision)
	// idx is the page index the view reads: a reload replaces the
	// database's index, but a view keeps the one that knows its revision.
	idx *pageIndex
}

// usage returns the bytes the database stores in etcd in this view.
func (v view) usage() int64 {
	u := v.head.UsedBytes
	if v.comp != nil {
		u += v.comp.ShardBytes - v.comp.FreedBytes
	}
	return u
}
