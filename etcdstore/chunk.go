package etcdstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
)

// chunkHeader is the size of what is stored in front of each chunk's
// payload: the value's chunk count and the payload size of every chunk but
// the last (both big-endian uint32), so a reader can locate any byte of the
// value from any one chunk.
const chunkHeader = 8

// maxChunks is the largest chunk count a value may have (the 4 hex digits
// of a chunk key).
const maxChunks = 1 << 16

// ChunkKey returns the key of chunk i of the value stored under base:
// base, '/', and i as at least 4 lowercase hex digits.
func ChunkKey(base string, i int) string {
	if i < 0 || i > 0xffff {
		return fmt.Sprintf("%s/%04x", base, i)
	}
	var b strings.Builder
	b.Grow(len(base) + 5)
	b.WriteString(base)
	b.WriteByte('/')
	writeHex(&b, uint64(i), 4)
	return b.String()
}

// ChunkPrefix returns the prefix covering every chunk of base (and nothing
// else, since chunk keys have a fixed width).
func ChunkPrefix(base string) string { return base + "/" }

// ChunkSize returns the largest chunk payload that, with a key of keyLen
// bytes, fits one request of l alongside nothing else.
func (l Limits) ChunkSize(keyLen int) int {
	return l.MaxRequestBytes - txnOverhead - opOverhead - chunkHeader - keyLen - 16
}

// ChunkOps returns the puts that store value under base in chunks of at most
// chunkSize bytes, followed by a delete of any chunk beyond the new count
// (left by an earlier, longer value). An empty value is one empty chunk.
func ChunkOps(base string, value []byte, chunkSize int) ([]Op, error) {
	n, err := ChunkCount(base, int64(len(value)), chunkSize)
	if err != nil {
		return nil, err
	}
	ops := appendChunkPuts(make([]Op, 0, n+1), base, value, chunkSize, n)
	return append(ops, ChunkTailDelete(base, n)), nil
}

// AppendChunkPuts appends the puts of ChunkOps(base, value, chunkSize) to
// ops, without the final delete of chunks beyond the new count, and returns
// the extended slice and that count. It is for callers that know no longer
// value is left under base, or that add ChunkTailDelete(base, count)
// themselves: in etcd the delete is a range scan.
func AppendChunkPuts(ops []Op, base string, value []byte, chunkSize int) ([]Op, int, error) {
	n, err := ChunkCount(base, int64(len(value)), chunkSize)
	if err != nil {
		return ops, 0, err
	}
	return appendChunkPuts(ops, base, value, chunkSize, n), n, nil
}

// ChunkCount returns the number of chunks of at most chunkSize bytes that
// a value of size bytes stored under base takes: at least one. It fails
// with ErrTooLarge beyond the chunks a key can number.
func ChunkCount(base string, size int64, chunkSize int) (int, error) {
	if chunkSize < 1 {
		return 0, fmt.Errorf("chunk %s: chunk size %d: %w", base, chunkSize, ErrTooLarge)
	}
	n := max((size+int64(chunkSize)-1)/int64(chunkSize), 1)
	if n > maxChunks {
		return 0, fmt.Errorf("chunk %s: %d bytes need %d chunks of %d: %w", base, size, n, chunkSize, ErrTooLarge)
	}
	return int(n), nil
}

// appendChunkPuts appends the puts of value's n chunks.
func appendChunkPuts(ops []Op, base string, value []byte, chunkSize, n int) []Op {
	for i := 0; i < n; i++ {
		lo, hi := i*chunkSize, min((i+1)*chunkSize, len(value))
		ops = append(ops, ChunkOp(base, i, n, chunkSize, value[lo:hi]))
	}
	return ops
}

// ChunkOp returns the put of chunk i of a value of count chunks of size
// bytes (the last may be shorter) stored under base: ChunkOps one chunk at
// a time, for a value streamed from a file.
func ChunkOp(base string, i, count, size int, payload []byte) Op {
	var h [chunkHeader]byte
	binary.BigEndian.PutUint32(h[:], uint32(count))
	binary.BigEndian.PutUint32(h[4:], uint32(size))
	// Built as a string: the etcd client takes values as strings.
	var v strings.Builder
	v.Grow(chunkHeader + len(payload))
	v.Write(h[:])
	v.Write(payload)
	return opPut(ChunkKey(base, i), v.String())
}

// ChunkTailDelete returns the delete of any chunk at index count or above
// under base (left by an earlier, longer value).
func ChunkTailDelete(base string, count int) Op {
	return OpDeleteRange(ChunkKey(base, count), prefixEnd(ChunkPrefix(base)))
}

// PutChunked stores value under base in as few transactions as s.Limits()
// allow, each carrying cmps, and returns the revision of the last one. When
// more than one transaction is needed the write is not atomic: a failure
// leaves some chunks written, and readers must not look at base until the
// caller makes it visible (kvfs flips a head after all chunks landed).
func (s *Store) PutChunked(ctx context.Context, base string, value []byte, cmps []Cmp) (int64, error) {
	size := s.limits.ChunkSize(len(base)+5) - RequestSize(cmps, nil)
	if size < 1 {
		return 0, fmt.Errorf("put chunked %s: %w", base, &LimitError{Bytes: RequestSize(cmps, nil), Limits: s.limits})
	}
	ops, err := ChunkOps(base, value, size)
	if err != nil {
		return 0, err
	}
	batches, err := s.limits.Batches(cmps, ops)
	if err != nil {
		return 0, fmt.Errorf("put chunked %s: %w", base, err)
	}
	var rev int64
	for _, b := range batches {
		res, err := s.Txn(ctx, cmps, b)
		if err != nil {
			return 0, fmt.Errorf("put chunked %s: %w", base, err)
		}
		rev = res.Revision
	}
	return rev, nil
}

// GetChunked reassembles the value stored under base at revision rev
// (0 = latest). It returns ErrNotFound when no chunk exists and ErrCorrupt
// when chunks are missing or disagree about their count.
func (s *Store) GetChunked(ctx context.Context, base string, rev int64) ([]byte, error) {
	var (
		out   []byte
		n     = -1
		index = 0
	)
	// Fetch a few chunks per request to bound response size.
	_, err := s.Range(ctx, ChunkPrefix(base), RangeOptions{Rev: rev, PageSize: 8}, func(kv *KeyValue) error {
		want := ChunkKey(base, index)
		if kv.Key != want {
			return fmt.Errorf("get chunked %s: found %s, want %s: %w", base, kv.Key, want, ErrCorrupt)
		}
		c, payload, err := decodeChunk(kv.Value)
		if err != nil {
			return fmt.Errorf("get chunked %s: chunk %d: %w", base, index, err)
		}
		cn := c.Count
		if n == -1 {
			n = cn
		} else if cn != n {
			return fmt.Errorf("get chunked %s: chunk %d says %d chunks, chunk 0 says %d: %w", base, index, cn, n, ErrCorrupt)
		}
		if index >= n {
			return fmt.Errorf("get chunked %s: chunk %d beyond count %d: %w", base, index, n, ErrCorrupt)
		}
		out = append(out, payload...)
		index++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == -1 {
		return nil, fmt.Errorf("get chunked %s: %w", base, ErrNotFound)
	}
	if index != n {
		return nil, fmt.Errorf("get chunked %s: %d of %d chunks present: %w", base, index, n, ErrCorrupt)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// DecodeChunk splits one chunk's stored value into the chunk count of its
// value and its payload; watchers use it to read a one-chunk value from an
// event without another request.
func DecodeChunk(v []byte) (count int, payload []byte, err error) {
	c, payload, err := decodeChunk(v)
	return c.Count, payload, err
}

// ChunkInfo describes a chunked value, as any of its chunks tells.
type ChunkInfo struct {
	Count int // chunks in the value
	Size  int // payload bytes of every chunk but the last
}

func decodeChunk(v []byte) (ChunkInfo, []byte, error) {
	if len(v) < chunkHeader {
		return ChunkInfo{}, nil, fmt.Errorf("decode chunk: %d bytes: %w", len(v), ErrCorrupt)
	}
	c := ChunkInfo{Count: int(binary.BigEndian.Uint32(v)), Size: int(binary.BigEndian.Uint32(v[4:]))}
	if c.Count < 1 || c.Count > maxChunks || c.Size < 1 || len(v)-chunkHeader > c.Size {
		return ChunkInfo{}, nil, fmt.Errorf("decode chunk: count %d size %d: %w", c.Count, c.Size, ErrCorrupt)
	}
	return c, v[chunkHeader:], nil
}

// GetChunk reads chunk i of the value stored under base at revision rev
// (0 = latest): its payload and what it says of the whole value. It returns
// ErrNotFound when the chunk is absent.
func (s *Store) GetChunk(ctx context.Context, base string, i int, rev int64) (ChunkInfo, []byte, error) {
	kv, _, err := s.Get(ctx, ChunkKey(base, i), rev)
	if err != nil {
		return ChunkInfo{}, nil, err
	}
	c, payload, err := decodeChunk(kv.Value)
	if err != nil {
		return c, nil, fmt.Errorf("get chunk %d of %s: %w", i, base, err)
	}
	if i >= c.Count || (i < c.Count-1 && len(payload) != c.Size) {
		return c, nil, fmt.Errorf("get chunk %d of %s: %d bytes, chunk %d of %d of size %d: %w", i, base, len(payload), i, c.Count, c.Size, ErrCorrupt)
	}
	return c, payload, nil
}
