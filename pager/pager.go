package pager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
	"github.com/prometheus/client_golang/prometheus"
)

// Fence proves this host holds a database's write lease; fence.Lease
// implements it. The pager puts Cmps into every write transaction, so a
// holder that lost its lease lands nothing.
type Fence interface {
	// Cmps returns the compares every write must carry, or an error when
	// the lease is already known to be lost.
	Cmps() ([]etcdstore.Cmp, error)
	// Generation returns the lease's fence generation.
	Generation() uint64
}

// Store is the part of etcdstore.Store the pager uses; tests wrap it to
// inject faults. Each method's contract is etcdstore.Store's.
type Store interface {
	Get(ctx context.Context, key string, rev int64) (*etcdstore.KeyValue, int64, error)
	Range(ctx context.Context, prefix string, o etcdstore.RangeOptions, fn func(*etcdstore.KeyValue) error) (int64, error)
	GetChunked(ctx context.Context, base string, rev int64) ([]byte, error)
	GetChunk(ctx context.Context, base string, i int, rev int64) (etcdstore.ChunkInfo, []byte, error)
	GetMany(ctx context.Context, keys []string, rev int64) ([]*etcdstore.KeyValue, error)
	Txn(ctx context.Context, cmps []etcdstore.Cmp, ops []etcdstore.Op) (etcdstore.TxnResult, error)
	Watch(ctx context.Context, prefix string, fromRev int64) <-chan etcdstore.WatchBatch
	Limits() etcdstore.Limits
}

var _ Store = (*etcdstore.Store)(nil)

// Quota limits one database. Zero fields mean unlimited.
type Quota struct {
	// MaxBytes limits Head.UsedBytes: the bytes the database stores in etcd.
	MaxBytes int64
	// MaxPages limits the database size in pages.
	MaxPages int64
}

// DefaultPlainMaxBytes is Options.PlainMaxBytes's default, 64 MiB.
const DefaultPlainMaxBytes = 64 << 20

// PlainPageSize is the page size of a plain file written from empty.
const PlainPageSize = 4096

// Options configure a Pager.
type Options struct {
	// Store is the etcd connection (an *etcdstore.Store). Required.
	Store Store
	// Keys is the key layout (prefix). Zero value: etcdstore.DefaultPrefix.
	Keys etcdstore.Keys
	// PageCacheBytes bounds the decoded-page cache (default 64 MiB).
	PageCacheBytes int64
	// BlobCacheBytes bounds the cache of fetched LTX blobs (default 64 MiB).
	BlobCacheBytes int64
	// DirtyMemBytes is how much of a write transaction stays in memory
	// before pages spill to the spool (default 64 MiB).
	DirtyMemBytes int64
	// SpoolDir holds spool files of large transactions (default os.TempDir()).
	SpoolDir string
	// PlainMaxBytes bounds the size of a plain (non-SQLite) file (default
	// DefaultPlainMaxBytes); databases are bounded by their quota only.
	PlainMaxBytes int64
	// Quota applies to every database unless QuotaFor overrides it.
	Quota Quota
	// QuotaFor returns the quota of the database at path (Database.Path);
	// nil means Quota for all.
	QuotaFor func(path string) Quota
	// ResolveTimeout bounds how long a commit whose outcome etcd left
	// unknown keeps trying to learn it (default 30 s).
	ResolveTimeout time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Backpressure, when set, is asked before each commit how long to wait
	// first; compaction uses it to slow commits down when they outpace
	// folding (ctx ends the wait).
	Backpressure func(db string, s Stats) time.Duration
	// Preload lists page ranges fetched, with page 1, when a database is
	// opened: one etcd round trip for the deltas holding them.
	Preload []PageRange
	// History keeps every committed version for this long (the history
	// window, see history.go): commits write log rows and compaction keeps
	// what versions in the window need. 0 keeps no history.
	History time.Duration
	// HistoryEpoch is how often a complete compaction pass records an
	// epoch for history (default History/4): more often makes opening an
	// old version read fewer log rows, and keeps more shard versions.
	HistoryEpoch time.Duration
	// HistoryMaxBytes bounds the history one database keeps (0: no bound):
	// a complete compaction pass that finds more drops the versions before
	// the current one, window or not, and logs it.
	HistoryMaxBytes int64
	// Now is the clock of commit timestamps and history expiry (default
	// time.Now).
	Now func() time.Time
	// Metrics records Prometheus metrics (NewMetrics); nil records none.
	Metrics *Metrics
	// Registerer, with Metrics, also exposes the cache counters.
	Registerer prometheus.Registerer
}

// PageRange is pages First through Last, inclusive.
type PageRange struct{ First, Last uint32 }

// Pager opens databases stored under one etcd prefix. It is safe for
// concurrent use; each database is opened once per Pager and shared.
type Pager struct {
	opts       Options
	store      Store
	keys       etcdstore.Keys
	log        *slog.Logger
	metrics    *Metrics
	pages      *lru[pageKey, []byte]
	blobs      *lru[blobKey, *ltx.Blob]
	chunks     *lru[chunkKey, []byte]
	fetch      flight[blobKey, *ltx.Blob]
	fetchChunk flight[chunkKey, []byte]
	mu         sync.Mutex
	dbs        map[string]*Database
	closed     bool
}

// pageKey names a decoded page: database incarnation (the head key's create
// revision, new for a re-created database), txid of its delta, page number.
type pageKey struct {
	inc  int64
	txid uint64
	pgno uint32
}

// blobKey names an immutable blob: a delta, or a shard version.
type blobKey struct {
	inc   int64
	txid  uint64
	shard bool
	n     uint32 // shard number
}

func (k blobKey) String() string {
	if k.shard {
		return fmt.Sprintf("shard %d at txid %d", k.n, k.txid)
	}
	return fmt.Sprintf("delta %d", k.txid)
}

// New returns a Pager.
func New(opts Options) (*Pager, error) {
	if opts.Store == nil {
		return nil, errors.New("pager: no store")
	}
	if opts.Keys == (etcdstore.Keys{}) {
		opts.Keys = etcdstore.NewKeys("")
	}
	if opts.PageCacheBytes <= 0 {
		opts.PageCacheBytes = 64 << 20
	}
	if opts.BlobCacheBytes <= 0 {
		opts.BlobCacheBytes = 64 << 20
	}
	if opts.DirtyMemBytes <= 0 {
		opts.DirtyMemBytes = 64 << 20
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}
	if opts.PlainMaxBytes <= 0 {
		opts.PlainMaxBytes = DefaultPlainMaxBytes
	}
	if opts.History > 0 && opts.HistoryEpoch <= 0 {
		opts.HistoryEpoch = opts.History / 4
	}
	if opts.ResolveTimeout <= 0 {
		opts.ResolveTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pager{
		opts: opts, store: opts.Store, keys: opts.Keys, log: log, metrics: opts.Metrics,
		pages:  newLRU[pageKey](opts.PageCacheBytes, func(b []byte) int64 { return int64(len(b)) + 64 }),
		blobs:  newLRU[blobKey](opts.BlobCacheBytes, func(b *ltx.Blob) int64 { return int64(b.Resident()) + 256 }),
		chunks: newLRU[chunkKey](opts.BlobCacheBytes, func(b []byte) int64 { return int64(len(b)) + 64 }),
		dbs:    make(map[string]*Database),
	}
	if opts.Metrics != nil && opts.Registerer != nil {
		opts.Metrics.registerCaches(opts.Registerer, p)
	}
	return p, nil
}

// PagerStats describes the pager's caches.
type PagerStats struct {
	PageCacheBytes, BlobCacheBytes, ChunkCacheBytes int64
	PageCacheHits, PageCacheMisses                  uint64
	BlobCacheHits, BlobCacheMisses                  uint64
	OpenDatabases                                   int
}

// Stats returns the pager's cache statistics.
func (p *Pager) Stats() PagerStats {
	var s PagerStats
	s.PageCacheBytes, _, s.PageCacheHits, s.PageCacheMisses, _ = p.pages.stats()
	s.BlobCacheBytes, _, s.BlobCacheHits, s.BlobCacheMisses, _ = p.blobs.stats()
	s.ChunkCacheBytes, _, _, _, _ = p.chunks.stats()
	p.mu.Lock()
	s.OpenDatabases = len(p.dbs)
	p.mu.Unlock()
	return s
}

func (p *Pager) quota(db string) Quota {
	if p.opts.QuotaFor != nil {
		return p.opts.QuotaFor(db)
	}
	return p.opts.Quota
}

// Create, CreateAs, List and Remove work on the flat catalog of kvfs before
// directories (key schema 1), which Upgrade moves into the namespace: kvfs
// itself now names databases with CreateIn, ReadDir, Unlink and Rename
// (namespace.go); these remain for the tests that build such a store and
// for databases opened by id.

// Create creates an empty database (txid 0, no pages) with DefaultAttrs.
// It returns ErrExists when it exists and an error matching
// etcdstore.ErrInvalidName for a bad name.
func (p *Pager) Create(ctx context.Context, name string) error {
	return p.CreateAs(ctx, name, DefaultAttrs)
}

// CreateAs is Create with the file's attributes a (a.Changed is set to the
// creation time).
func (p *Pager) CreateAs(ctx context.Context, name string, a Attrs) error {
	if err := etcdstore.ValidateName(name); err != nil {
		return err
	}
	if a.Mode&^0o7777 != 0 {
		return fmt.Errorf("create %s: mode %#o: %w", name, a.Mode, ErrInvalidWrite)
	}
	head := Head{Timestamp: time.Now().UnixMilli()}
	a.Changed = head.Timestamp
	_, err := p.store.Txn(ctx,
		[]etcdstore.Cmp{etcdstore.CmpAbsent(p.keys.Head(name))},
		[]etcdstore.Op{
			etcdstore.OpPut(p.keys.Head(name), head.marshal()),
			etcdstore.OpPut(p.keys.Attrs(name), a.marshal()),
			etcdstore.OpPut(p.keys.CatalogEntry(name), []byte(strconv.FormatInt(head.Timestamp, 10))),
		})
	if errors.Is(err, etcdstore.ErrCompareFailed) {
		return fmt.Errorf("create %s: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	return nil
}

// List returns the names of every database, sorted.
func (p *Pager) List(ctx context.Context) ([]string, error) {
	var names []string
	prefix := p.keys.Catalog()
	_, err := p.store.Range(ctx, prefix, etcdstore.RangeOptions{KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
		names = append(names, kv.Key[len(prefix):])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return names, nil
}

// Remove deletes a database and all its data in one transaction fenced by
// f. Open handles of it fail afterwards.
func (p *Pager) Remove(ctx context.Context, name string, f Fence) error {
	if err := etcdstore.ValidateName(name); err != nil {
		return err
	}
	cmps, err := f.Cmps()
	if err != nil {
		return fmt.Errorf("remove %s: %w: %w", name, ErrFenced, err)
	}
	if _, _, err := p.store.Get(ctx, p.keys.Head(name), 0); errors.Is(err, etcdstore.ErrNotFound) {
		return fmt.Errorf("remove %s: %w", name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	_, err = p.store.Txn(ctx, cmps, []etcdstore.Op{
		etcdstore.OpDeletePrefix(p.keys.DB(name)),
		etcdstore.OpDelete(p.keys.CatalogEntry(name)),
	})
	if errors.Is(err, etcdstore.ErrCompareFailed) {
		return fmt.Errorf("remove %s: %w: %w", name, ErrFenced, err)
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	p.mu.Lock()
	if db := p.dbs[name]; db != nil {
		db.markRemoved()
	}
	p.mu.Unlock()
	return nil
}

// Open returns the database, read-only until Acquire. It returns ErrNotFound
// when it does not exist. Every Open needs a Close.
func (p *Pager) Open(ctx context.Context, name string) (*Database, error) {
	if err := etcdstore.ValidateName(name); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if db := p.dbs[name]; db != nil && !db.isRemoved() {
		db.refs++
		p.mu.Unlock()
		return db, nil
	}
	p.mu.Unlock()

	db := newDatabase(p, name)
	if err := db.load(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if other := p.dbs[name]; other != nil && !other.isRemoved() {
		// Another Open won the race; use its instance.
		other.refs++
		db.stopFollowing()
		return other, nil
	}
	db.refs = 1
	p.dbs[name] = db
	return db, nil
}

// Databases returns the open databases.
func (p *Pager) Databases() []*Database {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Database, 0, len(p.dbs))
	for _, db := range p.dbs {
		out = append(out, db)
	}
	return out
}

// release drops one reference to db, closing it at zero.
func (p *Pager) release(db *Database) {
	p.mu.Lock()
	db.refs--
	last := db.refs <= 0
	if last && p.dbs[db.name] == db {
		delete(p.dbs, db.name)
	}
	p.mu.Unlock()
	if last {
		db.stopFollowing()
	}
}

// Close closes every open database.
func (p *Pager) Close() error {
	p.mu.Lock()
	p.closed = true
	dbs := p.dbs
	p.dbs = map[string]*Database{}
	p.mu.Unlock()
	for _, db := range dbs {
		db.stopFollowing()
	}
	return nil
}

// flight deduplicates concurrent fetches of one thing.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func (f *flight[K, V]) do(k K, fn func() (V, error)) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[K]*flightCall[V])
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &flightCall[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	c.val, c.err = fn()
	close(c.done)
	f.mu.Lock()
	delete(f.calls, k)
	f.mu.Unlock()
	return c.val, c.err
}
