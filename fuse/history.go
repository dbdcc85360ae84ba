package fuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/pager"
)

// Time-travel files (see doc.go, "History"): NAME@TXID and NAME@TIME (RFC
// 3339) name a past version of database NAME, read-only. They are looked
// up, never listed; a real file of that name wins.

// splitVersion splits a time-travel name at its last '@'.
func splitVersion(name string) (base, spec string, ok bool) {
	i := strings.LastIndexByte(name, '@')
	if i <= 0 {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}

// historyNode is one past version of a database: a pager.Snapshot read
// as a file, read-only. Its header's file-format bytes read as rollback
// (1): a version of a WAL-mode database is whole in etcd, and a reader
// that cannot create a -shm (there is none for an old version) could
// not open it in WAL mode.
type historyNode struct {
	fs.Inode
	fsys *FS
	key  string // in FS.versions
	name string // as looked up, for logs
	snap *pager.Snapshot
}

var (
	_ fs.NodeGetattrer   = (*historyNode)(nil)
	_ fs.NodeSetattrer   = (*historyNode)(nil)
	_ fs.NodeOpener      = (*historyNode)(nil)
	_ fs.NodeReader      = (*historyNode)(nil)
	_ fs.NodeWriter      = (*historyNode)(nil)
	_ fs.NodeFsyncer     = (*historyNode)(nil)
	_ fs.NodeGetlker     = (*historyNode)(nil)
	_ fs.NodeSetlker     = (*historyNode)(nil)
	_ fs.NodeSetlkwer    = (*historyNode)(nil)
	_ fs.NodeOnForgetter = (*historyNode)(nil)
)

// lookupVersion resolves name, not a name in directory n, as a
// time-travel name: ENOENT unless its base is a database here and its
// version is in the history (the log says why not).
func (n *dirNode) lookupVersion(ctx context.Context, name string) (*historyNode, syscall.Errno) {
	fsys := n.fsys
	base, spec, ok := splitVersion(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	e, _, err := fsys.opts.Pager.Lookup(ctx, n.id, base)
	if errors.Is(err, pager.ErrNotFound) || (err == nil && e.Dir) {
		return nil, syscall.ENOENT
	} else if err != nil {
		return nil, fsys.errno("lookup", name, err)
	}
	v, err := pager.ParseVersion(spec)
	if err != nil {
		fsys.log.Info("time-travel name refused", "name", n.pathOf(name), "err", err)
		return nil, syscall.ENOENT
	}
	d, err := fsys.database(ctx, n, base, e.ID)
	if err != nil {
		return nil, fsys.errno("lookup", name, err)
	}
	snap, err := d.db.VersionOf(ctx, v)
	var verr *pager.VersionError
	if errors.As(err, &verr) {
		fsys.log.Info("time-travel name refused", "name", n.pathOf(name), "err", err)
		return nil, syscall.ENOENT
	} else if err != nil {
		return nil, fsys.errno("lookup", name, err)
	}
	key := fmt.Sprintf("%s@%d", e.ID, snap.Head().TXID)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if h := fsys.versions[key]; h != nil {
		snap.Close()
		return h, 0
	}
	h := &historyNode{fsys: fsys, key: key, name: n.pathOf(name), snap: snap}
	n.NewInode(ctx, h, fs.StableAttr{Mode: syscall.S_IFREG})
	fsys.versions[key] = h
	return h, 0
}

// refuseVersionCreate returns the errno of creating name in n when name
// is reserved for time-travel files: a database of n followed by '@' and
// a digit (or its side file). A version (app.db@12) is read-only (EROFS);
// a malformed one (app.db@2026-12-01T10:00, no zone) is refused (EINVAL,
// the log says why) rather than made a new, empty database. 0 otherwise.
func (n *dirNode) refuseVersionCreate(ctx context.Context, name string) syscall.Errno {
	if db, ok := isSide(name); ok {
		name = db
	}
	base, spec, ok := splitVersion(name)
	if !ok || spec == "" || spec[0] < '0' || spec[0] > '9' {
		return 0
	}
	if e, _, err := n.fsys.opts.Pager.Lookup(ctx, n.id, base); err != nil || e.Dir {
		return 0
	}
	if _, err := pager.ParseVersion(spec); err != nil {
		n.fsys.log.Info("time-travel name refused", "name", n.pathOf(name), "err", err)
		return syscall.EINVAL
	}
	return syscall.EROFS
}

func (h *historyNode) OnForget() {
	h.fsys.mu.Lock()
	if h.fsys.versions[h.key] == h {
		delete(h.fsys.versions, h.key)
	}
	h.fsys.mu.Unlock()
	h.snap.Close()
}

func (h *historyNode) fill(a *gofuse.Attr) {
	head := h.snap.Head()
	a.Nlink = 1
	a.Size = uint64(h.snap.Size())
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
	secs, nsecs := uint64(head.Timestamp/1000), uint32(head.Timestamp%1000)*1e6
	a.Mtime, a.Mtimensec = secs, nsecs
	a.Ctime, a.Ctimensec = secs, nsecs
	a.Atime, a.Atimensec = secs, nsecs
	a.Mode = syscall.S_IFREG | 0o444
}

func (h *historyNode) Getattr(ctx context.Context, f fs.FileHandle, out *gofuse.AttrOut) syscall.Errno {
	h.fill(&out.Attr)
	return 0
}

func (h *historyNode) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (h *historyNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	// The content never changes: the kernel may keep its pages.
	return nil, gofuse.FOPEN_KEEP_CACHE, 0
}

func (h *historyNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (_ gofuse.ReadResult, errno syscall.Errno) {
	defer h.fsys.recoverErrno("read", &errno)
	ctx = uninterruptible(ctx)
	n, err := h.snap.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, h.fsys.errno("read", h.name, err)
	}
	// The file-format bytes 18 and 19: WAL (2) reads as rollback (1).
	head := h.snap.Head()
	for _, at := range []int64{18, 19} {
		if !head.Plain && off <= at && at < off+int64(n) && dest[at-off] == 2 {
			dest[at-off] = 1
		}
	}
	return gofuse.ReadResultData(dest[:n]), 0
}

func (h *historyNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (h *historyNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

// With Options.ForwardLocks the kernel sends locks here: nothing writes a
// past version, so every lock is granted (a write lock needs a descriptor
// open for writing, which the kernel refuses itself).
func (h *historyNode) Getlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32, out *gofuse.FileLock) syscall.Errno {
	*out = *lk
	out.Typ = syscall.F_UNLCK
	return 0
}

func (h *historyNode) Setlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) syscall.Errno {
	return 0
}

func (h *historyNode) Setlkw(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) syscall.Errno {
	return 0
}
