package pager

import (
	"context"
	"io"
	"sync/atomic"
)

// Snapshot is a read view pinned to one committed txid. A SQLite read
// transaction uses one from its first read to its unlock.
type Snapshot struct {
	db     *Database
	v      view
	closed atomic.Bool
}

// Head returns the pinned head.
func (s *Snapshot) Head() Head { return s.v.head }

// Size returns the database size in bytes at the snapshot.
func (s *Snapshot) Size() int64 { return s.v.head.Size() }

// Usage returns the bytes the database stored in etcd at the snapshot.
func (s *Snapshot) Usage() int64 { return s.v.usage() }

// ReadPage reads page pgno into dst (at least one page long). Pages past the
// end read as zeros.
func (s *Snapshot) ReadPage(ctx context.Context, pgno uint32, dst []byte) error {
	return s.db.readPage(ctx, s.v, pgno, dst[:s.v.head.PageSize])
}

// ReadAt reads len(p) bytes at off, as from a file of Size() bytes: a read
// at or past the end returns io.EOF, a read across it is short.
func (s *Snapshot) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return readAt(p, off, s.v.head.Size(), s.v.head.PageSize, func(pgno uint32, dst []byte) error {
		return s.ReadPage(ctx, pgno, dst)
	})
}

// Close unpins the snapshot. It is safe to call more than once; reading a
// closed snapshot still reads its commit, as long as etcd keeps the history.
func (s *Snapshot) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.db.unpin(s.v.rev)
}

// readAt implements file-style reads over pages.
func readAt(p []byte, off, size int64, pageSize uint32, readPage func(pgno uint32, dst []byte) error) (int, error) {
	if off < 0 {
		return 0, ErrInvalidWrite
	}
	if off >= size || pageSize == 0 {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		want = int(size - off)
	}
	ps := int64(pageSize)
	var buf []byte
	n := 0
	for n < want {
		pos := off + int64(n)
		pgno := uint32(pos/ps) + 1
		in := int(pos % ps)
		if in == 0 && want-n >= int(ps) {
			if err := readPage(pgno, p[n:n+int(ps)]); err != nil {
				return n, err
			}
			n += int(ps)
			continue
		}
		if buf == nil {
			buf = make([]byte, ps)
		}
		if err := readPage(pgno, buf); err != nil {
			return n, err
		}
		n += copy(p[n:want], buf[in:])
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}
