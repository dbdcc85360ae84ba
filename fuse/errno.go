package fuse

import (
	"context"
	"errors"
	"syscall"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

// errnoTable maps kvfs errors to the errno the kernel returns to the
// application, first match wins. SQLite turns ENOSPC into SQLITE_FULL; an
// error at a commit point becomes SQLITE_IOERR whatever its errno, but the
// errno still tells an operator (strace, logs) what happened.
var errnoTable = []struct {
	err   error
	errno syscall.Errno
}{
	{context.Canceled, syscall.EINTR},
	{pager.ErrQuotaExceeded, syscall.ENOSPC},
	{etcdstore.ErrNoSpace, syscall.ENOSPC},
	{fence.ErrHeld, syscall.EAGAIN}, // another host holds the write lease
	{fence.ErrBusy, syscall.EAGAIN},
	{pager.ErrFenced, syscall.EAGAIN},
	{fence.ErrFenced, syscall.EAGAIN},
	{pager.ErrConflict, syscall.EAGAIN},
	{pager.ErrReadOnly, syscall.EROFS},
	{errReadOnlyMount, syscall.EROFS},
	{pager.ErrInvalidWrite, syscall.EINVAL},
	{pager.ErrFileTooLarge, syscall.EFBIG},
	{etcdstore.ErrInvalidName, syscall.EINVAL},
	{errWALChain, syscall.EIO},
	{errWALRewind, syscall.EIO},
	{errWALBusyRollback, syscall.EBUSY},
	{pager.ErrNotFound, syscall.ENOENT},
	{pager.ErrNotEmpty, syscall.ENOTEMPTY},
	{pager.ErrIsDir, syscall.EISDIR},
	{pager.ErrNotDir, syscall.ENOTDIR},
	{pager.ErrMoveIntoSelf, syscall.EINVAL},
	{pager.ErrExists, syscall.EEXIST},
	{pager.ErrTxOpen, syscall.EBUSY},
	{etcdstore.ErrUnavailable, syscall.EIO},
	{pager.ErrCorrupt, syscall.EIO},
}

// ToErrno returns the errno for err: 0 for nil, EIO for anything unknown.
func ToErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if ne := (*etcdstore.NameError)(nil); errors.As(err, &ne) && ne.TooLong {
		return syscall.ENAMETOOLONG
	}
	for _, e := range errnoTable {
		if errors.Is(err, e.err) {
			return e.errno
		}
	}
	return syscall.EIO
}
