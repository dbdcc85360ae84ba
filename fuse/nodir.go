package fuse

import (
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendirFS answers OPENDIR with ENOSYS, after which the kernel sends no
// OPENDIR or RELEASEDIR at all (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1): SQLite
// opens the directory to fsync it each time it creates a DELETE-mode
// journal, and those two requests were a tenth of an autocommit
// transaction's. READDIR then arrives without a handle; each is served
// from a directory handle opened and released for it, positioned at the
// request's offset. Its names come from the directory's listing
// (dirNode.entries), so the many READDIRs of one listing cost one etcd
// range read. (Keeping that handle open across requests instead puts
// go-fuse's handle table out of step with the kernel: the kernel may
// forget the directory while the handle lives.)
type noOpendirFS struct {
	gofuse.RawFileSystem
}

func (n noOpendirFS) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	return gofuse.ENOSYS
}

func (n noOpendirFS) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return n.withHandle(cancel, in, func(in *gofuse.ReadIn) gofuse.Status {
		return n.RawFileSystem.ReadDir(cancel, in, out)
	})
}

func (n noOpendirFS) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return n.withHandle(cancel, in, func(in *gofuse.ReadIn) gofuse.Status {
		return n.RawFileSystem.ReadDirPlus(cancel, in, out)
	})
}

// withHandle runs read with a directory handle of the wrapped file system
// when the kernel sent none (it stopped opening directories).
func (n noOpendirFS) withHandle(cancel <-chan struct{}, in *gofuse.ReadIn, read func(*gofuse.ReadIn) gofuse.Status) gofuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	open := gofuse.OpenIn{InHeader: in.InHeader, Flags: in.Flags}
	var opened gofuse.OpenOut
	if st := n.RawFileSystem.OpenDir(cancel, &open, &opened); !st.Ok() {
		return st
	}
	defer n.RawFileSystem.ReleaseDir(&gofuse.ReleaseIn{InHeader: in.InHeader, Fh: opened.Fh})
	withFh := *in
	withFh.Fh = opened.Fh
	return read(&withFh)
}
