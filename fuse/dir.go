package fuse

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// dirNode is a directory of the mount (see doc.go, "Directories"): its
// names are the pager's namespace (pager.Lookup, ReadDir), plus the side
// files SQLite keeps beside its databases on this host.
type dirNode struct {
	fs.Inode
	fsys  *FS
	id    string // pager.RootDir for the root
	attrs dirAttrs

	// The directory's names as last read from etcd, kept for listingTTL:
	// the kernel reads a listing in many READDIRs (each opens the
	// directory anew: see nodir.go), and one range read serves them all.
	// Any change of a name in the directory drops it (dropListing).
	listMu   sync.Mutex
	listing  []pager.DirEntry
	listedAt time.Time
}

// listingTTL bounds how long a directory's names are served from the
// listing (a change this host does not hear of shows after that).
const listingTTL = time.Second

// entries returns the directory's names: the listing, or a fresh one.
func (n *dirNode) entries(ctx context.Context) ([]pager.DirEntry, error) {
	n.listMu.Lock()
	defer n.listMu.Unlock()
	if n.listing != nil && time.Since(n.listedAt) < listingTTL {
		return n.listing, nil
	}
	ents, err := n.fsys.opts.Pager.ReadDir(ctx, n.id)
	if err != nil {
		return nil, err
	}
	if ents == nil {
		ents = []pager.DirEntry{}
	}
	n.listing, n.listedAt = ents, time.Now()
	return ents, nil
}

// dropListing forgets the directory's listing: a name in it changed.
func (n *dirNode) dropListing() {
	n.listMu.Lock()
	n.listing = nil
	n.listMu.Unlock()
}

// listingChanged drops the listing after an operation on the directory's
// names that succeeded (*errno 0), so that the next READDIR shows it.
func (n *dirNode) listingChanged(errno *syscall.Errno) {
	if *errno == 0 {
		n.dropListing()
	}
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)
)

// sideKey keys FS.sides and FS.byName: a name in directory dir (ids hold
// no '/').
func sideKey(dir, name string) string { return dir + "/" + name }

// pathOf returns the path, relative to the mount's root, of name in n.
func (n *dirNode) pathOf(name string) string {
	return path.Join(n.Path(nil), name)
}

// Fsync of a directory (SQLite syncs it after creating a journal) is
// meaningless here: ENOSYS makes the kernel answer later ones itself.
func (n *dirNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (_ *fs.Inode, errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("lookup", &errno)
	ctx = uninterruptible(ctx)
	if _, ok := isSide(name); ok {
		fsys.mu.Lock()
		s := fsys.sides[sideKey(n.id, name)]
		fsys.mu.Unlock()
		if s == nil {
			return nil, syscall.ENOENT
		}
		s.fill(&out.Attr)
		return s.EmbeddedInode(), 0
	}
	if etcdstore.ValidateName(name) != nil {
		return nil, syscall.ENOENT
	}
	lctx, cancel := ctx, func() {}
	if fsys.probing() && n.known(name) != nil {
		lctx, cancel = fsys.metaCtx(ctx)
	}
	e, _, err := fsys.opts.Pager.Lookup(lctx, n.id, name)
	cancel()
	fsys.noteMeta(err)
	if err != nil && !errors.Is(err, pager.ErrNotFound) {
		// etcd cannot answer: what this host has open there stays
		// reachable (its committed pages are cached; writes fail).
		if inode := n.known(name); inode != nil {
			fsys.log.Warn("lookup: etcd unreachable; the name as this host last knew it", "name", name, "err", err)
			if d, ok := inode.Operations().(*dbNode); ok {
				d.fill(&out.Attr)
			} else {
				fillDirAttrs(&out.Attr, inode.Operations().(*dirNode).attrs.cached())
			}
			return inode, 0
		}
	}
	if errors.Is(err, pager.ErrNotFound) && strings.Contains(name, "@") {
		h, errno := n.lookupVersion(ctx, name)
		if errno != 0 {
			return nil, errno
		}
		h.fill(&out.Attr)
		return h.EmbeddedInode(), 0
	}
	if err != nil {
		return nil, fsys.errno("lookup", name, err)
	}
	if e.Dir {
		child := n.dirChild(ctx, name, e.ID)
		a, err := child.attrs.get(ctx, fsys, child.id, fsys.opts.AttrTimeout)
		if err != nil {
			return nil, fsys.errno("lookup", name, err)
		}
		fillDirAttrs(&out.Attr, a)
		return child.EmbeddedInode(), 0
	}
	d, err := fsys.database(ctx, n, name, e.ID)
	if err != nil {
		return nil, fsys.errno("lookup", name, err)
	}
	d.fill(&out.Attr)
	return d.EmbeddedInode(), 0
}

// known returns the node this host has named name in n (a database it has
// open, or a directory it looked up), nil if none.
func (n *dirNode) known(name string) *fs.Inode {
	n.fsys.mu.Lock()
	d := n.fsys.byName[sideKey(n.id, name)]
	n.fsys.mu.Unlock()
	if d != nil && !d.gone() {
		return d.EmbeddedInode()
	}
	if c := n.GetChild(name); c != nil {
		if _, ok := c.Operations().(*dirNode); ok {
			return c
		}
	}
	return nil
}

// dirChild returns the node of directory id, named name in n.
func (n *dirNode) dirChild(ctx context.Context, name, id string) *dirNode {
	if c := n.GetChild(name); c != nil {
		if dn, ok := c.Operations().(*dirNode); ok && dn.id == id {
			return dn
		}
	}
	dn := &dirNode{fsys: n.fsys, id: id}
	n.NewInode(ctx, dn, fs.StableAttr{Mode: syscall.S_IFDIR})
	n.fsys.mu.Lock()
	n.fsys.dirs[id] = dn
	n.fsys.mu.Unlock()
	return dn
}

// nameChanged drops the kernel's cached entry of name in directory dir (if
// this host looked dir up) and its cached listing of dir: the name changed
// in etcd (pager.WatchNames). The kernel keeps a directory's listing
// across opens (it does for every directory of a file system without
// OPENDIR) until the directory's inode is invalidated; its own creates,
// unlinks and renames through this mount update it.
//
// A change this host made through the mount is passed over: the kernel
// knows it already, and dropping the entry of a directory a process has
// just made and entered would leave the process unable to name its
// working directory (getcwd fails with ENOENT).
func (fsys *FS) nameChanged(dir, name string, e pager.Entry, gone bool) {
	id := e.ID
	if gone {
		id = ""
	}
	fsys.mu.Lock()
	dn := fsys.dirs[dir]
	own := fsys.heardOwnLocked(sideKey(dir, name), id)
	fsys.mu.Unlock()
	if dn == nil || own {
		return
	}
	dn.dropListing()
	dn.NotifyEntry(name)
	dn.NotifyContent(0, 0)
}

// ownChange is a name change made through this mount: the id the name
// stands for after it ("" when removed) and when it was made.
type ownChange struct {
	id string
	at time.Time
}

// ownChangeTTL is how long an own change waits to be heard back from
// etcd (a watch that restarted may never report it).
const ownChangeTTL = 10 * time.Second

// Kinds of own changes (ownChange.id besides a database's or directory's).
const (
	ownRemoved = ""  // the name was removed
	ownPut     = "*" // the name now stands for something new
)

// makingHere records, before this host changes name in directory dir
// through the mount, what the change will be (ownPut or ownRemoved): etcd
// may report it before the operation returns. The caller calls the
// returned function with the operation's outcome; a failed change is
// forgotten.
func (fsys *FS) makingHere(dir, name, kind string) func(failed bool) {
	k := sideKey(dir, name)
	c := ownChange{id: kind, at: time.Now()}
	fsys.mu.Lock()
	fsys.own[k] = append(fsys.own[k], c)
	fsys.mu.Unlock()
	return func(failed bool) {
		if failed {
			fsys.mu.Lock()
			fsys.heardOwnLocked(k, kind)
			fsys.mu.Unlock()
		}
	}
}

// heardOwnLocked reports whether a change of name k (to id, "" when
// removed) is one this host made (makingHere), and forgets it; it forgets
// expired ones too.
func (fsys *FS) heardOwnLocked(k, id string) bool {
	changes := fsys.own[k]
	found := false
	kept := changes[:0]
	for _, c := range changes {
		switch {
		case !found && (c.id == id || (c.id == ownPut && id != ownRemoved)):
			found = true
		case time.Since(c.at) < ownChangeTTL:
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		delete(fsys.own, k)
	} else {
		fsys.own[k] = kept
	}
	return found
}

// database returns the node of database id, named base in directory dir,
// opening it on first use. A node already open under another name (a
// rename on another host) takes the new one.
func (fsys *FS) database(ctx context.Context, dir *dirNode, base, id string) (*dbNode, error) {
	fsys.mu.Lock()
	d := fsys.dbs[id]
	if d != nil && !d.gone() {
		fsys.placeLocked(d, dir, base)
		fsys.mu.Unlock()
		return d, nil
	}
	fsys.mu.Unlock()
	db, err := fsys.opts.Pager.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if d := fsys.dbs[id]; d != nil && !d.gone() {
		db.Close()
		fsys.placeLocked(d, dir, base)
		return d, nil
	}
	d = &dbNode{fsys: fsys, name: id, db: db}
	dir.NewPersistentInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFREG})
	fsys.dbs[id] = d
	fsys.placeLocked(d, dir, base)
	// Not on the pager's watch goroutine: remoteChange takes d.mu, under
	// which Acquire waits for that goroutine to stop.
	db.OnChange(func(h pager.Head) { go d.remoteChange(h) })
	return d, nil
}

// placeLocked records that d is named base in dir now. While this host
// has side files of d under its old name (a transaction or WAL mode here:
// SQLite keeps using the files it opened), d keeps that name too, so that
// they still find their database and it finds them.
func (fsys *FS) placeLocked(d *dbNode, dir *dirNode, base string) {
	if d.dir != nil && (d.dir != dir || d.base != base) && fsys.hasSidesLocked(d) {
		fsys.byName[sideKey(dir.id, base)] = d
		return
	}
	if d.dir != nil {
		if k := sideKey(d.dir.id, d.base); fsys.byName[k] == d {
			delete(fsys.byName, k)
		}
	}
	d.dir, d.base = dir, base
	fsys.byName[sideKey(dir.id, base)] = d
	d.db.SetPath(dir.pathOf(base))
}

// hasSidesLocked reports whether SQLite on this host is using side files
// of d under its current name: a live journal (a transaction), or a -wal
// (WAL connections; SQLite deletes it at the last close). A journal
// PERSIST leaves behind, or a leftover -shm, does not count.
func (fsys *FS) hasSidesLocked(d *dbNode) bool {
	if j := d.sideLocked("-journal"); j != nil && j.live() {
		return true
	}
	return d.sideLocked("-wal") != nil
}

// forgetDB drops d (removed) from the open databases and returns where it
// was named.
func (fsys *FS) forgetDB(d *dbNode) (*dirNode, string) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.dbs[d.name] == d {
		delete(fsys.dbs, d.name)
	}
	if k := sideKey(d.dir.id, d.base); fsys.byName[k] == d {
		delete(fsys.byName, k)
	}
	return d.dir, d.base
}

// openedAt returns the node of the database at path (relative to the
// mount's root) if this host has it open there.
func (fsys *FS) openedAt(p string) *dbNode {
	dir, base := path.Split(p)
	node := &fsys.root.Inode
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		if node = node.GetChild(part); node == nil {
			return nil
		}
	}
	dn, ok := node.Operations().(*dirNode)
	if !ok {
		return nil
	}
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.byName[sideKey(dn.id, base)]
}

func (n *dirNode) Readdir(ctx context.Context) (_ fs.DirStream, errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("readdir", &errno)
	ctx = uninterruptible(ctx)
	ents, err := n.entries(ctx)
	if err != nil {
		return nil, fsys.errno("readdir", n.id, err)
	}
	out := make([]gofuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		mode := uint32(syscall.S_IFREG)
		if e.Dir {
			mode = syscall.S_IFDIR
		}
		out = append(out, gofuse.DirEntry{Name: e.Name, Mode: mode})
	}
	fsys.mu.Lock()
	for _, s := range fsys.sides {
		if s.dir == n {
			out = append(out, gofuse.DirEntry{Name: s.name(), Mode: syscall.S_IFREG})
		}
	}
	fsys.mu.Unlock()
	slices.SortFunc(out, func(a, b gofuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	// "." and "..", as a local file system lists them.
	dots := []gofuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	return fs.NewListDirStream(append(dots, out...)), 0
}

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *gofuse.EntryOut) (_ *fs.Inode, _ fs.FileHandle, _ uint32, errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("create", &errno)
	defer n.listingChanged(&errno)
	ctx = uninterruptible(ctx)
	if fsys.opts.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if c, ok := gofuse.FromContext(ctx); ok && fsys.isAgentOpen(c.Pid) {
		return nil, nil, 0, syscall.ENOENT // a lock agent's file was renamed away (openOwn)
	}
	if strings.Contains(name, "@") {
		if errno := n.refuseVersionCreate(ctx, name); errno != 0 {
			return nil, nil, 0, errno // a past version of a database, or its journal
		}
	}
	if _, ok := isSide(name); ok {
		if err := etcdstore.ValidateName(name); err != nil {
			return nil, nil, 0, fsys.errno("create", name, err)
		}
		s, err := fsys.createSide(ctx, n, name, creator(ctx, mode))
		if err != nil {
			return nil, nil, 0, fsys.errno("create", name, err)
		}
		if s.isWAL() || s.isSHM() {
			fsys.walStarted(ctx, n, s.dbName()) // the lock agent opens the -shm too
		}
		s.opened(ctx, flags)
		h, err := s.handle(flags)
		if err != nil {
			return nil, nil, 0, fsys.errno("create", name, err)
		}
		s.fill(&out.Attr)
		return s.EmbeddedInode(), h, s.openFlags(), 0
	}
	done := fsys.makingHere(n.id, name, ownPut)
	e, err := fsys.opts.Pager.CreateIn(ctx, n.id, name, creator(ctx, mode))
	created := err == nil
	done(!created)
	if errors.Is(err, pager.ErrExists) {
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		if e, _, err = fsys.opts.Pager.Lookup(ctx, n.id, name); err == nil && e.Dir {
			return nil, nil, 0, syscall.EISDIR
		}
	}
	if err != nil {
		return nil, nil, 0, fsys.errno("create", name, err)
	}
	d, err := fsys.database(ctx, n, name, e.ID)
	if err != nil {
		return nil, nil, 0, fsys.errno("create", name, err)
	}
	h, fuseFlags, errno := d.open(ctx, flags, created)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	d.fill(&out.Attr)
	return d.EmbeddedInode(), h, fuseFlags, 0
}

func (n *dirNode) Unlink(ctx context.Context, name string) (errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("unlink", &errno)
	defer n.listingChanged(&errno)
	ctx = uninterruptible(ctx)
	if fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	if db, ok := isSide(name); ok {
		key := sideKey(n.id, name)
		fsys.mu.Lock()
		s := fsys.sides[key]
		d := fsys.byName[sideKey(n.id, db)]
		fsys.mu.Unlock()
		if s == nil {
			return syscall.ENOENT
		}
		// Deleting the journal is the commit point of journal_mode=DELETE;
		// deleting a super-journal commits every child database.
		if d != nil && strings.HasSuffix(name, "-journal") {
			if err := d.commitPoint(ctx, "journal deleted"); err != nil {
				return fsys.errno("unlink", name, err)
			}
		}
		if s.isSuper() {
			if err := fsys.commitSuper(ctx, s); err != nil {
				return fsys.errno("unlink", name, err)
			}
		}
		fsys.mu.Lock()
		delete(fsys.sides, key)
		fsys.mu.Unlock()
		n.RmChild(name)
		s.discard()
		if d != nil && strings.HasSuffix(name, "-wal") {
			// SQLite deletes the log after checkpointing all of it.
			d.walFold(ctx, walEnded)
		}
		return 0
	}
	e, _, err := fsys.opts.Pager.Lookup(ctx, n.id, name)
	if err != nil {
		return fsys.errno("unlink", name, err)
	}
	if e.Dir {
		return syscall.EISDIR
	}
	d, err := fsys.database(ctx, n, name, e.ID)
	if err != nil {
		return fsys.errno("unlink", name, err)
	}
	done := fsys.makingHere(n.id, name, ownRemoved)
	err = d.remove(ctx)
	done(err != nil)
	if err != nil {
		return fsys.errno("unlink", name, err)
	}
	fsys.forgetDB(d)
	n.RmChild(name)
	return 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *gofuse.EntryOut) (_ *fs.Inode, errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("mkdir", &errno)
	defer n.listingChanged(&errno)
	ctx = uninterruptible(ctx)
	if fsys.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	if _, ok := isSide(name); ok {
		return nil, syscall.EINVAL // the name of a side file: kvfs's own
	}
	if strings.Contains(name, "@") {
		if errno := n.refuseVersionCreate(ctx, name); errno != 0 {
			return nil, errno
		}
	}
	a := creator(ctx, mode)
	a.Mode = mode & 0o7777 // a directory keeps set-group-ID and sticky
	done := fsys.makingHere(n.id, name, ownPut)
	e, err := fsys.opts.Pager.Mkdir(ctx, n.id, name, a)
	done(err != nil)
	if err != nil {
		return nil, fsys.errno("mkdir", name, err)
	}
	child := n.dirChild(ctx, name, e.ID)
	got, _ := child.attrs.get(ctx, fsys, e.ID, fsys.opts.AttrTimeout)
	fillDirAttrs(&out.Attr, got)
	return child.EmbeddedInode(), 0
}

func (n *dirNode) Rmdir(ctx context.Context, name string) (errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("rmdir", &errno)
	defer n.listingChanged(&errno)
	ctx = uninterruptible(ctx)
	if fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	done := fsys.makingHere(n.id, name, ownRemoved)
	err := fsys.opts.Pager.Rmdir(ctx, n.id, name)
	done(err != nil)
	if err != nil {
		return fsys.errno("rmdir", name, err)
	}
	return 0
}

// renameJournal renames a rollback journal of directory n to another
// journal's name in it, as a local file system renames a file: the node,
// its contents and the handles open on it move. SQLite never does this; a
// tool that moves a hot journal aside and back does (SQLite's pager1-33).
// The database the journal leaves is not committed (its commit point is
// SQLite's deletion of its journal, which then finds none and fails), and
// one it joins finds a hot journal, as on a local disk. A journal replaced
// is dropped, unless it is open (EBUSY: it may hold a transaction of this
// host). Other side files are not renamed (EXDEV: cp and mv copy them).
func (fsys *FS) renameJournal(n *dirNode, name, newName string, flags uint32) syscall.Errno {
	db, _ := isSide(newName)
	fsys.mu.Lock()
	s := fsys.sides[sideKey(n.id, name)]
	t := fsys.sides[sideKey(n.id, newName)]
	switch {
	case s == nil:
		fsys.mu.Unlock()
		return syscall.ENOENT
	case s == t:
		fsys.mu.Unlock()
		return 0
	case t != nil && flags&renameNoReplace != 0:
		fsys.mu.Unlock()
		return syscall.EEXIST
	case t != nil:
		t.mu.Lock()
		busy := t.handles > 0
		t.mu.Unlock()
		if busy {
			fsys.mu.Unlock()
			return syscall.EBUSY
		}
	}
	delete(fsys.sides, sideKey(n.id, name))
	fsys.sides[sideKey(n.id, newName)] = s
	s.names.Store(&sideName{name: newName, db: db})
	fsys.mu.Unlock()
	if t != nil {
		t.discard()
	}
	fsys.log.Debug("journal renamed", "from", name, "to", newName)
	return 0
}

// Rename moves a database or a directory (pager.Rename: one etcd
// transaction), also over an existing database, whose data goes with the
// same transaction under its write lease, or over an empty directory.
// Side files are this host's and are not renamed (EXDEV: mv copies), no
// database takes a side file's name (EINVAL), and a database with side
// files on this host (in a transaction, or in WAL mode) is not renamed
// (EBUSY).
func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) (errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("rename", &errno)
	defer n.listingChanged(&errno)
	ctx = uninterruptible(ctx)
	if fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	np, ok := newParent.EmbeddedInode().Operations().(*dirNode)
	if !ok || flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	defer np.listingChanged(&errno)
	if _, side := isSide(name); side {
		if np == n && strings.HasSuffix(name, "-journal") && strings.HasSuffix(newName, "-journal") {
			return fsys.renameJournal(n, name, newName, flags)
		}
		return syscall.EXDEV
	}
	if _, side := isSide(newName); side {
		return syscall.EINVAL
	}
	if strings.Contains(newName, "@") {
		if errno := np.refuseVersionCreate(ctx, newName); errno != 0 {
			return errno
		}
	}
	p := fsys.opts.Pager
	e, _, err := p.Lookup(ctx, n.id, name)
	if err != nil {
		return fsys.errno("rename", name, err)
	}
	if !e.Dir && fsys.busyHere(e.ID) {
		// SQLite here keeps using the journal or log it opened under the
		// old name; kvfs would not find its commits under the new one.
		return syscall.EBUSY
	}
	target, _, terr := p.Lookup(ctx, np.id, newName)
	if terr == nil && flags&renameNoReplace != 0 {
		return syscall.EEXIST
	}
	rename := func(victim pager.Fence) error {
		from := fsys.makingHere(n.id, name, ownRemoved)
		to := fsys.makingHere(np.id, newName, ownPut)
		err := p.Rename(ctx, n.id, name, np.id, newName, victim)
		from(err != nil)
		to(err != nil)
		return err
	}
	if terr == nil && !target.Dir && !e.Dir && target.ID != e.ID {
		// Over a database: under its lease, as its unlink would be.
		v, err := fsys.database(ctx, np, newName, target.ID)
		if err == nil {
			err = v.removeWith(ctx, rename)
		}
		if err != nil {
			return fsys.errno("rename", name, err)
		}
		fsys.forgetDB(v)
	} else if err := rename(nil); err != nil {
		return fsys.errno("rename", name, err)
	}
	if !e.Dir {
		fsys.mu.Lock()
		if d := fsys.dbs[e.ID]; d != nil {
			fsys.placeLocked(d, np, newName)
		}
		fsys.mu.Unlock()
	}
	return 0
}

// busyHere reports whether database id has side files on this host (a
// transaction, or WAL mode).
func (fsys *FS) busyHere(id string) bool {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	d := fsys.dbs[id]
	return d != nil && !d.gone() && fsys.hasSidesLocked(d)
}

// rename(2) flags (linux/fs.h).
const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
)
