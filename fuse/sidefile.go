package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/pager"
)

// sideNode is a file SQLite keeps beside a database (-journal, -wal, -shm,
// super-journals). It lives on this host only, in an unlinked spool file:
// if kvfs dies the journal goes with the uncommitted transaction, which is
// exactly a rollback. Invalidating a -journal is its database's commit
// point.
type sideNode struct {
	fs.Inode
	fsys  *FS
	dir   *dirNode
	names atomic.Pointer[sideName] // a journal renamed changes them (renameJournal)

	mu        sync.Mutex
	f         *os.File    // the spool file or memfd; with passthrough the kernel writes it directly
	inMemory  bool        // f is a memfd (see Options.JournalMemMax)
	handles   int         // open handles: while any is open the kernel holds f
	intentErr error       // why the journal's transaction cannot commit (etcd down), if known at its open
	wal       *walLog     // for a -wal: the transactions in it (see writeWAL)
	attrs     pager.Attrs // mode and owner, kept on this host like the file
}

var (
	_ fs.NodeGetattrer = (*sideNode)(nil)
	_ fs.NodeSetattrer = (*sideNode)(nil)
	_ fs.NodeOpener    = (*sideNode)(nil)
	_ fs.NodeReader    = (*sideNode)(nil)
	_ fs.NodeWriter    = (*sideNode)(nil)
	_ fs.NodeFsyncer   = (*sideNode)(nil)
)

// sideName is a side file's name and the name of the database it belongs
// to, in its directory.
type sideName struct{ name, db string }

func (s *sideNode) name() string   { return s.names.Load().name }
func (s *sideNode) dbName() string { return s.names.Load().db }

// sideHandle is an open side file. copier marks a handle SQLite never opens:
// write-only or truncating (cp, a script's open "w"); what it writes in a
// -wal is not SQLite's log being written (see writeWAL).
type sideHandle struct {
	s      *sideNode
	copier bool
}

var (
	_ fs.FilePassthroughFder = (*sideHandle)(nil)
	_ fs.FileReleaser        = (*sideHandle)(nil)
)

// PassthroughFd hands a journal's spool file to the kernel (FUSE
// passthrough): SQLite's journal reads and writes then go to it directly,
// without a request each — seven or more per autocommit transaction. kvfs
// still sees the journal's creation, truncation, fsyncs, closes and
// deletion, which is where it looks for commit points (see Fsync). Where
// passthrough is unavailable (not root, kernel before 6.9) go-fuse falls
// back to ordinary requests and Write sees every write.
func (h *sideHandle) PassthroughFd() (int, bool) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.passThrough() || s.f == nil {
		return 0, false
	}
	return int(s.f.Fd()), true
}

// Release of a journal whose header is zeroed ends a transaction of
// journal_mode=PERSIST with synchronous=OFF (no fsync follows the zeroing):
// SQLite closes the journal before it unlocks the database.
func (h *sideHandle) Release(ctx context.Context) (errno syscall.Errno) {
	s := h.s
	defer s.fsys.recoverErrno("release", &errno)
	s.mu.Lock()
	s.handles--
	s.mu.Unlock()
	if s.isJournal() {
		if err := s.commitIfZeroed(uninterruptible(ctx), "journal closed"); err != nil {
			s.fsys.log.Warn("commit at journal close", "db", s.dbName(), "err", err)
		}
	}
	return 0
}

// sideOpenFlags: side files are not cached by the kernel, and closing one
// needs no FLUSH (nothing is buffered; the journal's commit points are its
// truncation, header zeroing and deletion). Journals leave out direct I/O,
// which would override passthrough.
const (
	sideOpenFlags    = gofuse.FOPEN_DIRECT_IO | gofuse.FOPEN_NOFLUSH
	journalOpenFlags = gofuse.FOPEN_NOFLUSH
)

func (s *sideNode) openFlags() uint32 {
	switch {
	case s.passThrough():
		return journalOpenFlags
	case s.isSHM():
		// Without passthrough SQLite maps the -shm through the kernel's
		// page cache (direct I/O would forbid the shared mapping); the
		// processes of this host share those pages.
		return gofuse.FOPEN_KEEP_CACHE | gofuse.FOPEN_NOFLUSH
	}
	return sideOpenFlags
}

// passThrough reports whether the kernel is offered the file's spool file:
// journals (kvfs needs to see only their opens, truncations, fsyncs and
// deletion) and -shm files (SQLite maps them; kvfs never looks inside).
// A -wal goes through kvfs: its frames are where WAL transactions commit.
func (s *sideNode) passThrough() bool {
	return (s.isJournal() || s.isSHM()) && !s.fsys.opts.NoPassthrough
}

// createSide returns side file name of directory dir, created with
// attributes a if new.
func (fsys *FS) createSide(ctx context.Context, dir *dirNode, name string, a pager.Attrs) (*sideNode, error) {
	db, _ := isSide(name)
	mem := strings.HasSuffix(name, "-journal") && fsys.journalInMemory(dir, db) ||
		strings.HasSuffix(name, "-shm") && !fsys.opts.NoPassthrough
	key := sideKey(dir.id, name)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if s := fsys.sides[key]; s != nil {
		return s, nil
	}
	f, err := fsys.newSideFile(mem)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	a.Changed = time.Now().UnixMilli()
	s := &sideNode{fsys: fsys, dir: dir, f: f, inMemory: mem, attrs: a}
	s.names.Store(&sideName{name: name, db: db})
	if s.isWAL() {
		s.wal = &walLog{}
	}
	dir.NewPersistentInode(ctx, s, fs.StableAttr{Mode: syscall.S_IFREG})
	dir.AddChild(name, s.EmbeddedInode(), true)
	fsys.sides[key] = s
	return s, nil
}

// path returns the side file's path in the mount.
func (s *sideNode) path() string { return s.dir.pathOf(s.name()) }

// newSideFile returns an empty file for a side file's contents: a memfd
// (mem), else an unlinked file in the spool directory. Either dies with
// kvfs, which is a rollback of the transaction a journal belonged to.
func (fsys *FS) newSideFile(mem bool) (*os.File, error) {
	if mem {
		fd, err := unix.MemfdCreate("kvfs-journal", unix.MFD_CLOEXEC)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), "memfd:kvfs-journal"), nil
	}
	f, err := os.CreateTemp(fsys.opts.SpoolDir, "kvfs-side-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// journalInMemory reports whether the journal of database db of dir
// belongs in memory now: with passthrough, while the database is no larger
// than JournalMemMax.
func (fsys *FS) journalInMemory(dir *dirNode, db string) bool {
	if fsys.opts.NoPassthrough || fsys.opts.JournalMemMax < 0 {
		return false
	}
	fsys.mu.Lock()
	d := fsys.byName[sideKey(dir.id, db)]
	fsys.mu.Unlock()
	return d != nil && d.size() <= fsys.opts.JournalMemMax
}

// handle returns a new handle of the side file. A journal kept in memory
// whose database has outgrown JournalMemMax moves to the spool directory
// first, when no other handle is open (the kernel holds the file it was
// given while one is): PERSIST and TRUNCATE journals outlive transactions.
func (s *sideNode) handle(flags uint32) (*sideHandle, error) {
	move := s.isJournal() && s.inMemory && !s.fsys.journalInMemory(s.dir, s.dbName()) // a -shm is mapped: it stays
	s.mu.Lock()
	defer s.mu.Unlock()
	if move && s.handles == 0 && s.f != nil {
		// A journal that cannot move (the spool is full) stays in memory
		// rather than failing the open: SQLite could not even read then.
		f, err := s.fsys.newSideFile(false)
		if err == nil {
			if _, err = io.Copy(f, io.NewSectionReader(s.f, 0, s.sizeLocked())); err != nil {
				f.Close()
			}
		}
		if err != nil {
			s.fsys.log.Warn("journal stays in memory: cannot move it to the spool", "db", s.dbName(), "err", err)
		} else {
			s.f.Close()
			s.f, s.inMemory = f, false
			s.fsys.log.Debug("journal moved out of memory", "db", s.dbName())
		}
	}
	s.handles++
	copier := flags&syscall.O_ACCMODE == syscall.O_WRONLY || flags&syscall.O_TRUNC != 0
	return &sideHandle{s: s, copier: copier}, nil
}

// journalHeaderMin is the size of a rollback journal's header fields
// (SQLite writes a whole sector).
const journalHeaderMin = 28

func (s *sideNode) isJournal() bool { return strings.HasSuffix(s.name(), "-journal") }

func (s *sideNode) isWAL() bool { return strings.HasSuffix(s.name(), "-wal") }

func (s *sideNode) isSHM() bool { return strings.HasSuffix(s.name(), "-shm") }

// live reports whether a journal holds a transaction: non-empty with a
// non-zero header (SQLite zeroes the header, truncates or deletes the
// journal to end one).
func (s *sideNode) live() bool {
	hdr, _ := s.header()
	return len(hdr) > 0 && !allZero(hdr[:min(8, len(hdr))])
}

// zeroed reports whether a journal's header is all zeros: SQLite ended its
// transaction by zeroing it (journal_mode=PERSIST, locking_mode=EXCLUSIVE).
// A header being written is never all zeros: its nonce, sizes and page
// size are set from the first write on, its magic only at the first sync.
func (s *sideNode) zeroed() bool {
	hdr, _ := s.header()
	return len(hdr) == journalHeaderMin && allZero(hdr)
}

// nonce returns a journal header's random checksum seed, which SQLite
// draws anew for every transaction; 0 when there is none.
func (s *sideNode) nonce() uint32 {
	hdr, _ := s.header()
	if len(hdr) < journalHeaderMin {
		return 0
	}
	return binary.BigEndian.Uint32(hdr[12:])
}

// header reads up to journalHeaderMin bytes from the start of the file.
func (s *sideNode) header() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, os.ErrClosed
	}
	hdr := make([]byte, journalHeaderMin)
	n, err := s.f.ReadAt(hdr, 0)
	if err == io.EOF {
		err = nil
	}
	return hdr[:n], err
}

// sizeLocked is the spool file's size; the kernel may have written it.
func (s *sideNode) sizeLocked() int64 {
	size, _ := s.statLocked()
	return size
}

// statLocked returns the size and modification time of the side file's
// backing file (zero without one).
func (s *sideNode) statLocked() (int64, time.Time) {
	if s.f == nil {
		return 0, time.Time{}
	}
	fi, err := s.f.Stat()
	if err != nil {
		return 0, time.Time{}
	}
	return fi.Size(), fi.ModTime()
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

func (s *sideNode) fill(a *gofuse.Attr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fillAttrs(a, syscall.S_IFREG, s.attrs)
	a.Nlink = 1
	size, mtime := s.statLocked()
	a.Size = uint64(size)
	if !mtime.IsZero() {
		// The host's own file: its times are this host's writes.
		a.SetTimes(&mtime, &mtime, &mtime)
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
}

// database returns the node of the side file's database, if open.
func (s *sideNode) database() *dbNode {
	s.fsys.mu.Lock()
	defer s.fsys.mu.Unlock()
	return s.fsys.byName[sideKey(s.dir.id, s.dbName())]
}

// commitDB commits the open transaction of the journal's database.
func (s *sideNode) commitDB(ctx context.Context, why string) error {
	d := s.database()
	if d == nil {
		return nil
	}
	return d.commitPoint(ctx, why)
}

// commitIfZeroed commits the database's open transaction if the journal's
// header is zeroed. It looks under the database's lock: a later
// transaction's first database write (which needs that lock) comes after
// its new header, so what it finds zeroed ends the transaction it commits.
func (s *sideNode) commitIfZeroed(ctx context.Context, why string) error {
	d := s.database()
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tx == nil || !s.zeroed() {
		return nil
	}
	defer d.transactionEndedLocked()
	return d.commitLocked(ctx, why)
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
			return s.fsys.errno("truncate", s.name(), err)
		}
	}
	s.mu.Lock()
	if a, changed := applySetattr(s.attrs, in, fileModeBits); changed {
		a.Changed = time.Now().UnixMilli()
		s.attrs = a
	}
	s.mu.Unlock()
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
	if s.isWAL() {
		return s.truncateWAL(ctx, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	return s.f.Truncate(size)
}

func (s *sideNode) Open(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer s.fsys.recoverErrno("open", &errno)
	ctx = uninterruptible(ctx)
	if flags&syscall.O_TRUNC != 0 {
		if err := s.truncate(ctx, 0); err != nil {
			return nil, 0, s.fsys.errno("open", s.name(), err)
		}
	}
	s.opened(ctx, flags)
	h, err := s.handle(flags)
	if err != nil {
		return nil, 0, s.fsys.errno("open", s.name(), err)
	}
	return h, s.openFlags(), 0
}

// opened notes a write transaction starting: SQLite opens (or creates) a
// database's journal for writing when a write transaction first changes a
// page, under its RESERVED lock. A live journal opened for writing is a
// hot journal being rolled back instead. If the transaction cannot commit
// for a reason other than another host's lease (etcd is down), the open
// still succeeds — SQLite would report "unable to open database file" —
// and the journal's first fsync fails instead: "disk I/O error", before
// any page of the database is written.
func (s *sideNode) opened(ctx context.Context, flags uint32) {
	if !s.isJournal() || flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0 || s.live() {
		return
	}
	d := s.database()
	if d == nil {
		return
	}
	d.awaitAgent()
	d.mu.Lock()
	err := d.writeIntentLocked(ctx)
	d.mu.Unlock()
	if err != nil {
		s.fsys.log.Debug("journal opened for a transaction that cannot commit", "db", s.dbName(), "err", err)
	}
	s.mu.Lock()
	s.intentErr = err
	s.mu.Unlock()
}

func (s *sideNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (_ gofuse.ReadResult, errno syscall.Errno) {
	defer s.fsys.recoverErrno("read", &errno)
	if s.isWAL() && off == 0 && len(dest) == walHeaderSize {
		if err := s.recoverWAL(uninterruptible(ctx)); err != nil {
			return nil, s.fsys.errno("WAL recovery", s.name(), err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, syscall.EBADF
	}
	m, err := s.f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, s.fsys.errno("read", s.name(), err)
	}
	return gofuse.ReadResultData(dest[:m]), 0
}

// Write serves side files the kernel does not pass through (and journals
// where passthrough is unavailable).
func (s *sideNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (_ uint32, errno syscall.Errno) {
	defer s.fsys.recoverErrno("write", &errno)
	ctx = uninterruptible(ctx)
	if s.isWAL() {
		h, _ := f.(*sideHandle)
		n, err := s.writeWAL(ctx, data, off, h != nil && !h.copier)
		if err != nil {
			return uint32(n), s.fsys.errno("write", s.name(), err)
		}
		return uint32(n), 0
	}
	// Zeroing a live journal's header is the commit point of
	// journal_mode=PERSIST and of locking_mode=EXCLUSIVE.
	if off == 0 && len(data) >= journalHeaderMin && s.isJournal() && allZero(data) && s.live() {
		if err := s.commitDB(ctx, "journal header zeroed"); err != nil {
			return 0, s.fsys.errno("write", s.name(), err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, syscall.EBADF
	}
	n, err := s.f.WriteAt(data, off)
	if err != nil {
		return uint32(n), s.fsys.errno("write", s.name(), err)
	}
	return uint32(n), 0
}

// Fsync of a journal whose header is zeroed is the commit point of
// journal_mode=PERSIST and of locking_mode=EXCLUSIVE: SQLite syncs the
// journal right after zeroing its header (unless synchronous=OFF; then the
// journal's close, or the next transaction's first database write, ends
// the transaction). Side files themselves are host-local and die with kvfs
// anyway: nothing is synced.
func (s *sideNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) (errno syscall.Errno) {
	defer s.fsys.recoverErrno("fsync", &errno)
	s.mu.Lock()
	intentErr := s.intentErr
	s.mu.Unlock()
	if intentErr != nil && s.live() {
		return s.fsys.errno("fsync", s.name(), intentErr)
	}
	if s.isWAL() {
		s.mu.Lock()
		pending := s.wal.pending
		s.mu.Unlock()
		if pending {
			return s.fsys.errno("fsync", s.name(), errWALChain)
		}
	}
	if s.isJournal() {
		if err := s.commitIfZeroed(uninterruptible(ctx), "journal header zeroed"); err != nil {
			return s.fsys.errno("fsync", s.name(), err)
		}
	}
	return 0
}

// obsolete zeroes a live journal's header: its transaction will never
// commit, and the database no longer reads as the state it would restore.
func (s *sideNode) obsolete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.WriteAt(make([]byte, journalHeaderMin), 0)
	}
}

// discard closes the spool file.
func (s *sideNode) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
