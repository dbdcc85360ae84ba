package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kvfs/kvfs/pager"
)

func rmCommand() command {
	return command{
		name:    "rm",
		summary: "remove a database and all its data",
		run:     runRm,
	}
}

func runRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rm", "rm [flags] DB",
		`Removes database DB and everything stored for it, in one etcd transaction
under DB's write lease. When a mount holds the lease, rm asks it to hand the
lease over (at its next idle point) and waits up to --wait. Processes that
have the file open on a mount get errors afterwards. There is no undo: export
it first if in doubt.
`+storeFlagsHelp+`

Example:
  kvfs export --data-dir /var/lib/kvfs old.db /backup/old.db
  kvfs rm --data-dir /var/lib/kvfs old.db`, stderr)
	cf := registerConfigFlags(fs, false)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a mount holding DB's write lease to hand it over")
	cfg, pos, err := parseCommand(fs, cf, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	dir, base, e, err := p.Resolve(ctx, name)
	if err != nil {
		return err
	}
	if e.Dir {
		return fmt.Errorf("%s: %w (rmdir it in the mount)", name, pager.ErrIsDir)
	}
	fm := sess.fence("rm")
	defer fm.Close(context.Background())
	lease, err := acquire(ctx, fm, e.ID, name, *wait)
	if err != nil {
		return err
	}
	defer lease.Release(context.Background())
	if err := p.Unlink(ctx, dir, base, e.ID, lease); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s\n", name)
	return nil
}
