package fuse

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/pager"
)

// Permissions and ownership (see doc.go, "Permissions"): a database's mode
// and owner are stored in etcd (pager.Attrs) and shown to the kernel, which
// enforces them (the mount's default_permissions). The root directory's
// are stored too; side files keep theirs on the host, as SQLite sets them
// from their database's.

// fileModeBits are the mode bits a file keeps: kvfs clears set-user-ID and
// set-group-ID (a database is never executed, and the mount tells the
// kernel it kills those bits itself: CAP_HANDLE_KILLPRIV_V2).
const fileModeBits = 0o1777

// creator returns the attributes of a file the calling process creates
// with mode: its uid and gid, and mode as the kernel passes it (the umask
// already applied).
func creator(ctx context.Context, mode uint32) pager.Attrs {
	a := pager.Attrs{Mode: mode & fileModeBits}
	if c, ok := gofuse.FromContext(ctx); ok {
		a.UID, a.GID = c.Uid, c.Gid
	}
	return a
}

// applySetattr returns a changed by the mode, uid and gid of in, and
// whether in changes any of them.
func applySetattr(a pager.Attrs, in *gofuse.SetAttrIn, modeBits uint32) (pager.Attrs, bool) {
	changed := false
	if m, ok := in.GetMode(); ok {
		a.Mode, changed = m&modeBits, true
	}
	if uid, ok := in.GetUID(); ok {
		a.UID, changed = uid, true
	}
	if gid, ok := in.GetGID(); ok {
		a.GID, changed = gid, true
	}
	return a, changed
}

// fillAttrs reports a in out: mode (with the file type typ), owner, and ctime
// when the attributes changed after the commit that set mtime.
func fillAttrs(out *gofuse.Attr, typ uint32, a pager.Attrs) {
	out.Mode = typ | a.Mode
	out.Uid, out.Gid = a.UID, a.GID
	if ctime := int64(out.Ctime)*1000 + int64(out.Ctimensec/1e6); a.Changed > ctime {
		out.Ctime, out.Ctimensec = uint64(a.Changed/1000), uint32(a.Changed%1000)*1e6
	}
}

// dirAttrs caches a directory's attributes, read from etcd at most once
// per AttrTimeout (the kernel caches them that long too).
type dirAttrs struct {
	mu   sync.Mutex
	a    pager.Attrs
	read time.Time
}

// get returns directory id's attributes, refreshed when older than maxAge;
// when etcd cannot answer, the last known ones (an error only when none
// is known).
func (c *dirAttrs) get(ctx context.Context, fsys *FS, id string, maxAge time.Duration) (pager.Attrs, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read.IsZero() || time.Since(c.read) > maxAge {
		actx, cancel := ctx, func() {}
		if !c.read.IsZero() {
			actx, cancel = fsys.metaCtx(ctx)
		}
		a, err := fsys.opts.Pager.DirAttrs(actx, id)
		cancel()
		fsys.noteMeta(err)
		if err != nil && c.read.IsZero() {
			return pager.Attrs{}, err
		}
		if err == nil {
			c.a, c.read = a, time.Now()
		}
	}
	return c.a, nil
}

// cached returns the attributes last read, without asking etcd.
func (c *dirAttrs) cached() pager.Attrs {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.a
}

func (c *dirAttrs) set(a pager.Attrs) {
	c.mu.Lock()
	c.a, c.read = a, time.Now()
	c.mu.Unlock()
}

func (n *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *gofuse.AttrOut) (errno syscall.Errno) {
	defer n.fsys.recoverErrno("getattr", &errno)
	ctx = uninterruptible(ctx)
	a, err := n.attrs.get(ctx, n.fsys, n.id, n.fsys.opts.AttrTimeout)
	if err != nil {
		return n.fsys.errno("getattr", n.id, err)
	}
	fillDirAttrs(&out.Attr, a)
	return 0
}

// fillDirAttrs reports a directory's attributes. Its times are those of
// its creation or last chmod/chown (kvfs does not store a directory's
// mtime at each name change). Nlink is 1, as on btrfs: "unknown", so that
// fts(3) and find stat every entry instead of counting subdirectories from
// it (with 2, `rm -r` and Tcl's `file delete -force` took a subdirectory
// for a file).
func fillDirAttrs(out *gofuse.Attr, a pager.Attrs) {
	fillAttrs(out, syscall.S_IFDIR, a)
	out.Nlink = 1
	if a.Changed > 0 {
		t := time.UnixMilli(a.Changed)
		out.SetTimes(&t, &t, &t)
	}
}

// Setattr of a directory stores its mode and owner (chmod 1777 of the root
// lets every user create databases in it, as in /tmp).
func (n *dirNode) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) (errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("setattr", &errno)
	ctx = uninterruptible(ctx)
	cur, err := n.attrs.get(ctx, fsys, n.id, fsys.opts.AttrTimeout)
	if err != nil {
		return fsys.errno("setattr", n.id, err)
	}
	if a, changed := applySetattr(cur, in, 0o7777); changed {
		if fsys.opts.ReadOnly {
			return syscall.EROFS
		}
		stored, err := fsys.opts.Pager.SetDirAttrs(ctx, n.id, a)
		if err != nil {
			return fsys.errno("setattr", n.id, err)
		}
		n.attrs.set(stored)
	}
	return n.Getattr(ctx, f, out)
}
