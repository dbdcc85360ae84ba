// Package fuse serves the kvfs directory through go-fuse: the root lists the
// databases in etcd; each file is a database whose reads and writes go to the
// pager; -journal, -wal and -shm files stay on the host. It knows SQLite's
// file protocol and turns commit points into pager commits.
//
// Invariant: a commit is durable in etcd before the system call that marks
// its commit point returns; this is the only package that maps errors to
// errno.
//
// Status: planned (issue "FUSE mount"); this package holds no code yet.
package fuse
