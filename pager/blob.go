package pager

import (
	"context"
	"fmt"
	"sync"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
)

// chunkKey names one chunk of a blob.
type chunkKey struct {
	blob  blobKey
	chunk int
}

// blobBase returns the chunk base key of a blob.
func (db *Database) blobBase(k blobKey) string {
	if k.shard {
		return db.p.keys.ShardVersion(db.name, k.n, k.txid)
	}
	return db.p.keys.Delta(db.name, k.txid)
}

// openBlob opens a delta or shard version as of rev. A one-chunk blob is
// fetched whole; a larger one is opened through its first and last chunks
// (header, page index) and its pages are read chunk by chunk as needed, so
// a page of a huge blob costs one chunk, not the blob.
func (db *Database) openBlob(ctx context.Context, k blobKey, rev int64) (*ltx.Blob, error) {
	base := db.blobBase(k)
	info, first, err := db.p.store.GetChunk(ctx, base, 0, rev)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", db.name, k, err)
	}
	if info.Count == 1 {
		blob, err := ltx.OpenBlob(first)
		if err != nil {
			return nil, fmt.Errorf("read %s %s: %w: %w", db.name, k, ErrCorrupt, err)
		}
		return blob, nil
	}
	r := &chunkReader{db: db, base: base, rev: rev, info: info, key: chunkKey{k, 0}}
	db.p.chunks.put(r.key, first)
	_, last, err := db.p.store.GetChunk(ctx, base, info.Count-1, rev)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", db.name, k, err)
	}
	db.p.chunks.put(chunkKey{k, info.Count - 1}, last)
	size := int64(info.Count-1)*int64(info.Size) + int64(len(last))
	blob, err := ltx.OpenBlobAt(r, size)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w: %w", db.name, k, ErrCorrupt, err)
	}
	return blob, nil
}

// chunkReader reads a chunked value as an io.ReaderAt, fetching chunks on
// demand through the pager's chunk cache, and reading ahead one chunk.
type chunkReader struct {
	db   *Database
	base string
	rev  int64
	info etcdstore.ChunkInfo
	key  chunkKey
	mu   sync.Mutex
	next int // chunk being read ahead, or 0
}

func (r *chunkReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := int(pos / int64(r.info.Size))
		in := int(pos % int64(r.info.Size))
		c, err := r.chunk(i)
		if err != nil {
			return n, err
		}
		if in >= len(c) {
			return n, fmt.Errorf("read %s at %d: past the end: %w", r.base, pos, ErrCorrupt)
		}
		n += copy(p[n:], c[in:])
		r.readAhead(i + 1)
	}
	return n, nil
}

func (r *chunkReader) chunk(i int) ([]byte, error) {
	if i >= r.info.Count {
		return nil, fmt.Errorf("read %s: chunk %d of %d: %w", r.base, i, r.info.Count, ErrCorrupt)
	}
	k := r.key
	k.chunk = i
	if c, ok := r.db.p.chunks.get(k); ok {
		return c, nil
	}
	c, err := r.db.p.fetchChunk.do(k, func() ([]byte, error) {
		_, c, err := r.db.p.store.GetChunk(context.Background(), r.base, i, r.rev)
		if err != nil {
			return nil, fmt.Errorf("read %s chunk %d: %w", r.base, i, err)
		}
		r.db.p.chunks.put(k, c)
		return c, nil
	})
	return c, err
}

// readAhead fetches chunk i in the background, for sequential scans.
func (r *chunkReader) readAhead(i int) {
	if i >= r.info.Count {
		return
	}
	k := r.key
	k.chunk = i
	if _, ok := r.db.p.chunks.get(k); ok {
		return
	}
	r.mu.Lock()
	if r.next == i {
		r.mu.Unlock()
		return
	}
	r.next = i
	r.mu.Unlock()
	go r.chunk(i)
}
