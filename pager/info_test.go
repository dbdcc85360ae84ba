package pager

import (
	"errors"
	"testing"
)

func TestReadInfo(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	if _, err := ReadInfo(ctx, e.store, e.keys, "none.db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	db, _ := e.create("i.db")
	writeDB(t, db, 1024, 20, 1)
	writeDB(t, db, 1024, 20, 2)
	info, err := ReadInfo(ctx, e.store, e.keys, "i.db")
	if err != nil || info.Head != db.Head() || info.Usage != db.Stats().Usage || info.ShardPages != 0 {
		t.Fatalf("before compaction: %+v %v (db %+v)", info, err, db.Stats())
	}
	if _, err := db.Compact(ctx, CompactOptions{ShardPages: 8}); err != nil {
		t.Fatal(err)
	}
	info, err = ReadInfo(ctx, e.store, e.keys, "i.db")
	if err != nil || info.Usage != db.Stats().Usage || info.Usage != usageInEtcd(t, e, "i.db") || info.Shards != 3 || info.Materialized != 2 {
		t.Fatalf("after compaction: %+v %v (db %+v, etcd %d)", info, err, db.Stats(), usageInEtcd(t, e, "i.db"))
	}
	if info.Usage >= info.Head.UsedBytes {
		t.Fatalf("compaction freed nothing: usage %d, committed %d", info.Usage, info.Head.UsedBytes)
	}
}
