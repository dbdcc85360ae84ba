package pager

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestModelRandom applies random transactions — writes (whole and partial
// pages), growth, shrink, rollback, commit, writer switch, reopen, reads at
// old snapshots — to the pager and to an in-memory model of the file, and
// compares after every step. Replay a failure with KVFS_SEED=<seed>.
func TestModelRandom(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("KVFS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	steps := 2000
	if testing.Short() {
		steps = 300
	}
	t.Logf("seed %d, %d steps (replay: KVFS_SEED=%d go test ./pager -run TestModelRandom)", seed, steps, seed)
	rng := rand.New(rand.NewSource(seed))
	ctx := ctxT(t)
	const ps = 1024
	e := newEnv(t, Options{DirtyMemBytes: 8 * ps, PageCacheBytes: 32 * ps, BlobCacheBytes: 64 * ps})

	type host struct {
		p  *Pager
		db *Database
	}
	open := func(p *Pager) host {
		db, err := p.Open(ctx, "m.db")
		if err != nil {
			t.Fatal(err)
		}
		return host{p, db}
	}
	if err := e.p.Create(ctx, "m.db"); err != nil {
		t.Fatal(err)
	}
	hosts := []host{open(e.p), open(e.pager(Options{DirtyMemBytes: 4 * ps}))}
	defer func() {
		for _, h := range hosts {
			h.db.Close()
		}
	}()
	gen := uint64(1)
	writer := 0
	if err := hosts[0].db.Acquire(ctx, e.fence("m.db", gen)); err != nil {
		t.Fatal(err)
	}

	var committed []byte // the model: the database file as committed
	type pin struct {
		snap *Snapshot
		want []byte
	}
	var pins []pin

	randPage := func(pgno int) []byte {
		b := make([]byte, ps)
		switch rng.Intn(3) {
		case 0:
			rng.Read(b)
		case 1:
			for i := range b {
				b[i] = byte(pgno + i/32)
			}
		}
		if pgno == 1 {
			copy(b, sqlitePage1(ps, 0)[:100])
		}
		return b
	}
	verify := func(what string, snap *Snapshot, want []byte) {
		t.Helper()
		if snap.Size() != int64(len(want)) {
			t.Fatalf("seed %d: %s: size %d, model %d", seed, what, snap.Size(), len(want))
		}
		got := make([]byte, len(want))
		if n, err := snap.ReadAt(ctx, got, 0); n != len(want) || (err != nil && n != len(want)) {
			t.Fatalf("seed %d: %s: read %d bytes: %v", seed, what, n, err)
		}
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("seed %d: %s: first difference at byte %d (page %d)", seed, what, i, i/ps+1)
				}
			}
		}
	}
	waitFollow := func(h host) {
		want := hosts[writer].db.Head()
		for deadline := time.Now().Add(10 * time.Second); h.db.Head() != want; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("seed %d: follower at %+v, writer at %+v", seed, h.db.Head(), want)
			}
		}
	}

	commits, rollbacks, passes := 0, 0, 0
	writeTxn := func(step int) {
		w := hosts[writer]
		tx, err := w.db.Begin(ctx)
		if err != nil {
			t.Fatalf("seed %d step %d: begin: %v", seed, step, err)
		}
		work := bytes.Clone(committed)
		if len(work) == 0 {
			work = sqlitePage1(ps, 0)
			if _, err := tx.WriteAt(ctx, work, 0); err != nil {
				t.Fatal(err)
			}
		}
		for k := rng.Intn(6) + 1; k > 0; k-- {
			pages := len(work) / ps
			switch r := rng.Intn(10); {
			case r < 5: // whole page, maybe past the end
				pgno := rng.Intn(pages+4) + 1
				b := randPage(pgno)
				if err := tx.WritePage(ctx, uint32(pgno), b); err != nil {
					t.Fatalf("seed %d step %d: write page %d: %v", seed, step, pgno, err)
				}
				for len(work) < pgno*ps {
					work = append(work, make([]byte, ps)...)
				}
				copy(work[(pgno-1)*ps:], b)
			case r < 8: // partial write across pages, past the header
				off := 100 + rng.Intn(len(work)+ps)
				b := make([]byte, rng.Intn(3*ps)+1)
				rng.Read(b)
				if _, err := tx.WriteAt(ctx, b, int64(off)); err != nil {
					t.Fatalf("seed %d step %d: write at %d: %v", seed, step, off, err)
				}
				for len(work) < off+len(b) {
					work = append(work, 0)
				}
				copy(work[off:], b)
			default: // shrink or grow
				n := rng.Intn(pages+8) + 1
				if err := tx.Truncate(ctx, int64(n*ps)); err != nil {
					t.Fatalf("seed %d step %d: truncate: %v", seed, step, err)
				}
				if n*ps < len(work) {
					work = work[:n*ps]
				} else {
					work = append(work, make([]byte, n*ps-len(work))...)
				}
			}
		}
		if r := len(work) % ps; r != 0 { // make the size whole pages
			work = append(work, make([]byte, ps-r)...)
			if err := tx.Truncate(ctx, int64(len(work))); err != nil {
				t.Fatal(err)
			}
		}
		if rng.Intn(7) == 0 {
			tx.Rollback()
			rollbacks++
			return
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatalf("seed %d step %d: commit: %v", seed, step, err)
		}
		committed = work
		commits++
	}
	for step := 0; step < steps; step++ {
		w := hosts[writer]
		switch op := rng.Intn(100); {
		case op < 50 || len(committed) == 0: // a write transaction
			writeTxn(step)
		case op < 62: // pin a snapshot, on the writer or a caught-up follower
			h := hosts[rng.Intn(2)]
			waitFollow(h)
			s, err := h.db.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pins = append(pins, pin{s, bytes.Clone(committed)})
		case op < 75 && len(pins) > 0: // read an old snapshot, maybe unpin it
			i := rng.Intn(len(pins))
			verify(fmt.Sprintf("step %d: snapshot at txid %d", step, pins[i].snap.Head().TXID), pins[i].snap, pins[i].want)
			if rng.Intn(2) == 0 {
				pins[i].snap.Close()
				pins = append(pins[:i], pins[i+1:]...)
			}
		case op < 80: // the other host takes over the write lease
			other := 1 - writer
			if err := w.db.Release(); err != nil {
				t.Fatal(err)
			}
			gen++
			waitFollow(hosts[other])
			if err := hosts[other].db.Acquire(ctx, e.fence("m.db", gen)); err != nil {
				t.Fatalf("seed %d step %d: acquire: %v", seed, step, err)
			}
			writer = other
		case op < 82: // a compaction pass, maybe partial, maybe with commits landing mid-pass
			passes++
			shardPages := uint32(4 + 4*rng.Intn(2))
			_, err := w.db.Compact(ctx, CompactOptions{ShardPages: shardPages, MaxShards: rng.Intn(4), Hook: func(string, uint32) {
				if rng.Intn(6) == 0 {
					writeTxn(step)
				}
			}})
			if err != nil {
				t.Fatalf("seed %d step %d: compact: %v", seed, step, err)
			}
		case op < 85: // the follower host restarts
			other := 1 - writer
			hosts[other].db.Close()
			hosts[other] = open(e.pager(Options{DirtyMemBytes: 4 * ps}))
		default: // read the latest state
			s, err := w.db.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			verify(fmt.Sprintf("step %d: latest", step), s, committed)
			s.Close()
		}
	}
	for _, p := range pins {
		verify("final pinned", p.snap, p.want)
		p.snap.Close()
	}
	t.Logf("%d commits, %d rollbacks, %d compaction passes, final size %d pages, %+v", commits, rollbacks, passes, len(committed)/ps, hosts[writer].db.Stats())
	if got := usageInEtcd(t, e, "m.db"); got != hosts[writer].db.Stats().Usage {
		t.Fatalf("seed %d: usage %d, recomputed from etcd %d", seed, hosts[writer].db.Stats().Usage, got)
	}
}
