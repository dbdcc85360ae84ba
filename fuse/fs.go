package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

var (
	errReadOnlyMount = errors.New("mounted read-only")
)

// Options configure a mount.
type Options struct {
	// Pager serves the databases. Required.
	Pager *pager.Pager
	// Fence hands out write leases. Required unless ReadOnly.
	Fence *fence.Manager
	// SpoolDir holds this host's journals and other side files (default
	// os.TempDir()).
	SpoolDir string
	// ReadOnly refuses every write with EROFS.
	ReadOnly bool
	// AllowOther lets other users access the mount.
	AllowOther bool
	// HandoffWait is how long a write without a lock (not SQLite) waits for
	// another host to hand over the database's write lease before failing
	// with EAGAIN (default 5 s).
	HandoffWait time.Duration
	// ForwardLocks forwards SQLite's POSIX locks to kvfs instead of leaving
	// them to the kernel. Every lock call is then a FUSE round trip (four
	// per SQLite statement, about 10 µs each here), which costs point
	// reads most of their speed; in exchange a writer on a host without the
	// lease asks for it at its RESERVED lock instead of waiting for the
	// holder to go idle (see IdleRelease). Off by default: kvfs then takes
	// part in locking through descriptions of its own (see lockAgent).
	ForwardLocks bool
	// JournalMemMax: a journal created while its database is at most this
	// large is kept in memory (a memfd) rather than in a SpoolDir file,
	// which saves the file system's block allocation on every transaction
	// (about 10% of an autocommit's time here). A journal is no larger
	// than what its transaction changes, so this bounds its memory; one
	// whose database outgrew the limit moves to SpoolDir at its next open.
	// Default 64 MiB; negative keeps every journal in SpoolDir. Only with
	// passthrough.
	JournalMemMax int64
	// NoPassthrough serves journals' reads and writes through kvfs, as
	// ordinary FUSE requests, instead of handing the kernel their spool
	// files (FUSE passthrough, used where the kernel and privileges allow:
	// seven or more requests fewer per transaction).
	NoPassthrough bool
	// IdleRelease is how long a host keeps a database's write lease after
	// its last write transaction when locks are left to the kernel (default
	// 250 ms): other hosts' writers get SQLITE_BUSY until it is released.
	IdleRelease time.Duration
	// BeforeRelease, if set, runs (with the lease still held) before an
	// idle host releases a database's write lease: kvfs mount folds
	// deltas there when compaction is due, since only the lease holder
	// compacts.
	BeforeRelease func(context.Context, *pager.Database)
	// LockHandoffWait is how long SQLite's RESERVED lock waits for the
	// lease before EAGAIN, i.e. SQLITE_BUSY: SQLite's busy handler retries
	// (default 200 ms).
	LockHandoffWait time.Duration
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's cache
	// times for names, attributes and absent names (default 1 s each).
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// Space, if set, reports etcd's space for statfs (df): the bytes its
	// quota allows and the bytes its backend uses (what the quota counts,
	// history included). nil reports no space.
	Space func(ctx context.Context) (quota, used int64, err error)
	// Failpoint, if set, is called at named points of the commit protocol
	// (a fault seam for crash tests): "super-journal-commit" before a
	// multi-database commit is sent to etcd, "super-journal-committed"
	// after it landed, before SQLite hears of it.
	Failpoint func(name string)
}

// FS is a mounted kvfs directory.
type FS struct {
	opts   Options
	log    *slog.Logger
	server *gofuse.Server
	root   *dirNode
	mnt    string
	// mntPaths are the absolute paths of the mountpoint, as given and
	// with symlinks resolved: SQLite names child journals by full path
	// in a super-journal.
	mntPaths []string

	// unreachable is when a metadata read last found etcd unreachable
	// (UnixNano; 0 once etcd answered again): see metaCtx.
	unreachable atomic.Int64

	mu     sync.Mutex
	dirs   map[string]*dirNode  // the directories looked up, by id
	dbs    map[string]*dbNode   // by id
	byName map[string]*dbNode   // by sideKey(directory id, name)
	sides  map[string]*sideNode // by sideKey(directory id, name)
	// versions are the time-travel files looked up (history.go), by
	// database id and txid.
	versions map[string]*historyNode
	// own are the name changes this host made through the mount and has
	// not heard back from etcd yet, by sideKey(directory id, name): the
	// kernel knows them already (see nameChanged).
	own map[string][]ownChange

	space     spaceCache
	closing   atomic.Bool // Unmount started: no new lock agents
	stopNames context.CancelFunc
	agentPids sync.Map // uint32 pid → true: helpers opening files for lock agents
}

// Mount mounts kvfs at mountpoint and serves it in the background until
// Unmount. As root it uses mount(2) directly; otherwise it needs
// fusermount3 (Debian package fuse3).
func Mount(mountpoint string, opts Options) (*FS, error) {
	if opts.Pager == nil || (opts.Fence == nil && !opts.ReadOnly) {
		return nil, errors.New("mount: pager and fence manager required")
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}
	if opts.JournalMemMax == 0 {
		opts.JournalMemMax = 64 << 20
	}
	if opts.HandoffWait <= 0 {
		opts.HandoffWait = 5 * time.Second
	}
	if opts.IdleRelease <= 0 {
		opts.IdleRelease = 250 * time.Millisecond
	}
	if opts.LockHandoffWait <= 0 {
		opts.LockHandoffWait = 200 * time.Millisecond
	}
	for _, d := range []*time.Duration{&opts.EntryTimeout, &opts.AttrTimeout, &opts.NegativeTimeout} {
		if *d <= 0 {
			*d = time.Second
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The databases of a kvfs before directories move into the root (no
	// data key moves; see pager.Upgrade).
	if n, err := opts.Pager.Upgrade(context.Background()); err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	} else if n > 0 {
		log.Info("moved the databases of the flat catalog into the root directory", "databases", n)
	}
	// mnt is set before serving: lock agents open files through it.
	fsys := &FS{opts: opts, log: log, mnt: mountpoint, mntPaths: mountPaths(mountpoint), dirs: map[string]*dirNode{}, dbs: map[string]*dbNode{}, byName: map[string]*dbNode{}, sides: map[string]*sideNode{}, versions: map[string]*historyNode{}, own: map[string][]ownChange{}}
	fsys.root = &dirNode{fsys: fsys, id: pager.RootDir}
	fsys.dirs[pager.RootDir] = fsys.root
	mo := gofuse.MountOptions{
		Name:          "kvfs",
		FsName:        "kvfs",
		AllowOther:    opts.AllowOther,
		Debug:         opts.Debug,
		DirectMount:   os.Geteuid() == 0,
		DisableXAttrs: true,
		EnableLocks:   opts.ForwardLocks,
		MaxWrite:      1 << 20,
		MaxBackground: 64,
		// READDIRPLUS would look up every name listed, opening each
		// database (its head, attributes and watch): a listing of 10,000
		// databases would cost 10,000 etcd reads instead of one.
		DisableReadDirPlus: true,
		// kvfs invalidates the kernel's cache itself (NotifyContent) when
		// another host's commit is applied or a transaction fails;
		// automatic invalidation would drop the writer's cache at every
		// commit, whose mtime changes.
		ExplicitDataCacheControl: true,
		// kvfs files never carry set-user/group-ID bits, so there are none
		// to clear; without this the kernel asks for the attributes before
		// each chown (SQLite running as root chowns every new journal).
		ExtraCapabilities: gofuse.CAP_HANDLE_KILLPRIV_V2,
		// The kernel checks every access against the files' stored mode
		// and owner (see attrs.go).
		Options: []string{"default_permissions"},
	}
	entry, attr, neg := opts.EntryTimeout, opts.AttrTimeout, opts.NegativeTimeout
	raw := fs.NewNodeFS(fsys.root, &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		// Every node reports its stored mode; chmod 0 is mode 0, not 0644.
		NullPermissions: true,
	})
	server, err := gofuse.NewServer(noOpendirFS{raw}, mountpoint, &mo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	fsys.server = server
	// Another host's mkdir, rmdir, rename or unlink drops this kernel's
	// cached entry of that name at once, not when it expires.
	nctx, stop := context.WithCancel(context.Background())
	fsys.stopNames = stop
	go opts.Pager.WatchNames(nctx, fsys.nameChanged)
	return fsys, nil
}

// Unmount commits nothing further: open write transactions are rolled back
// (an unfinished transaction is a rollback, as on a crash), leases are
// released, and the mount is removed. A busy mount is detached lazily.
func (fsys *FS) Unmount(ctx context.Context) error {
	// The lock agents' own descriptions would keep the mount busy.
	fsys.closing.Store(true)
	fsys.stopNames()
	// d.mu before fsys.mu, never the other way: a lock agent holds its
	// database's mu when it looks up side files under fsys.mu.
	var agents []*lockAgent
	for _, d := range fsys.openDBs() {
		d.mu.Lock()
		if d.agent != nil {
			agents = append(agents, d.agent)
		}
		d.mu.Unlock()
	}
	for _, a := range agents {
		a.stop()
	}
	err := fsys.server.Unmount()
	if err != nil {
		// Busy: detach lazily so the mountpoint does not stay half-dead.
		if lerr := syscall.Unmount(fsys.mountpoint(), syscall.MNT_DETACH); lerr == nil {
			err = nil
		}
	}
	fsys.server.Wait()
	dbs := fsys.openDBs()
	fsys.mu.Lock()
	sides, versions := fsys.sides, fsys.versions
	fsys.sides, fsys.versions = map[string]*sideNode{}, map[string]*historyNode{}
	fsys.mu.Unlock()
	for _, h := range versions {
		h.snap.Close()
	}
	for _, d := range dbs {
		d.close(ctx)
	}
	for _, s := range sides {
		s.discard()
	}
	return err
}

func (fsys *FS) mountpoint() string { return fsys.mnt }

// openDBs returns the nodes of the databases opened on this mount.
func (fsys *FS) openDBs() []*dbNode {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	dbs := make([]*dbNode, 0, len(fsys.dbs))
	for _, d := range fsys.dbs {
		dbs = append(dbs, d)
	}
	return dbs
}

// Wait blocks until the mount is gone.
func (fsys *FS) Wait() { fsys.server.Wait() }

// WaitMount blocks until the kernel serves the mount.
func (fsys *FS) WaitMount() error { return fsys.server.WaitMount() }

// recoverErrno turns a panic in a handler into EIO and a log line: no panic
// reaches the kernel.
func (fsys *FS) recoverErrno(op string, errno *syscall.Errno) {
	if r := recover(); r != nil {
		fsys.log.Error("panic in FUSE handler", "op", op, "panic", r, "stack", string(debug.Stack()))
		*errno = syscall.EIO
	}
}

// errno logs a failed operation's cause and returns its errno.
func (fsys *FS) errno(op, name string, err error) syscall.Errno {
	e := ToErrno(err)
	if e == syscall.EIO {
		fsys.log.Error("operation failed", "op", op, "name", name, "err", err)
	} else if err != nil {
		fsys.log.Debug("operation refused", "op", op, "name", name, "err", err, "errno", e)
	}
	return e
}

// sideSuffix matches the files SQLite keeps beside a database; kvfs keeps
// them on this host, never in etcd. A super-journal (the list of child
// journals of a transaction over ATTACHed databases) is named by SQLite's
// "-mj%06X9%02X": six hex digits, a 9, two hex digits.
var sideSuffix = regexp.MustCompile(`(-journal|-wal|-shm|-mj[0-9A-Fa-f]{6}9[0-9A-Fa-f]{2})$`)

// isSide reports whether name is a side file, and of which database.
func isSide(name string) (db string, ok bool) {
	loc := sideSuffix.FindStringIndex(name)
	if loc == nil {
		return "", false
	}
	return name[:loc[0]], true
}

// uninterruptible keeps an operation going when the kernel sends
// FUSE_INTERRUPT (a signal reached the calling thread — Go's preemption
// signal is enough, so a Go program gets them all the time): a commit
// point that answered EINTR after its commit landed would tell SQLite it
// failed, and a lookup that answered EINTR failed the rmdir, rename, stat
// or open it was part of, which few programs retry. Every handler that
// may wait on etcd uses it; the operation completes or fails on its own
// terms, within the etcd request deadline.
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
