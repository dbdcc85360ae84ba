package fuse

import (
	"sync"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendirFS answers OPENDIR with ENOSYS, after which the kernel sends no
// OPENDIR or RELEASEDIR at all (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1): SQLite
// opens the directory to fsync it each time it creates a DELETE-mode
// journal, and those two requests were a tenth of an autocommit
// transaction's. READDIR then arrives without a handle. The one at offset
// 0 opens a directory handle of the wrapped file system (one etcd range
// read of the directory's names) and keeps it as the directory's listing;
// the READDIRs that continue it (offset > 0) read on from that handle, so
// a directory of 10,000 names is listed with one range read, not one per
// request. A listing is released by the directory's next one, or once
// unused for listingTTL.
type noOpendirFS struct {
	gofuse.RawFileSystem

	ttl      time.Duration // listingTTL; tests shorten it
	mu       sync.Mutex
	listings map[uint64]*listing // by directory node id
}

// listing is the directory handle of a directory's latest listing.
type listing struct {
	id      uint64 // the directory's node id
	fh      uint64
	used    time.Time
	readers int  // READDIRs reading from it now
	stale   bool // replaced or expired: released when readers reach 0
}

// listingTTL is how long an unused listing is kept for a continuing
// READDIR; one that comes later lists the directory again.
const listingTTL = 10 * time.Second

func newNoOpendirFS(raw gofuse.RawFileSystem) *noOpendirFS {
	return &noOpendirFS{RawFileSystem: raw, ttl: listingTTL, listings: map[uint64]*listing{}}
}

func (n *noOpendirFS) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	return gofuse.ENOSYS
}

func (n *noOpendirFS) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return n.withHandle(cancel, in, func(in *gofuse.ReadIn) gofuse.Status {
		return n.RawFileSystem.ReadDir(cancel, in, out)
	})
}

func (n *noOpendirFS) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return n.withHandle(cancel, in, func(in *gofuse.ReadIn) gofuse.Status {
		return n.RawFileSystem.ReadDirPlus(cancel, in, out)
	})
}

// withHandle runs read with a directory handle of the wrapped file system
// when the kernel sent none (it stopped opening directories): the
// directory's listing when the read continues one, else a new one.
func (n *noOpendirFS) withHandle(cancel <-chan struct{}, in *gofuse.ReadIn, read func(*gofuse.ReadIn) gofuse.Status) gofuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	now := time.Now()
	n.mu.Lock()
	var done []*listing
	for _, l := range n.listings {
		if l.readers == 0 && now.Sub(l.used) > n.ttl {
			delete(n.listings, l.id)
			done = append(done, l)
		}
	}
	l := n.listings[in.NodeId]
	if l == nil || in.Offset == 0 {
		l = nil
	} else {
		l.readers++
		l.used = now
	}
	n.mu.Unlock()
	n.release(in.InHeader, done)

	if l == nil {
		open := gofuse.OpenIn{InHeader: in.InHeader, Flags: in.Flags}
		var opened gofuse.OpenOut
		if st := n.RawFileSystem.OpenDir(cancel, &open, &opened); !st.Ok() {
			return st
		}
		l = &listing{id: in.NodeId, fh: opened.Fh, used: now, readers: 1}
		var replaced []*listing // not done: its listings are released already
		n.mu.Lock()
		if old := n.listings[in.NodeId]; old != nil {
			old.stale = true
			if old.readers == 0 {
				replaced = append(replaced, old)
			}
		}
		n.listings[in.NodeId] = l
		n.mu.Unlock()
		n.release(in.InHeader, replaced)
	}
	withFh := *in
	withFh.Fh = l.fh
	st := read(&withFh)
	n.mu.Lock()
	l.readers--
	last := l.stale && l.readers == 0
	n.mu.Unlock()
	if last {
		n.release(in.InHeader, []*listing{l})
	}
	return st
}

// release releases the handles of listings no READDIR uses any more.
func (n *noOpendirFS) release(h gofuse.InHeader, ls []*listing) {
	for _, l := range ls {
		h.NodeId = l.id
		n.RawFileSystem.ReleaseDir(&gofuse.ReleaseIn{InHeader: h, Fh: l.fh})
	}
}
