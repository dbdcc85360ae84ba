package fuse

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvfs/kvfs/etcdstore"
)

// statfsBlock is the block size statfs reports its counts in.
const statfsBlock = 4096

// spaceCache holds etcd's space as Options.Space last reported it: df and
// the tools that check free space before writing may ask often, and each
// answer costs a status request to every etcd member.
type spaceCache struct {
	mu          sync.Mutex
	quota, used int64
	read        time.Time
}

// get returns quota and used bytes, asking space when the last answer is
// older than maxAge; when it cannot answer, the last known ones (an error
// only when none is known).
func (c *spaceCache) get(ctx context.Context, space func(context.Context) (int64, int64, error), maxAge time.Duration) (quota, used int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read.IsZero() || time.Since(c.read) > maxAge {
		q, u, err := space(ctx)
		if err != nil && c.read.IsZero() {
			return 0, 0, err
		}
		if err == nil {
			c.quota, c.used, c.read = q, u, time.Now()
		}
	}
	return c.quota, c.used, nil
}

// Statfs reports etcd's quota as the file system's size and what etcd's
// backend uses of it (history included) as used: free is what commits can
// still add before etcd refuses them with NOSPACE. Files count databases
// only as a bound: there is none but the space.
func (n *dirNode) Statfs(ctx context.Context, out *gofuse.StatfsOut) (errno syscall.Errno) {
	fsys := n.fsys
	defer fsys.recoverErrno("statfs", &errno)
	ctx = uninterruptible(ctx)
	out.Bsize, out.Frsize = statfsBlock, statfsBlock
	out.NameLen = etcdstore.MaxNameLen
	if fsys.opts.Space == nil {
		return 0
	}
	quota, used, err := fsys.space.get(ctx, fsys.opts.Space, fsys.opts.AttrTimeout)
	if err != nil {
		return fsys.errno("statfs", "/", err)
	}
	free := max(quota-used, 0)
	out.Blocks = uint64(quota) / statfsBlock
	out.Bfree = uint64(free) / statfsBlock
	out.Bavail = out.Bfree
	out.Files = out.Blocks
	out.Ffree = out.Bfree
	return 0
}
