// Package fuse serves the kvfs directory through go-fuse: the root lists the
// databases in etcd; each file is a database whose reads and writes go to the
// pager; -journal, -wal, -shm and super-journal files stay on the host. It
// knows SQLite's file protocol and turns commit points into pager commits.
//
// Invariant: a commit is durable in etcd before the system call that marks
// its commit point returns; if the commit fails, that call fails and the
// database reads as its last commit. This is the only package that maps
// errors to errno (ToErrno).
//
// # Commit points
//
// A write to a database file opens (or joins) the database's write
// transaction on this host, taking the database's write lease first. The
// transaction commits when SQLite invalidates the rollback journal:
// unlinking it (journal_mode=DELETE), truncating it to zero (TRUNCATE), or
// zeroing its header (PERSIST, and locking_mode=EXCLUSIVE). Without a live
// journal (journal_mode=MEMORY or OFF, or a writer that is not SQLite, such
// as cp) the commit point is the writer's fsync of the database file, or,
// for a writer holding no SQLite lock, its close. With synchronous=OFF
// SQLite does not fsync: the writer's unlock is the commit point (see
// Locks).
//
// # Journals pass through
//
// A journal's reads and writes go from the kernel straight to its file
// (FUSE passthrough, Linux 6.9 and root), not through kvfs: seven or more
// requests fewer per autocommit transaction. That file is a memfd while the
// database is at most Options.JournalMemMax, else a spool file. kvfs still sees the
// journal's creation, truncation, fsyncs, close and deletion, so header
// zeroing is seen at the fsync SQLite issues right after it; with
// synchronous=OFF there is none, and the transaction commits at the
// journal's close (just after the statement returns) or, with
// locking_mode=EXCLUSIVE, when the next transaction first writes the
// database (its journal header carries a new nonce) or the connection
// closes. Where passthrough is unavailable, go-fuse falls back to ordinary
// requests and the zeroing write itself commits.
//
// Other requests saved per transaction: directories are never opened
// (OPENDIR answers ENOSYS, so SQLite's directory fsync costs nothing), and
// the attributes are not fetched before SQLite's chown of a new journal
// (kvfs files have no set-ID bits to clear).
//
// # Locks
//
// By default the kernel arbitrates SQLite's POSIX locks, so a lock call
// costs what it costs on a local file and hot reads run from the kernel's
// page cache at native speed. kvfs takes part in the locking through open
// file description locks of its own on each open database (lockAgent):
//
//   - While another host holds the write lease, or another host's commit
//     is not yet applied here, kvfs holds RESERVED: a local writer gets
//     SQLITE_BUSY and its busy handler retries from a fresh read.
//   - Another host's commit becomes this host's read view under PENDING and
//     EXCLUSIVE, as a local writer's commit would: no read transaction sees
//     it land in its middle; new ones wait (busy handler) for a moment.
//   - A local writer opening its journal for writing is where kvfs learns
//     of a write transaction: it takes the lease then (asking the holder to
//     hand it over); if it cannot, or the writer read an older commit than
//     the head, kvfs holds a read lock in the SHARED range so the writer's
//     EXCLUSIVE lock fails with SQLITE_BUSY until it rolls back. If etcd
//     cannot be reached, the journal's first fsync fails instead (an I/O
//     error, before the database is written).
//   - The lease holder releases the lease after Options.IdleRelease
//     without writes (at once if another host asked), once no local
//     process holds RESERVED.
//   - journal_mode=MEMORY or OFF with synchronous=OFF: kvfs polls for the
//     writer's unlock and commits then (asynchronously: SQLite promises no
//     durability with synchronous=OFF). Such a writer that finds the lease
//     elsewhere fails at its first database write (an I/O error), having
//     given no earlier sign.
//
// kvfs opens these descriptions through a helper process (pidfd_getfd) and
// without FLUSH on close: a kvfs thread waiting on its own mount when kvfs
// is killed would keep the process from ever exiting.
//
// With Options.ForwardLocks, locks are forwarded to kvfs instead: a lock
// table per database gives local processes a local file's semantics; a
// write lock on SQLite's RESERVED byte needs this host's write lease
// (EAGAIN, that is SQLITE_BUSY, while another host holds it, which is asked
// to hand it over); the first SHARED lock after none pins the host's read
// view and drops the kernel's cached pages if another host committed since.
// Each forwarded lock call is a FUSE round trip (four per statement).
//
// # WAL mode
//
// The -wal is a side file whose writes go through kvfs (no passthrough):
// kvfs follows its header and frames (walLog). The write that completes a
// commit frame chaining to the log before it (salts and checksums, as
// SQLite's recovery checks them) commits that transaction to etcd before
// it returns: the newest frame of each page, and the database size the
// commit frame gives, in one pager transaction under the write lease. That
// is earlier than SQLite's own end of the transaction (the -wal's fsync
// with synchronous=FULL, the WAL write lock's release otherwise), so every
// synchronous setting is durable at the statement's return. A commit that
// fails fails that write: SQLite reports an I/O error and never publishes
// the transaction in its wal-index. When SQLite rewrites checksums after
// the commit frame (a page changed again after a cache spill), the rewrite
// of the commit frame's header completes the chain and commits. A frame
// whose chain never holds is not committed, and the -wal's fsync fails
// with EIO; a frame written over a committed transaction of the same log
// generation (its writer died before publishing it in the wal-index) gets
// EIO.
//
// Bytes SQLite does not write are kept as a local disk keeps them and
// commit nothing when written: writes through a handle SQLite never opens
// (write-only or truncating: cp, a script's open "w"), a header that is
// not one, frames before the log has a header. SQLite's recovery judges
// them: when SQLite reads the log's 32-byte header at offset 0 (it does so
// only to rebuild its wal-index from the log, or to check the salts of a
// log it cannot map), kvfs first commits the transactions that follow the
// committed ones and chain from the header the file holds, the same ones
// SQLite is about to count (recoverWAL). A database and its -wal copied
// onto the mount therefore read as on a local disk, damaged frames and
// all, and reach etcd when SQLite first opens them. A commit that fails
// there fails the read: SQLite reports an I/O error and reads none of it.
// Such bytes die with the host until SQLite has recovered them, as they
// would with a disk that was never synced.
//
// The -shm passes through to a memfd (or, without passthrough, is mapped
// through the kernel's page cache): it is host-local shared memory, and
// SQLite's locks on it are the kernel's.
//
// The database file, while a -wal exists, reads as a pager.Overlay: the
// commit the log began from, with the pages SQLite's checkpoints wrote over
// it, never a later commit. A WAL reader reads a page from the file only
// when its snapshot of the log has no frame for it, and a checkpoint copies
// a frame into the file only when no reader can need the older copy; the
// file must therefore lag the commits as a local file would. Checkpoints
// commit nothing (their pages are in etcd already). When SQLite restarts
// the log (a new header: every frame was checkpointed), truncates it or
// deletes it, the overlay folds into the latest commit.
//
// Several hosts: while another host holds the write lease, or has a commit
// not applied here, the lock agent holds the -shm's WRITE byte, so a local
// writer gets SQLITE_BUSY. Another host's commit is applied once the agent
// holds every lock byte from WRITE to READ4 (no local read or write
// transaction or checkpoint is open): it empties the -wal, writes the
// wal-index header of an empty log (as SQLite's own log restart does, with
// the database's new size), and the file becomes the latest commit; each
// connection sees the header change at its next transaction and drops its
// page cache. A lease is not released while a local WAL writer holds the
// WRITE lock. With locking_mode=EXCLUSIVE (wal-index in heap memory) the
// connection keeps the database locked, and another host's commit reaches
// it after it closes.
//
// # Transactions over several databases
//
// A transaction that writes several ATTACHed databases (rollback modes)
// has SQLite write a super-journal beside the main database
// (<db>-mjXXXXXX9XX: six hex digits, a 9, two hex digits) listing every
// child journal by full path, append a pointer to it to each child
// journal, sync every journal and database file, then delete the
// super-journal: that deletion is the commit point of the whole
// transaction (see superjournal.go). kvfs commits there, in one etcd
// transaction (pager.CommitAll), the open transactions of the databases of
// this mount that the super-journal lists and whose journals point back to
// it; the child journals' own ends that follow find nothing to commit.
// Every host sees all of the databases' new versions or none. A child on
// another filesystem (a local disk) commits there on its own terms: not
// atomic across the two filesystems. A super-journal is a side file like a
// journal: host-local, never a database, listed only while it exists.
// Every head of such a commit names its group (pager.Head.Group); another
// host applies it to all of the group's databases it has open at once,
// under the lock agents' PENDING and EXCLUSIVE of each (groupapply.go), so
// that a read transaction there over several of them never sees one ahead
// of another.
//
// # Directories
//
// Every directory is a dirNode over the pager's namespace (key schema 2,
// pager/namespace.go): a lookup reads one name from etcd, a listing one
// range, and mkdir, rmdir, unlink and rename are one etcd transaction each
// — a rename over a database deletes that database's data in the same
// transaction, under its write lease, as its unlink would. Open databases
// are keyed by id (FS.dbs), and by where they are named (FS.byName), as
// side files are (FS.sides): a journal lives beside its database, in the
// same directory. Every mount follows the names in etcd
// (pager.WatchNames) and drops the kernel's cached entry of each name that
// changes, so another host's rename or removal shows at once, not when the
// entry expires (its own changes, which its kernel knows, excepted: a
// process that made a directory and entered it must keep its working
// directory's name); it drops the kernel's cached listing of the directory too
// (the kernel keeps listings across opens on a file system without
// OPENDIR). The READDIRs of one listing are served from the directory's
// names as read from etcd within the last second (dirNode.entries; any
// change of a name in the directory drops them), so a listing costs one
// range read, and READDIRPLUS is off: it would look up, and open, every
// database listed.
// A mount moves the flat catalog of an older kvfs into the root first
// (pager.Upgrade).
//
// # Plain files
//
// Every regular file is a dbNode, whatever it holds: its bytes are stored
// as written, in pages (pager.Head.Plain and Bytes for a file that is not
// a SQLite database: a text file, a database's truncated copy, a size that
// cuts a page). A writer that is not SQLite commits at its fsync or close;
// another host sees the old content or the new, never a part. A write past
// the quota (ENOSPC) or past Options.Pager's PlainMaxBytes (EFBIG) fails,
// and then that writer's fsync and close fail too and commit nothing: the
// file keeps its last commit. Whether a file is a database or plain is
// decided at each commit from its size and page 1, so text written over a
// database makes it plain and a database copied over text a database.
//
// # Names, permissions and times
//
// A database's name is any bytes but '/' and NUL, up to 255 bytes. Its
// mode and owner are stored in etcd beside its head (pager.Attrs): set at
// creation from the creating process (its uid and gid, the mode it asked
// for with its umask applied), changed by chmod and chown, followed by
// every host like the head, and enforced by the kernel (the mount's
// default_permissions: kvfs sees no request the kernel refused). The root
// directory's are stored too (chmod 1777 opens it to every user, as /tmp).
// Set-user-ID and set-group-ID bits of files are cleared. Side files keep
// theirs on the host: SQLite gives a journal its database's mode and, as
// root, its owner. A file's mtime is its last commit's time, the same on
// every host; its ctime the later of that and its last chmod or chown.
// statfs reports etcd's quota and backend size (Options.Space).
//
// # History
//
// A name NAME@VERSION that is not a name in its directory, where NAME is a
// database there and VERSION a txid or an RFC 3339 time (history.go),
// looks up as a historyNode: that version as a read-only file, from a
// pager.Snapshot (Database.VersionOf) pinned while the kernel keeps the
// inode. It is never listed; opening it for writing, truncating it,
// setattr, and creating it or its journal get EROFS (SQLite then opens it
// read-only); a version outside the history window is ENOENT and the log
// says why. Creating a name that would parse as a version of a database
// there but does not (no zone, a bad txid) gets EINVAL rather than a new
// database. Header bytes 18 and 19 read as 1 (rollback): a version of a
// WAL-mode database is whole in etcd, and SQLite cannot open a read-only
// WAL database without a -shm.
//
// # Not yet
//
// WAL needs the kernel's locks: with Options.ForwardLocks SQLite's -shm
// locks fail (an I/O error).
//
// A journal may be renamed to another journal's name in its directory, as
// on a local disk: the node, its bytes and its open handles move, and the
// database it leaves is not committed (SQLite's deletion of its journal,
// the commit point, then finds none). Other side files, and journals to
// other directories, are not renamed (EXDEV: mv copies them). No database
// or directory takes a side file's name (EINVAL).
package fuse
