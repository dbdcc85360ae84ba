package compaction

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
	"github.com/kvfs/kvfs/pager"
)

// TestLargeDatabaseIntegration writes a 1 GiB database in many commits,
// compacts it, and checks it reads back identical (the LTX database
// checksum of every page against the model's), reporting etcd's footprint
// next to the raw size. Integration tier: KVFS_INTEGRATION=1.
func TestLargeDatabaseIntegration(t *testing.T) {
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier (writes 1 GiB): set KVFS_INTEGRATION=1 or run `make test-integration`")
	}
	ctx := context.Background()
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: t.TempDir(), QuotaBackendBytes: 8 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := e.Config()
	cfg.RequestTimeout = time.Minute
	store, err := etcdstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := &rig{t: t, e: e, store: store, keys: etcdstore.NewKeys("/large/")}
	p, db := r.writer("big.db", pager.Options{PageCacheBytes: 32 << 20, BlobCacheBytes: 32 << 20, DirtyMemBytes: 32 << 20})

	const ps, pages, perCommit = 4096, 1 << 18, 2048 // 1 GiB in 128 commits of 8 MiB
	content := func(pgno uint32, v int) []byte {
		b := page(ps, pgno, v)
		x := uint32(pgno)*2654435761 + uint32(v)
		for i := 0; i < ps; i += 8 { // half-compressible, like real pages
			x = x*1664525 + 1013904223
			b[i] = byte(x >> 24)
		}
		if pgno == 1 {
			copy(b, page(ps, 1, v)[:100])
		}
		return b
	}
	lock := uint32(0x40000000/ps + 1)
	start := time.Now()
	for first := uint32(1); first <= pages; first += perCommit {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for pg := first; pg < first+perCommit; pg++ {
			if pg == lock {
				continue
			}
			if err := tx.WritePage(ctx, pg, content(pg, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if pg := uint32(1); first > 1 { // every commit also rewrites page 1
			if err := tx.WritePage(ctx, pg, content(pg, int(first))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit at page %d: %v", first, err)
		}
	}
	written := time.Since(start)
	size := func() (int64, int64) {
		st, err := store.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st[0].DBSize, st[0].DBSizeInUse
	}
	before, _ := size()
	lastPage1 := content(1, int(pages-perCommit+1))

	start = time.Now()
	res, err := New(store, p, Options{}).CompactNow(ctx, db)
	if err != nil || !res.Complete {
		t.Fatalf("compact: %+v %v", res, err)
	}
	compacted := time.Since(start)
	st, _ := store.Status(ctx)
	if err := store.Compact(ctx, st[0].Revision); err != nil {
		t.Fatal(err)
	}
	if err := store.Defragment(ctx, st[0].Endpoint); err != nil {
		t.Fatal(err)
	}
	after, inUse := size()

	// Read every page back from a fresh host and compare checksums.
	fresh, err := pager.New(pager.Options{Store: store, Keys: r.keys, PageCacheBytes: 16 << 20, BlobCacheBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	db2, err := fresh.Open(ctx, "big.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	snap, err := db2.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	start = time.Now()
	buf := make([]byte, ps)
	got, err := ltx.DatabaseChecksum(ps, pages, func(pg uint32) ([]byte, error) {
		return buf, snap.ReadPage(ctx, pg, buf)
	})
	if err != nil {
		t.Fatal(err)
	}
	scanned := time.Since(start)
	want, err := ltx.DatabaseChecksum(ps, pages, func(pg uint32) ([]byte, error) {
		if pg == 1 {
			return lastPage1, nil
		}
		return content(pg, 1), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("database checksum %v after compaction, want %v", got, want)
	}
	if u := usageInEtcd(t, r, "big.db"); u != db.Stats().Usage {
		t.Fatalf("usage %d, recomputed %d", db.Stats().Usage, u)
	}
	t.Logf("1 GiB raw in %d commits: written in %s; compacted in %s (%d shards, %d deltas deleted); read back from a fresh host in %s (%.0f MB/s); checksum %v",
		pages/perCommit, written.Round(time.Second), compacted.Round(time.Second), res.Shards, res.DeltasDeleted, scanned.Round(time.Second),
		float64(pages*ps)/scanned.Seconds()/1e6, got)
	t.Logf("etcd footprint: %d MiB before compaction, %d MiB after compaction, history compaction and defrag (%d MiB in use); kvfs usage %d MiB for 1024 MiB of pages",
		before>>20, after>>20, inUse>>20, db.Stats().Usage>>20)
}
