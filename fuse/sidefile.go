package fuse

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// sideNode is a file SQLite keeps beside a database (-journal, -wal, -shm,
// super-journals). It lives on this host only, in an unlinked spool file:
// if kvfs dies the journal goes with the uncommitted transaction, which is
// exactly a rollback. Invalidating a -journal is its database's commit
// point.
type sideNode struct {
	fs.Inode
	fsys *FS
	name string
	db   string // the database it belongs to

	mu   sync.Mutex
	f    *os.File
	size int64
}

var (
	_ fs.NodeGetattrer = (*sideNode)(nil)
	_ fs.NodeSetattrer = (*sideNode)(nil)
	_ fs.NodeOpener    = (*sideNode)(nil)
	_ fs.NodeReader    = (*sideNode)(nil)
	_ fs.NodeWriter    = (*sideNode)(nil)
	_ fs.NodeFsyncer   = (*sideNode)(nil)
)

type sideHandle struct{ s *sideNode }

// sideOpenFlags: side files are not cached by the kernel, and closing one
// needs no FLUSH (nothing is buffered; the journal's commit points are its
// truncation, header zeroing and deletion).
const sideOpenFlags = gofuse.FOPEN_DIRECT_IO | gofuse.FOPEN_NOFLUSH

func (fsys *FS) createSide(ctx context.Context, name string) (*sideNode, error) {
	db, _ := isSide(name)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if s := fsys.sides[name]; s != nil {
		return s, nil
	}
	f, err := os.CreateTemp(fsys.opts.SpoolDir, "kvfs-side-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	os.Remove(f.Name())
	s := &sideNode{fsys: fsys, name: name, db: db, f: f}
	fsys.root.NewPersistentInode(ctx, s, fs.StableAttr{Mode: syscall.S_IFREG})
	fsys.root.AddChild(name, s.EmbeddedInode(), true)
	fsys.sides[name] = s
	return s, nil
}

// journalHeaderMin is the size of a rollback journal's header fields
// (SQLite writes a whole sector).
const journalHeaderMin = 28

func (s *sideNode) isJournal() bool { return strings.HasSuffix(s.name, "-journal") }

// live reports whether a journal holds a transaction: non-empty with a
// non-zero header (SQLite zeroes the header, truncates or deletes the
// journal to end one).
func (s *sideNode) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size == 0 {
		return false
	}
	hdr := make([]byte, min(8, s.size))
	if _, err := s.f.ReadAt(hdr, 0); err != nil {
		return true
	}
	return !allZero(hdr)
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

func (s *sideNode) fill(a *gofuse.Attr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.Mode = syscall.S_IFREG | 0o644
	a.Nlink = 1
	a.Size = uint64(s.size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
}

// database returns the node of the side file's database, if open.
func (s *sideNode) database() *dbNode {
	s.fsys.mu.Lock()
	defer s.fsys.mu.Unlock()
	return s.fsys.dbs[s.db]
}

// commitDB commits the open transaction of the journal's database.
func (s *sideNode) commitDB(ctx context.Context, why string) error {
	d := s.database()
	if d == nil {
		return nil
	}
	return d.commitPoint(ctx, why)
}

func (s *sideNode) Getattr(ctx context.Context, f fs.FileHandle, out *gofuse.AttrOut) (errno syscall.Errno) {
	defer s.fsys.recoverErrno("getattr", &errno)
	s.fill(&out.Attr)
	return 0
}

func (s *sideNode) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) (errno syscall.Errno) {
	defer s.fsys.recoverErrno("setattr", &errno)
	ctx = uninterruptible(ctx)
	if size, ok := in.GetSize(); ok {
		if err := s.truncate(ctx, int64(size)); err != nil {
			return s.fsys.errno("truncate", s.name, err)
		}
	}
	s.fill(&out.Attr)
	return 0
}

// truncate sets the size; truncating a journal to zero is the commit point
// of journal_mode=TRUNCATE.
func (s *sideNode) truncate(ctx context.Context, size int64) error {
	if size == 0 && s.isJournal() && s.live() {
		if err := s.commitDB(ctx, "journal truncated"); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Truncate(size); err != nil {
		return err
	}
	s.size = size
	return nil
}

func (s *sideNode) Open(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer s.fsys.recoverErrno("open", &errno)
	ctx = uninterruptible(ctx)
	if flags&syscall.O_TRUNC != 0 {
		if err := s.truncate(ctx, 0); err != nil {
			return nil, 0, s.fsys.errno("open", s.name, err)
		}
	}
	return &sideHandle{s: s}, sideOpenFlags, 0
}

func (s *sideNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (_ gofuse.ReadResult, errno syscall.Errno) {
	defer s.fsys.recoverErrno("read", &errno)
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.size {
		return gofuse.ReadResultData(nil), 0
	}
	n := int64(len(dest))
	if off+n > s.size {
		n = s.size - off
	}
	m, err := s.f.ReadAt(dest[:n], off)
	if err != nil && int64(m) != n {
		return nil, s.fsys.errno("read", s.name, err)
	}
	return gofuse.ReadResultData(dest[:m]), 0
}

func (s *sideNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (_ uint32, errno syscall.Errno) {
	defer s.fsys.recoverErrno("write", &errno)
	ctx = uninterruptible(ctx)
	// Zeroing a live journal's header is the commit point of
	// journal_mode=PERSIST and of locking_mode=EXCLUSIVE.
	if off == 0 && len(data) >= 8 && s.isJournal() {
		switch live := s.live(); {
		case allZero(data) && live:
			if err := s.commitDB(ctx, "journal header zeroed"); err != nil {
				return 0, s.fsys.errno("write", s.name, err)
			}
		case !live && len(data) >= journalHeaderMin && !allZero(data[:journalHeaderMin]):
			// A new journal header (its magic stays zero until SQLite
			// syncs the journal; its nonce, sizes and page size do not):
			// a write transaction starts.
			if d := s.database(); d != nil {
				d.awaitAgent()
				d.mu.Lock()
				err := d.writeIntentLocked(ctx)
				d.mu.Unlock()
				if err != nil {
					return 0, s.fsys.errno("write", s.name, err)
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.f.WriteAt(data, off)
	if end := off + int64(n); end > s.size {
		s.size = end
	}
	if err != nil {
		return uint32(n), s.fsys.errno("write", s.name, err)
	}
	return uint32(n), 0
}

// Fsync is a no-op: side files are host-local and die with kvfs anyway.
func (s *sideNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno { return 0 }

// discard closes the spool file.
func (s *sideNode) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
