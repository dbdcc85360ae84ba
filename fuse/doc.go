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
// as cp) the commit point is the writer's fsync of the database file, or its
// close. With journal_mode=OFF and synchronous=OFF SQLite gives no signal
// before close: a transaction becomes durable when the connection closes.
//
// # Locks
//
// POSIX locks are forwarded to kvfs (unless Options.LocalLocks): a lock
// table per database gives local processes a local file's semantics; a write
// lock on SQLite's RESERVED byte needs this host's write lease (EAGAIN, that
// is SQLITE_BUSY, while another host holds it, which is asked to hand it
// over); the first SHARED lock after none pins the host's read view and drops
// the kernel's cached pages if another host committed since. Each forwarded
// lock call is a FUSE round trip.
//
// # Not yet
//
// WAL: a header write switching a database to WAL is refused with EINVAL;
// SQLite reports an I/O error and the database stays in rollback mode.
// Multi-database transactions (ATTACH) commit each database at its own
// journal's invalidation, not atomically across databases.
//
// Rename returns EXDEV (mv copies and deletes instead).
package fuse
