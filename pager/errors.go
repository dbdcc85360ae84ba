package pager

import (
	"errors"
	"fmt"
)

// Errors returned by the pager. Match them with errors.Is; the FUSE layer
// maps them to errno in one table.
var (
	// ErrNotFound is returned when the database does not exist.
	ErrNotFound = errors.New("database not found")

	// ErrExists is returned by Create when the database already exists.
	ErrExists = errors.New("database exists")

	// ErrFenced is returned when this host does not hold the database's
	// write lease (never had it, lost it, or was paused past its TTL): the
	// write landed nothing.
	ErrFenced = errors.New("write lease not held")

	// ErrConflict is returned when a commit's base head moved underneath
	// it; the transaction landed nothing and was discarded.
	ErrConflict = errors.New("database head moved")

	// ErrReadOnly is returned by Begin on a database opened without a
	// fence.
	ErrReadOnly = errors.New("database opened read-only")

	// ErrTxOpen is returned by Begin while another write transaction of
	// the database is open.
	ErrTxOpen = errors.New("write transaction already open")

	// ErrTxDone is returned by a Tx method after Commit or Rollback.
	ErrTxDone = errors.New("write transaction finished")

	// ErrQuotaExceeded is returned when a write or commit would take the
	// database over its quota; nothing landed. The error is a *QuotaError.
	ErrQuotaExceeded = errors.New("database quota exceeded")

	// ErrInvalidWrite is returned for a write kvfs cannot accept: a
	// negative offset or size, or one past the largest file.
	ErrInvalidWrite = errors.New("invalid write")

	// ErrFileTooLarge is returned when a write or truncate would take a
	// plain file past Options.PlainMaxBytes; nothing changed.
	ErrFileTooLarge = errors.New("plain file too large")

	// ErrCorrupt is returned when stored data does not decode or a page
	// that must exist has no stored copy.
	ErrCorrupt = errors.New("database corrupt")

	// ErrClosed is returned after the Pager or Database was closed.
	ErrClosed = errors.New("closed")

	// ErrNotEmpty is returned by Rmdir, and by Rename over a directory,
	// when the directory has names in it.
	ErrNotEmpty = errors.New("directory not empty")

	// ErrIsDir is returned when an operation on a database names a
	// directory.
	ErrIsDir = errors.New("is a directory")

	// ErrNotDir is returned when an operation on a directory names a
	// database.
	ErrNotDir = errors.New("not a directory")

	// ErrMoveIntoSelf is returned by Rename of a directory into itself or
	// one of its subdirectories.
	ErrMoveIntoSelf = errors.New("cannot move a directory into itself")
)

// QuotaError says which limit a write would exceed.
type QuotaError struct {
	DB   string
	What string // "bytes" or "pages"
	Used int64  // usage the write would reach
	Max  int64  // the configured limit
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("database %s: quota exceeded: %d %s, limit %d", e.DB, e.Used, e.What, e.Max)
}

// Unwrap returns ErrQuotaExceeded.
func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }
