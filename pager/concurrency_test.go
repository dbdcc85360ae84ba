package pager

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/etcdstore/etcdtest"
)

// TestReadersDuringCommits runs readers at pinned snapshots while a writer
// commits continuously. Every commit rewrites every page with one version
// byte, so a reader that sees two versions saw two txids. Run with -race.
func TestReadersDuringCommits(t *testing.T) {
	e := newEnv(t, Options{PageCacheBytes: 256 << 10})
	ctx := ctxT(t)
	db, _ := e.create("x.db")
	const ps, pages = 1024, 32
	writeAll := func(v byte) {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for p := uint32(1); p <= pages; p++ {
			b := bytes.Repeat([]byte{v}, ps)
			if p == 1 {
				copy(b, sqlitePage1(ps, v)[:100])
			}
			tx.WritePage(ctx, p, b)
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
	}
	writeAll(1)
	other, err := e.pager(Options{}).Open(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 6; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			d := db
			if r%2 == 1 {
				d = other // a follower host
			}
			buf := make([]byte, ps)
			for !stop.Load() {
				snap, err := d.Snapshot(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				v := byte(snap.Head().TXID)
				for p := uint32(pages); p >= 1; p-- {
					if err := snap.ReadPage(ctx, p, buf); err != nil {
						t.Errorf("reader %d: %v", r, err)
						return
					}
					if buf[ps-1] != v {
						t.Errorf("reader %d at txid %d: page %d has version %d", r, snap.Head().TXID, p, buf[ps-1])
						return
					}
				}
				reads.Add(1)
				snap.Close()
			}
		}(r)
	}
	for v := 2; v <= 60; v++ {
		writeAll(byte(v))
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d consistent snapshot reads during 59 commits", reads.Load())
}

// TestCommitSizesDefaultLimits commits 1, 120 and 10,000 pages and a
// 256 MiB transaction against a separate etcd process at etcd's default
// limits; a reader pinned before each commit keeps seeing the old content.
func TestCommitSizesDefaultLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 300 MiB to a separate etcd process; run without -short")
	}
	proc := etcdtest.StartProcess(t, etcdtest.Options{})
	store, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: proc.Endpoints(), RequestTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := newEnv(t, Options{})
	// Small caches: memory must stay bounded by them, not by the
	// transaction (16 MiB each for pages, blobs, chunks and dirty pages).
	p := e.pager(Options{Store: store, PageCacheBytes: 16 << 20, BlobCacheBytes: 16 << 20, DirtyMemBytes: 16 << 20})
	// 300 MiB through etcd takes minutes under -race beside other packages.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := p.Create(ctx, "big.db"); err != nil {
		t.Fatal(err)
	}
	db, err := p.Open(ctx, "big.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := &testFence{e: e, key: e.keys.Fence("big.db"), gen: 1}
	if _, err := store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(f.key, f.value())}); err != nil {
		t.Fatal(err)
	}
	if err := db.Acquire(ctx, f); err != nil {
		t.Fatal(err)
	}
	const ps = 4096
	// content(p, v): half the bytes vary per page and version, so pages
	// compress about 2:1 like real data.
	content := func(p uint32, v byte) []byte {
		b := make([]byte, ps)
		x := uint32(p)*2654435761 + uint32(v)*40503
		for i := 0; i < ps; i += 2 {
			x = x*1664525 + 1013904223
			b[i] = byte(x >> 24)
		}
		if p == 1 {
			copy(b, sqlitePage1(ps, 0)[:100])
		}
		return b
	}
	v := byte(0)
	for _, n := range []int{1, 120, 10000, 256 << 20 / ps} {
		v++
		var pinned *Snapshot
		if v > 1 {
			pinned, _ = db.Snapshot(ctx)
		}
		start := time.Now()
		peak := trackHeap()
		tx, _ := db.Begin(ctx)
		for q := uint32(1); q <= uint32(n); q++ {
			if err := tx.WritePage(ctx, q, content(q, v)); err != nil {
				t.Fatal(err)
			}
		}
		info, err := tx.Commit(ctx)
		if err != nil {
			t.Fatalf("%d pages: %v", n, err)
		}
		heap := peak()
		t.Logf("%d pages: %d bytes, staged %v, %d txns, %s, peak heap %d MiB above the heap before", n, info.Bytes, info.Staged, info.Txns, time.Since(start).Round(time.Millisecond), heap>>20)
		// Bounded memory: a transaction larger than the dirty-page memory
		// limit spills, and its delta streams from a spool file, so the
		// peak stays well below the transaction's 256 MiB. The caches are
		// 64 MiB; etcd requests in flight and garbage not yet collected
		// get as much again, and -race a little more (130 MiB seen in CI
		// beside other packages' tests).
		if n*ps >= 256<<20 && heap > 160<<20 {
			t.Errorf("peak heap %d MiB above the heap before a 256 MiB transaction", heap>>20)
		}
		check := func(s *Snapshot, v byte, n int) {
			buf := make([]byte, ps)
			for q := 1; q <= n; q += 1 + q/64 {
				if err := s.ReadPage(ctx, uint32(q), buf); err != nil || !bytes.Equal(buf, content(uint32(q), v)) {
					t.Fatalf("txid %d page %d: %v", s.Head().TXID, q, err)
				}
			}
		}
		if pinned != nil {
			check(pinned, v-1, int(pinned.Head().Pages))
			pinned.Close()
		}
		now, _ := db.Snapshot(ctx)
		check(now, v, n)
		now.Close()
	}
	if got := fmt.Sprint(db.Head().Pages); got != fmt.Sprint(256<<20/ps) {
		t.Fatalf("pages %s", got)
	}
}

// trackHeap samples the heap in use until the returned function is called,
// which returns the peak above the heap in use at the start (after a GC,
// so that garbage of earlier tests does not count).
func trackHeap() func() uint64 {
	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak.Load() - min(peak.Load(), start.HeapInuse)
	}
}
