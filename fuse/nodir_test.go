package fuse

import (
	"sync"
	"testing"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// handleFS is a RawFileSystem that hands out directory handles and fails
// the test on a release of a handle that is not open. Its ReadDir of
// handle blockFh says so on entered and waits for block to close.
type handleFS struct {
	gofuse.RawFileSystem
	t       *testing.T
	mu      sync.Mutex
	next    uint64
	open    map[uint64]bool
	blockFh uint64
	entered chan struct{}
	block   chan struct{}
}

func (f *handleFS) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.open[f.next] = true
	out.Fh = f.next
	return gofuse.OK
}

func (f *handleFS) ReleaseDir(in *gofuse.ReleaseIn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open[in.Fh] {
		f.t.Errorf("release of directory handle %d, which is not open", in.Fh)
	}
	delete(f.open, in.Fh)
}

func (f *handleFS) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	f.mu.Lock()
	ok := f.open[in.Fh]
	blocks := in.Fh == f.blockFh
	f.mu.Unlock()
	if !ok {
		f.t.Errorf("read of directory handle %d, which is not open", in.Fh)
	}
	if blocks {
		close(f.entered)
		<-f.block
	}
	return gofuse.OK
}

func (f *handleFS) opened() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// TestListingHandles: READDIRs that continue a listing read from the handle
// its first READDIR opened; a new listing of the directory replaces it; an
// unused one expires; and no handle is released twice or read after its
// release, also while another READDIR still reads the replaced listing.
func TestListingHandles(t *testing.T) {
	raw := &handleFS{RawFileSystem: gofuse.NewDefaultRawFileSystem(), t: t, open: map[uint64]bool{}}
	n := newNoOpendirFS(raw)
	n.ttl = 20 * time.Millisecond
	readdir := func(node, off uint64) {
		in := &gofuse.ReadIn{InHeader: gofuse.InHeader{NodeId: node}, Offset: off}
		if st := n.ReadDir(nil, in, gofuse.NewDirEntryList(make([]byte, 4096), off)); !st.Ok() {
			t.Fatalf("readdir of node %d at %d: %v", node, off, st)
		}
	}
	readdir(1, 0)
	readdir(1, 10)
	readdir(1, 20)
	if raw.next != 1 {
		t.Fatalf("one listing opened %d handles", raw.next)
	}
	readdir(2, 0) // another directory's listing
	readdir(1, 0) // a new listing of directory 1 replaces its first
	if raw.next != 3 || raw.opened() != 2 {
		t.Fatalf("after a new listing: %d handles opened, %d open; want 3 and 2", raw.next, raw.opened())
	}

	// Directory 1's listing (handle 3) is being read when directory 2's
	// (handle 2) expires and directory 1 is listed again.
	raw.mu.Lock()
	raw.blockFh, raw.entered, raw.block = 3, make(chan struct{}), make(chan struct{})
	raw.mu.Unlock()
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		readdir(1, 30)
	}()
	<-raw.entered
	time.Sleep(3 * n.ttl)
	readdir(1, 0)
	close(raw.block)
	<-reading
	if got := raw.opened(); got != 1 {
		t.Fatalf("%d handles open, want 1 (directory 1's latest listing)", got)
	}
	time.Sleep(3 * n.ttl)
	readdir(3, 0) // any READDIR releases expired listings
	if got := raw.opened(); got != 1 {
		t.Fatalf("%d handles open after the others expired, want 1", got)
	}
}
