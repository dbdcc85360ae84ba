package fuse

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

// TestToErrno checks the error-to-errno table: every sentinel and typed
// error, bare and wrapped the way callers wrap (fmt.Errorf with %w, twice),
// maps to the errno DESIGN.md's invariant 5 promises.
func TestToErrno(t *testing.T) {
	held := &fence.HeldError{DB: "a.db", Owner: "host-b", Generation: 7}
	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},

		// Quota and etcd space → ENOSPC (SQLite: "database or disk is full").
		{"pager.ErrQuotaExceeded", pager.ErrQuotaExceeded, syscall.ENOSPC},
		{"*pager.QuotaError", &pager.QuotaError{DB: "a.db", What: "bytes", Used: 2 << 20, Max: 1 << 20}, syscall.ENOSPC},
		{"etcdstore.ErrNoSpace", etcdstore.ErrNoSpace, syscall.ENOSPC},

		// Another host holds the write lease, or this host lost it → EAGAIN
		// (SQLITE_BUSY where SQLite asks, retryable).
		{"fence.ErrHeld", fence.ErrHeld, syscall.EAGAIN},
		{"*fence.HeldError", held, syscall.EAGAIN},
		{"fence.ErrBusy", fence.ErrBusy, syscall.EAGAIN},
		{"*fence.BusyError", &fence.BusyError{Held: held}, syscall.EAGAIN},
		{"fence.ErrFenced", fence.ErrFenced, syscall.EAGAIN},
		{"*fence.FencedError", &fence.FencedError{DB: "a.db", Generation: 3, Reason: "lease expired"}, syscall.EAGAIN},
		{"pager.ErrFenced", pager.ErrFenced, syscall.EAGAIN},
		{"pager.ErrConflict", pager.ErrConflict, syscall.EAGAIN},

		// Not writable → EROFS.
		{"pager.ErrReadOnly", pager.ErrReadOnly, syscall.EROFS},
		{"read-only mount", errReadOnlyMount, syscall.EROFS},

		// Malformed input → EINVAL.
		{"pager.ErrInvalidWrite", pager.ErrInvalidWrite, syscall.EINVAL},
		{"pager.ErrFileTooLarge", pager.ErrFileTooLarge, syscall.EFBIG},
		{"etcdstore.ErrInvalidName", etcdstore.ErrInvalidName, syscall.EINVAL},
		{"*etcdstore.NameError", &etcdstore.NameError{Name: "a/b", Reason: "contains /"}, syscall.EINVAL},
		{"WAL chain", errWALChain, syscall.EIO},
		{"WAL rewind", errWALRewind, syscall.EIO},

		{"pager.ErrNotFound", pager.ErrNotFound, syscall.ENOENT},
		{"pager.ErrExists", pager.ErrExists, syscall.EEXIST},
		{"pager.ErrTxOpen", pager.ErrTxOpen, syscall.EBUSY},

		// A real store failure → EIO.
		{"etcdstore.ErrUnavailable", etcdstore.ErrUnavailable, syscall.EIO},
		{"*etcdstore.UnavailableError", &etcdstore.UnavailableError{Op: "txn", Err: errors.New("connection refused")}, syscall.EIO},
		{"pager.ErrCorrupt", pager.ErrCorrupt, syscall.EIO},

		// The caller gave up (the kernel interrupted the request).
		{"context.Canceled", context.Canceled, syscall.EINTR},

		// An errno from below (the spool file system) passes through.
		{"syscall.ENOSPC", syscall.ENOSPC, syscall.ENOSPC},
		{"syscall.EACCES", syscall.EACCES, syscall.EACCES},

		// Anything unknown is a failure kvfs cannot explain → EIO.
		{"unknown", errors.New("something else"), syscall.EIO},
		{"etcdstore.ErrTooLarge", etcdstore.ErrTooLarge, syscall.EIO},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ToErrno(c.err); got != c.want {
				t.Errorf("ToErrno(%v) = %v (%d), want %v (%d)", c.err, got, int(got), c.want, int(c.want))
			}
			if c.err == nil {
				return
			}
			once := fmt.Errorf("commit a.db: %w", c.err)
			if got := ToErrno(once); got != c.want {
				t.Errorf("ToErrno(%q) = %v, want %v", once, got, c.want)
			}
			twice := fmt.Errorf("write a.db: %w", once)
			if got := ToErrno(twice); got != c.want {
				t.Errorf("ToErrno(%q) = %v, want %v", twice, got, c.want)
			}
			joined := errors.Join(errors.New("context"), once)
			if got := ToErrno(joined); got != c.want {
				t.Errorf("ToErrno(%q) = %v, want %v", joined, got, c.want)
			}
		})
	}
}

// TestToErrnoPrecedence pins the order where an error matches several
// entries: the more specific cause wins.
func TestToErrnoPrecedence(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		// A quota refusal that mentions an unavailable store is still a
		// quota refusal.
		{"quota and unavailable", errors.Join(pager.ErrQuotaExceeded, etcdstore.ErrUnavailable), syscall.ENOSPC},
		// An explicit errno in the chain wins over the table.
		{"errno and sentinel", fmt.Errorf("%w: %w", syscall.EACCES, pager.ErrCorrupt), syscall.EACCES},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ToErrno(c.err); got != c.want {
				t.Errorf("ToErrno(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
