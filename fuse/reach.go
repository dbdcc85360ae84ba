package fuse

import (
	"context"
	"errors"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Metadata reads that have a local answer to fall back on (the attributes
// of a directory read before, a name this host has open), and write lease
// acquisitions (made holding the database's lock, which its reads need
// too), ask etcd for at most probeTimeout while etcd was found unreachable
// within unreachableMemory and has not answered since: without a quorum
// each would otherwise wait a whole request timeout, and SQLite's every
// read transaction in rollback mode looks names up. The first answer
// ends it.
const (
	probeTimeout      = 300 * time.Millisecond
	unreachableMemory = 30 * time.Second
)

// metaCtx returns the context for a metadata read with a local fallback,
// or a lease acquisition.
func (fsys *FS) metaCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if fsys.probing() {
		return context.WithTimeout(ctx, probeTimeout)
	}
	return ctx, func() {}
}

// probing reports whether etcd was found unreachable within
// unreachableMemory and has not answered since.
func (fsys *FS) probing() bool {
	at := fsys.unreachable.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < unreachableMemory
}

// noteMeta records whether a metadata read or lease acquisition reached
// etcd.
func (fsys *FS) noteMeta(err error) {
	switch {
	case err == nil || errors.Is(err, etcdstore.ErrNotFound):
		fsys.unreachable.Store(0)
	case errors.Is(err, etcdstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		fsys.unreachable.Store(time.Now().UnixNano())
	}
}
