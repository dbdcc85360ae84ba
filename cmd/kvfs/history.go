package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// The history commands: log, restore and fork (see pager/history.go).

const historyHelp = `
VERSION is a txid (1234) or an RFC 3339 time with its zone
(2026-12-01T10:00:00Z, 2026-12-01T11:00:00+01:00): the last commit at or
before that time. Versions current within history.retention (default 24h)
are kept; a mount also serves them read-only as DB@VERSION.`

func logCommand() command {
	return command{name: "log", summary: "list the commits of a database that its history keeps", run: runLog}
}

func restoreCommand() command {
	return command{name: "restore", summary: "make a database's content a past version of it (one new commit)", run: runRestore}
}

func forkCommand() command {
	return command{name: "fork", summary: "copy a version of a database into a new database", run: runFork}
}

func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("log", "log [flags] DB",
		`Lists the commits of database DB whose versions the history keeps, newest
first: txid, commit time (the committing host's clock, UTC), pages the commit
wrote, bytes of its delta, and the database's size after it. Each listed
txid can be opened read-only as DB@TXID on a mount, restored (kvfs restore)
or forked (kvfs fork).
`+historyHelp+`
`+storeFlagsHelp+`

Example:
  kvfs log --data-dir /var/lib/kvfs app.db
  kvfs log --since 2026-12-01T10:00:00Z app.db
  sqlite3 /mnt/kvfs/app.db@1234 'select count(*) from t'`, stderr)
	cf := registerConfigFlags(fs, false)
	since := fs.String("since", "", "list only commits from this VERSION on (a txid or an RFC 3339 time)")
	limit := fs.Int("n", 0, "list at most this many commits (0: all)")
	cfg, pos, err := parseCommand(fs, cf, args, 1, 1)
	if err != nil {
		return err
	}
	var from pager.VersionSpec
	if *since != "" {
		if from, err = pager.ParseVersion(*since); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	name := pos[0]
	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	db, err := openByPath(ctx, sess, p, name)
	if err != nil {
		return err
	}
	defer db.Close()
	var commits []pager.Commit
	err = db.Log(ctx, from.TXID, func(c pager.Commit) error {
		if from.TXID == 0 && !from.Time.IsZero() && c.Time.Before(from.Time) {
			return nil
		}
		commits = append(commits, c)
		return nil
	})
	if err != nil {
		return err
	}
	// Only versions still in the window: the head, and those superseded
	// within the retention.
	head := db.Head()
	retention := time.Duration(cfg.History.Retention)
	cutoff := time.Now().Add(-retention)
	kept := commits[:0]
	for i, c := range commits {
		switch {
		case c.TXID == head.TXID:
		case retention <= 0:
			continue
		case i+1 < len(commits) && commits[i+1].TXID == c.TXID+1 && !commits[i+1].Time.After(cutoff):
			continue
		}
		kept = append(kept, c)
	}
	slices.Reverse(kept)
	if *limit > 0 && len(kept) > *limit {
		kept = kept[:*limit]
	}
	if len(kept) == 0 {
		if retention <= 0 {
			fmt.Fprintf(stderr, "%s: no history kept (history.retention is 0)\n", name)
		} else {
			fmt.Fprintf(stderr, "%s: no commits in the history (it starts when history.retention is set, and holds versions current within %s)\n", name, retention)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TXID\tTIME\tPAGES\tBYTES\tSIZE\t")
	for _, c := range kept {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t\n", c.TXID, c.Time.UTC().Format("2006-01-02T15:04:05.000Z"), c.Changed, c.Bytes, c.Size)
	}
	return tw.Flush()
}

// versionOf opens db's version spec, naming db by its path name in
// errors.
func versionOf(ctx context.Context, db *pager.Database, spec pager.VersionSpec, name string) (*pager.Snapshot, error) {
	snap, err := db.VersionOf(ctx, spec)
	var verr *pager.VersionError
	if errors.As(err, &verr) {
		verr.DB = name
	}
	return snap, err
}

// openByPath opens the database at path in p.
func openByPath(ctx context.Context, sess *session, p *pager.Pager, name string) (*pager.Database, error) {
	id, err := sess.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	return p.Open(ctx, id)
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", "restore [flags] --to VERSION DB",
		`Makes database DB read as it did at VERSION, in one new fenced commit under
DB's write lease: only the pages that changed since are written. The history
before it is kept, so a restore can itself be undone by restoring the txid it
replaced (kvfs log lists it). When a mount holds DB's write lease, restore
asks it to hand the lease over and waits up to --wait; readers on mounts see
the restored content at their next read transaction.
`+historyHelp+`
`+storeFlagsHelp+`

Example:
  kvfs log app.db
  kvfs restore --to 1234 app.db
  kvfs restore --to 2026-12-01T10:00:00Z app.db`, stderr)
	cf := registerConfigFlags(fs, false)
	to := fs.String("to", "", "the VERSION to restore (required)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a mount holding DB's write lease to hand it over")
	cfg, pos, err := parseCommand(fs, cf, args, 1, 1)
	if err != nil {
		return err
	}
	if *to == "" {
		return errors.New("--to VERSION is required (a txid or an RFC 3339 time; kvfs log lists them)")
	}
	spec, err := pager.ParseVersion(*to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	name := pos[0]
	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	id, err := sess.resolve(ctx, name)
	if err != nil {
		return err
	}
	db, err := p.Open(ctx, id)
	if err != nil {
		return err
	}
	defer db.Close()
	// Refuse a version outside the window before taking the lease.
	snap, err := versionOf(ctx, db, spec, name)
	if err != nil {
		return err
	}
	defer snap.Close()
	fm := sess.fence("restore")
	defer fm.Close(context.Background())
	lease, err := acquire(ctx, fm, id, name, *wait)
	if err != nil {
		return err
	}
	defer lease.Release(context.Background())
	if err := db.Acquire(ctx, lease); err != nil {
		return err
	}
	defer db.Release()
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	want, from := snap.Head(), tx.Base()
	if want.TXID == from.TXID {
		fmt.Fprintf(stdout, "%s is at txid %d already: nothing to restore\n", name, want.TXID)
		return nil
	}
	prog := newProgress(stderr, "restore "+name, 0)
	written, err := db.Restore(ctx, tx, snap, func(done, total int) {
		if done == 1 {
			prog.total = int64(total) * int64(want.PageSize)
		}
		prog.Add(int64(want.PageSize))
	})
	if err != nil {
		return fmt.Errorf("restore %s to txid %d: %w", name, want.TXID, err)
	}
	info, err := tx.Commit(ctx)
	if err != nil {
		return fmt.Errorf("restore %s to txid %d: %w", name, want.TXID, err)
	}
	prog.Done(fmt.Sprintf("%d pages written", written))
	fmt.Fprintf(stdout, "restored %s to txid %d (committed %s): %d pages written (%d bytes of delta in %d etcd transactions), committed as txid %d (replacing txid %d)\n",
		name, want.TXID, time.UnixMilli(want.Timestamp).UTC().Format(time.RFC3339), written, info.Bytes, info.Txns, info.Head.TXID, from.TXID)
	return nil
}

func runFork(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fork", "fork [flags] [--at VERSION] DB NEW",
		`Copies database DB, as of VERSION (default: its latest commit), into the new
database NEW, which shares nothing mutable with DB: each has its own pages,
history and write lease from then on. NEW must not exist; missing
directories of its path are made.
`+historyHelp+`
`+storeFlagsHelp+`

Example:
  kvfs fork --at 1234 app.db app-before-migration.db
  sqlite3 /mnt/kvfs/app-before-migration.db .tables`, stderr)
	cf := registerConfigFlags(fs, false)
	at := fs.String("at", "", "the VERSION to copy (default: the latest commit)")
	cfg, pos, err := parseCommand(fs, cf, args, 2, 2)
	if err != nil {
		return err
	}
	var spec pager.VersionSpec
	if *at != "" {
		if spec, err = pager.ParseVersion(*at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	name, newName := pos[0], pos[1]
	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	src, err := openByPath(ctx, sess, p, name)
	if err != nil {
		return err
	}
	defer src.Close()
	var snap *pager.Snapshot
	if *at == "" {
		snap, err = src.Snapshot(ctx)
	} else {
		snap, err = versionOf(ctx, src, spec, name)
	}
	if err != nil {
		return err
	}
	defer snap.Close()
	ns, err := sess.namespace(ctx)
	if err != nil {
		return err
	}
	attrs := src.Attrs()
	if parent := path.Dir(newName); parent != "." && parent != "/" {
		dirAttrs := attrs
		dirAttrs.Mode = 0o755
		if _, err := ns.MkdirAll(ctx, parent, dirAttrs); err != nil {
			return err
		}
	}
	if _, err := ns.CreatePath(ctx, newName, attrs); errors.Is(err, pager.ErrExists) {
		return fmt.Errorf("%s exists: fork makes a new database (kvfs rm it first, or pick another name)", newName)
	} else if err != nil {
		return err
	}
	dir, base, e, err := ns.Resolve(ctx, newName)
	if err != nil {
		return err
	}
	fm := sess.fence("fork")
	defer fm.Close(context.Background())
	lease, err := acquire(ctx, fm, e.ID, newName, 0)
	if err != nil {
		return err
	}
	defer lease.Release(context.Background())
	info, err := copyIn(ctx, p, lease, newName, e.ID, snap.ReadAt, snap.Size(), snap.Head().PageSize, nil, newProgress(stderr, "fork "+newName, snap.Size()))
	if err != nil {
		// Leave no half-made database behind.
		if rerr := p.Unlink(context.Background(), dir, base, e.ID, lease); rerr != nil {
			sess.log.Warn("remove the database created for the failed fork", "db", newName, "err", rerr)
		}
		return err
	}
	h := snap.Head()
	fmt.Fprintf(stdout, "forked %s txid %d (committed %s) into %s: %d pages of %d bytes, txid %d\n",
		name, h.TXID, time.UnixMilli(h.Timestamp).UTC().Format(time.RFC3339), newName, info.Head.Pages, info.Head.PageSize, info.Head.TXID)
	return nil
}
