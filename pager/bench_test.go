package pager

import (
	"context"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
)

// The benchmarks run against the package's embedded etcd (testEtcd: etcd's
// default limits, fsync on), each on its own key prefix:
//
//	go test ./pager -run '^$' -bench . -benchtime 3s
//
// Pages are "realistic-ish": half random bytes (cell content), half a
// repeating pattern, so LZ4 halves them, about as it does real b-tree pages.

const benchPageSize = 4096

// benchPage returns page pgno at version v, compressing about 2:1.
func benchPage(rng *rand.Rand, pgno uint32, v byte) []byte {
	if pgno == 1 {
		return sqlitePage1(benchPageSize, v)
	}
	b := pageOf(benchPageSize, pgno, v)
	rng.Read(b[:benchPageSize/2])
	return b
}

// openBenchStore opens a client of the embedded etcd, closed in b.Cleanup.
func openBenchStore(b *testing.B) *etcdstore.Store {
	b.Helper()
	s, err := etcdstore.Open(context.Background(), testEtcd.Config())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// openBenchWriter creates database name (through creator, a store that
// writes) and opens it on a new Pager over store as the writer, under a
// lease from m; everything closes in b.Cleanup.
func openBenchWriter(b *testing.B, store, creator Store, keys etcdstore.Keys, m *fence.Manager, name string) *Database {
	b.Helper()
	ctx := context.Background()
	p, err := New(Options{Store: store, Keys: keys, SpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	cp, err := New(Options{Store: creator, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer cp.Close()
	if err := cp.Create(ctx, name); err != nil {
		b.Fatal(err)
	}
	db, err := p.Open(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	lease, err := m.Acquire(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Acquire(ctx, lease); err != nil {
		b.Fatal(err)
	}
	return db
}

// countingStore counts the store calls that are etcd round trips (a Watch
// is a stream, not counted).
type countingStore struct {
	Store
	gets, chunks, ranges, txns atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string, rev int64) (*etcdstore.KeyValue, int64, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key, rev)
}

func (c *countingStore) Range(ctx context.Context, prefix string, o etcdstore.RangeOptions, fn func(*etcdstore.KeyValue) error) (int64, error) {
	c.ranges.Add(1)
	return c.Store.Range(ctx, prefix, o, fn)
}

func (c *countingStore) GetChunked(ctx context.Context, base string, rev int64) ([]byte, error) {
	c.chunks.Add(1) // at least one; a multi-chunk value costs more
	return c.Store.GetChunked(ctx, base, rev)
}

func (c *countingStore) GetChunk(ctx context.Context, base string, i int, rev int64) (etcdstore.ChunkInfo, []byte, error) {
	c.chunks.Add(1)
	return c.Store.GetChunk(ctx, base, i, rev)
}

func (c *countingStore) GetMany(ctx context.Context, keys []string, rev int64) ([]*etcdstore.KeyValue, error) {
	c.gets.Add(1)
	return c.Store.GetMany(ctx, keys, rev)
}

func (c *countingStore) Txn(ctx context.Context, cmps []etcdstore.Cmp, ops []etcdstore.Op) (etcdstore.TxnResult, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, cmps, ops)
}

// roundTrips returns the reads counted so far.
func (c *countingStore) roundTrips() int64 {
	return c.gets.Load() + c.chunks.Load() + c.ranges.Load()
}

// latencies collects per-operation times and reports p50, p99 and a rate.
type latencies []time.Duration

func (l latencies) report(b *testing.B, rateUnit string) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), rateUnit)
}

// nullTxnStore acknowledges every transaction without sending it, so a
// commit costs only the pager's own work.
type nullTxnStore struct {
	Store
	rev atomic.Int64
}

func (s *nullTxnStore) Txn(context.Context, []etcdstore.Cmp, []etcdstore.Op) (etcdstore.TxnResult, error) {
	return etcdstore.TxnResult{Revision: s.rev.Add(1)}, nil
}

// BenchmarkCommit measures sequential commits of 1, 10 and 100 pages on the
// writer host, next to the raw etcd transaction of the same shape in the
// same run:
//
//   - raw: compare the fence (the same fence.Lease compares) and the head's
//     mod revision; put one value the size of the commit's delta, a page
//     index row and the head;
//   - pager: Begin, WritePage n times, Commit; it reports its mean and p50
//     over raw's as x-raw and x-raw-p50 (target for 1 page: ≤ 1.10) and the
//     etcd round trips per commit;
//   - pager-cpu: the same commits with a store that acknowledges without
//     sending: the pager's own time per commit.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	s := openBenchStore(b)
	keys := etcdstore.NewKeys(fmt.Sprintf("/bench/commit-%d/", prefixSeq.Add(1)))
	m := fence.NewManager(s, keys, fence.Options{Owner: "bench"})
	b.Cleanup(func() { m.Close(context.Background()) })
	cs := &countingStore{Store: s}
	rng := rand.New(rand.NewSource(1))
	pool := make([][]byte, 128)
	for i := range pool {
		pool[i] = benchPage(rng, uint32(i+2), byte(i))
	}
	// writer opens a database of page 1 and 128 pages as writer on a Pager
	// over store and returns a function committing n pages of it.
	writer := func(store Store, name string, n int) func(i int) (CommitInfo, error) {
		db := openBenchWriter(b, store, s, keys, m, name)
		tx, err := db.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		tx.WritePage(ctx, 1, sqlitePage1(benchPageSize, 0))
		for i, pg := range pool {
			tx.WritePage(ctx, uint32(i+2), pg)
		}
		if _, err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		return func(i int) (CommitInfo, error) {
			tx, err := db.Begin(ctx)
			if err != nil {
				return CommitInfo{}, err
			}
			for j := 0; j < n; j++ {
				k := (i*n + j) % len(pool)
				if err := tx.WritePage(ctx, uint32(k+2), pool[(k+i)%len(pool)]); err != nil {
					tx.Rollback()
					return CommitInfo{}, err
				}
			}
			return tx.Commit(ctx)
		}
	}
	// run runs commit b.N times and reports latencies.
	run := func(b *testing.B, bytes int, commit func(i int) error) latencies {
		lat := make(latencies, 0, b.N)
		b.SetBytes(int64(bytes))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := commit(i); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		return lat
	}

	for _, n := range []int{1, 10, 100} {
		commit := writer(cs, fmt.Sprintf("pages-%d.db", n), n)
		info, err := commit(0) // learn the delta's size
		if err != nil {
			b.Fatal(err)
		}
		row := make([]uint32, n)
		for j := range row {
			row[j] = uint32(j + 2)
		}
		var rawMean, rawP50 float64
		b.Run(fmt.Sprintf("pages=%d/raw", n), func(b *testing.B) {
			name := fmt.Sprintf("raw-%d.db", n)
			lease, err := m.Acquire(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			defer lease.Release(ctx)
			head := keys.Head(name)
			res, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(head, Head{}.marshal())})
			if err != nil {
				b.Fatal(err)
			}
			headRev := res.Revision
			value := make([]byte, info.Bytes)
			rng.Read(value)
			pidx := encodePgnos(row)
			lat := run(b, info.Bytes, func(i int) error {
				txid := uint64(i + 1)
				fc, err := lease.Cmps()
				if err != nil {
					return err
				}
				h := Head{TXID: txid, Generation: lease.Generation(), PageSize: benchPageSize, Pages: 129, Timestamp: time.Now().UnixMilli()}
				res, err := s.Txn(ctx,
					append(fc, etcdstore.CmpModRevision(head, headRev)),
					[]etcdstore.Op{
						etcdstore.OpPut(etcdstore.ChunkKey(keys.Delta(name, txid), 0), value),
						etcdstore.OpPut(etcdstore.ChunkKey(keys.PIDX(name, txid), 0), pidx),
						etcdstore.OpPut(head, h.marshal()),
					})
				headRev = res.Revision
				return err
			})
			lat.report(b, "txn/s")
			rawMean = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			rawP50 = float64(lat[len(lat)/2].Nanoseconds())
		})
		b.Run(fmt.Sprintf("pages=%d/pager", n), func(b *testing.B) {
			trips := cs.roundTrips() + cs.txns.Load()
			lat := run(b, info.Bytes, func(i int) error {
				info, err := commit(i + 1)
				if err == nil && (info.Staged || info.Txns != 1) {
					err = fmt.Errorf("%d-page commit: %+v, want one fast-path txn", n, info)
				}
				return err
			})
			lat.report(b, "commits/s")
			b.ReportMetric(float64(cs.roundTrips()+cs.txns.Load()-trips)/float64(b.N), "roundtrips/op")
			if rawMean > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rawMean, "x-raw")
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/rawP50, "x-raw-p50")
			}
		})
		null := &nullTxnStore{Store: s}
		null.rev.Store(1 << 40) // above etcd's revisions: the pager takes its heads as newer
		cpuCommit := writer(null, fmt.Sprintf("cpu-%d.db", n), n)
		b.Run(fmt.Sprintf("pages=%d/pager-cpu", n), func(b *testing.B) {
			commit := cpuCommit
			b.ReportAllocs()
			run(b, info.Bytes, func(i int) error {
				_, err := commit(i + 1)
				return err
			})
		})
	}
}

// Read benchmarks share one database of readDBPages pages (~40 MB), written
// once per test binary in readDBCommits commits of consecutive pages, so
// that its pages are spread over that many deltas.
const (
	readDBPages   = 10_000
	readDBCommits = 100
	readDBName    = "read.db"
)

var readDB struct {
	once sync.Once
	keys etcdstore.Keys
	err  error
}

// staticFence is a Fence over a key the benchmark writes once.
type staticFence struct{ key string }

func (f staticFence) Cmps() ([]etcdstore.Cmp, error) {
	return []etcdstore.Cmp{etcdstore.CmpValue(f.key, []byte("bench"))}, nil
}
func (f staticFence) Generation() uint64 { return 1 }

// benchReadDB returns the keys of the shared read database, building it on
// first use.
func benchReadDB(b *testing.B) etcdstore.Keys {
	b.Helper()
	readDB.once.Do(func() {
		readDB.keys = etcdstore.NewKeys(fmt.Sprintf("/bench/read-%d/", prefixSeq.Add(1)))
		readDB.err = buildReadDB(b.TempDir(), readDB.keys)
	})
	if readDB.err != nil {
		b.Fatal(readDB.err)
	}
	return readDB.keys
}

func buildReadDB(spool string, keys etcdstore.Keys) error {
	ctx := context.Background()
	s, err := etcdstore.Open(ctx, testEtcd.Config())
	if err != nil {
		return err
	}
	defer s.Close()
	p, err := New(Options{Store: s, Keys: keys, SpoolDir: spool})
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.Create(ctx, readDBName); err != nil {
		return err
	}
	db, err := p.Open(ctx, readDBName)
	if err != nil {
		return err
	}
	defer db.Close()
	f := staticFence{keys.Fence(readDBName)}
	if _, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(f.key, []byte("bench"))}); err != nil {
		return err
	}
	if err := db.Acquire(ctx, f); err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(2))
	per := readDBPages / readDBCommits
	for c := 0; c < readDBCommits; c++ {
		tx, err := db.Begin(ctx)
		if err != nil {
			return err
		}
		for pg := c*per + 1; pg <= (c+1)*per; pg++ {
			if err := tx.WritePage(ctx, uint32(pg), benchPage(rng, uint32(pg), 1)); err != nil {
				tx.Rollback()
				return err
			}
		}
		if _, err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit %d: %w", c, err)
		}
	}
	if h := db.Head(); h.Pages != readDBPages || h.TXID != readDBCommits {
		return fmt.Errorf("read database head %+v", h)
	}
	return nil
}

// readSnapshot opens the read database on a fresh Pager over store and
// calls fn with the Pager and a snapshot of the database.
func readSnapshot(b *testing.B, store Store, keys etcdstore.Keys, fn func(*Pager, *Snapshot)) {
	b.Helper()
	ctx := context.Background()
	p, err := New(Options{Store: store, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	db, err := p.Open(ctx, readDBName)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	snap, err := db.Snapshot(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer snap.Close()
	fn(p, snap)
}

// coldRead opens the read database on a fresh Pager (empty caches) over a
// counting store and calls fn with a snapshot of it.
func coldRead(b *testing.B, s *etcdstore.Store, keys etcdstore.Keys, fn func(*Snapshot)) (roundTrips int64) {
	b.Helper()
	cs := &countingStore{Store: s}
	readSnapshot(b, cs, keys, func(_ *Pager, snap *Snapshot) { fn(snap) })
	return cs.roundTrips()
}

// checkBenchPage checks the pattern half of a page read from the read
// database (the random half is not kept).
func checkBenchPage(b *testing.B, pgno uint32, got []byte) {
	if pgno == 1 {
		return
	}
	want := pageOf(benchPageSize, pgno, 1)
	if string(got[benchPageSize/2:]) != string(want[benchPageSize/2:]) {
		b.Fatalf("page %d: wrong content", pgno)
	}
}

// BenchmarkColdRandomRead reads 1,000 random pages of the 10,000-page
// database from a fresh Pager: time and etcd round trips (opening the
// database — head and page index — included) per 1,000 pages.
func BenchmarkColdRandomRead(b *testing.B) {
	keys := benchReadDB(b)
	s := openBenchStore(b)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(3))
	buf := make([]byte, benchPageSize)
	var trips int64
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		trips += coldRead(b, s, keys, func(snap *Snapshot) {
			for j := 0; j < 1000; j++ {
				pgno := uint32(rng.Intn(readDBPages) + 1)
				if err := snap.ReadPage(ctx, pgno, buf); err != nil {
					b.Fatal(err)
				}
				checkBenchPage(b, pgno, buf)
			}
		})
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(trips)/float64(b.N), "roundtrips/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
}

// BenchmarkHotRead reads pages that are in the page cache: ns/op is ns per
// page.
func BenchmarkHotRead(b *testing.B) {
	keys := benchReadDB(b)
	readSnapshot(b, openBenchStore(b), keys, func(p *Pager, snap *Snapshot) {
		ctx := context.Background()
		// A working set of 1,000 pages, warmed.
		const hot = 1000
		buf := make([]byte, benchPageSize)
		for pg := uint32(1); pg <= hot; pg++ {
			if err := snap.ReadPage(ctx, pg, buf); err != nil {
				b.Fatal(err)
			}
		}
		before := p.Stats()
		b.SetBytes(benchPageSize)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := snap.ReadPage(ctx, uint32(i%hot)+1, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if st := p.Stats(); st.PageCacheMisses != before.PageCacheMisses {
			b.Fatalf("%d page cache misses while hot", st.PageCacheMisses-before.PageCacheMisses)
		}
	})
}

// BenchmarkColdScan reads every page of the 10,000-page database in order
// from a fresh Pager: MB/s, and etcd round trips per scan.
func BenchmarkColdScan(b *testing.B) {
	keys := benchReadDB(b)
	s := openBenchStore(b)
	ctx := context.Background()
	buf := make([]byte, benchPageSize)
	var trips int64
	b.SetBytes(readDBPages * benchPageSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		trips += coldRead(b, s, keys, func(snap *Snapshot) {
			for pg := uint32(1); pg <= readDBPages; pg++ {
				if err := snap.ReadPage(ctx, pg, buf); err != nil {
					b.Fatal(err)
				}
				checkBenchPage(b, pg, buf)
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(trips)/float64(b.N), "roundtrips/op")
}

// BenchmarkLargeCommit commits one transaction of 6,400 pages (25 MiB, the
// bench's 100k-row transaction of 200-byte hex values): pages of hex text,
// which LZ4 barely compresses. It is the staged path end to end: encoding,
// chunking, the staged transactions and the head flip.
//
//	go test ./pager -run '^$' -bench LargeCommit -benchtime 5x
func BenchmarkLargeCommit(b *testing.B) {
	ctx := context.Background()
	s := openBenchStore(b)
	keys := etcdstore.NewKeys(fmt.Sprintf("/bench/large-%d/", prefixSeq.Add(1)))
	m := fence.NewManager(s, keys, fence.Options{Owner: "bench"})
	b.Cleanup(func() { m.Close(context.Background()) })
	const name, pages = "large.db", 6400
	db := openBenchWriter(b, s, s, keys, m, name)
	rng := rand.New(rand.NewSource(1))
	const hexDigits = "0123456789ABCDEF"
	data := make([][]byte, pages+1)
	data[1] = sqlitePage1(benchPageSize, 0)
	for pg := 2; pg <= pages; pg++ {
		d := make([]byte, benchPageSize)
		for i := range d {
			d[i] = hexDigits[rng.Intn(16)]
		}
		data[pg] = d
	}
	b.SetBytes(pages * benchPageSize)
	var info CommitInfo
	for b.Loop() {
		tx, err := db.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for pg := 1; pg <= pages; pg++ {
			if err := tx.WritePage(ctx, uint32(pg), data[pg]); err != nil {
				b.Fatal(err)
			}
		}
		if info, err = tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(info.Txns), "txns/op")
	b.ReportMetric(float64(info.Bytes)/(1<<20), "MiB/op")
}
