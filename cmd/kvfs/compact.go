package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

func compactCommand() command {
	return command{
		name:    "compact",
		summary: "fold a database's commits into shards now",
		run:     runCompact,
	}
}

func runCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compact", "compact [flags] [DB]",
		`Runs a full compaction pass on DB, or on every database: folds every commit
into shards and deletes what no reader needs any more. A mount compacts in the
background anyway; use this before a backup or to reclaim space now. The pass
runs under DB's write lease: when a mount holds it, compact asks it to hand
the lease over at its next idle point and waits up to --wait.
`+storeFlagsHelp+`

Example:
  kvfs compact --data-dir /var/lib/kvfs app.db`, stderr)
	cf := registerConfigFlags(fs, false)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a mount holding a database's write lease to hand it over")
	cfg, pos, err := parseCommand(fs, cf, args, 0, 1)
	if err != nil {
		return err
	}
	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	dbs, err := sess.listHeads(ctx, dir) // a database, or every one under a directory
	if err != nil {
		return err
	}
	fm := sess.fence("compact")
	defer fm.Close(context.Background())
	for _, d := range dbs {
		if err := compactOne(ctx, sess, p, fm, d.Name, d.ID, *wait, stdout); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	return nil
}

// compactOne runs one full pass on database id, at path name, under its
// write lease.
func compactOne(ctx context.Context, sess *session, p *pager.Pager, fm *fence.Manager, name, id string, wait time.Duration, stdout io.Writer) error {
	before, err := pager.ReadInfo(ctx, sess.store, sess.keys, id)
	if err != nil {
		return err
	}
	lease, err := acquire(ctx, fm, id, name, wait)
	if err != nil {
		return err
	}
	defer lease.Release(context.Background())
	db, err := p.Open(ctx, id)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Acquire(ctx, lease); err != nil {
		return err
	}
	start := time.Now()
	res, err := db.Compact(ctx, pager.CompactOptions{ShardPages: uint32(sess.cfg.Compaction.ShardPages)})
	if err != nil {
		return err
	}
	after := db.Stats()
	fmt.Fprintf(stdout, "%s: folded up to txid %d: %d shards written, %d deltas deleted, %s freed; %s stored (was %s), history %s (was %s); %s\n",
		name, res.FoldedTXID, res.Shards, res.DeltasDeleted, humanBytes(res.BytesFreed),
		humanBytes(after.Usage), humanBytes(before.Usage), humanBytes(after.HistoryBytes), humanBytes(before.HistoryBytes), time.Since(start).Round(time.Millisecond))
	return nil
}
