package pager

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvfs/kvfs/etcdstore"
)

// Info is a database's committed state as etcd holds it, read without
// opening the database (no page index load, no watch).
type Info struct {
	Head Head
	// HeadRevision is the head key's mod revision; Revision the store
	// revision the head and the compaction state were read at.
	HeadRevision, Revision int64
	// Usage is the bytes the database stores in etcd (deltas, page index
	// rows and shards): what quota counts.
	Usage int64
	// ShardPages, Shards and Materialized describe compaction: pages per
	// shard (0 before the first pass), live shard versions, and the txid
	// the last complete pass folded up to.
	ShardPages   uint32
	Shards       int
	Materialized uint64
	// ShardVersions maps each shard to the txid of its live version;
	// other versions under Keys.Shard are leftovers of an interrupted pass.
	ShardVersions map[uint32]uint64
	// History (see history.go): the bytes of the deltas and shard versions
	// kept only for past versions (not in Usage), those shard versions by
	// shard, the epochs' txids, and the oldest txid expiry kept.
	HistoryBytes int64
	KeptShards   map[uint32][]uint64
	Epochs       []uint64
	HistoryFrom  uint64
}

// ReadInfo reads database name's head and compaction state at one
// revision. It returns ErrNotFound when the database does not exist.
func ReadInfo(ctx context.Context, store Store, keys etcdstore.Keys, name string) (Info, error) {
	kv, rev, err := store.Get(ctx, keys.Head(name), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return Info{}, fmt.Errorf("%s: %w", name, ErrNotFound)
	} else if err != nil {
		return Info{}, fmt.Errorf("read head of %s: %w", name, err)
	}
	head, err := parseHead(kv.Value)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", name, err)
	}
	info := Info{Head: head, HeadRevision: kv.ModRevision, Revision: rev}
	v := view{head: head}
	ckv, _, err := store.Get(ctx, keys.Compaction(name), rev)
	switch {
	case err == nil:
		c, err := parseCompState(ckv.Value)
		if err != nil {
			return Info{}, fmt.Errorf("%s: %w", name, err)
		}
		v.comp = c
		info.ShardPages, info.Shards, info.Materialized = c.ShardPages, len(c.Shards), c.Materialized
		cc := c.clone()
		info.ShardVersions, info.KeptShards = cc.Shards, cc.Kept
		info.HistoryBytes, info.HistoryFrom = c.HistoryBytes, c.HistoryFrom
		for _, e := range c.Epochs {
			info.Epochs = append(info.Epochs, e.TXID)
		}
	case !errors.Is(err, etcdstore.ErrNotFound):
		return Info{}, fmt.Errorf("read compaction state of %s: %w", name, err)
	}
	info.Usage = v.usage()
	return info, nil
}

// DecodeRow decodes a page index row's payload (the page numbers a delta
// still holds), for tools that inspect etcd directly (kvfs verify).
func DecodeRow(b []byte) ([]uint32, error) { return decodePgnos(b) }

// DecodeLog decodes the whole log row of txid (Keys.Log), for tools that
// inspect etcd directly (kvfs verify).
func DecodeLog(txid uint64, b []byte) (Commit, error) {
	r, err := decodeLogRow(txid, b, false)
	if err != nil {
		return Commit{}, err
	}
	return r.commit(), nil
}

// Usage returns the bytes a database stores in etcd given its head and the
// raw value of its compaction state key (nil when absent).
func Usage(head Head, compaction []byte) (int64, error) {
	v := view{head: head}
	if compaction != nil {
		c, err := parseCompState(compaction)
		if err != nil {
			return 0, err
		}
		v.comp = c
	}
	return v.usage(), nil
}
