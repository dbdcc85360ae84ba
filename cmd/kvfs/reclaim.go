package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

func reclaimCommand() command {
	return command{
		name:    "reclaim",
		summary: "free etcd space now: compact all history, defragment, disarm NOSPACE",
		run:     runReclaim,
	}
}

// reclaimLimit is the share of the quota under which reclaim counts the
// space problem solved (the mounts' automatic recovery uses the same).
const reclaimLimit = 0.9

func runReclaim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reclaim", "reclaim [flags]",
		`Frees etcd space now and clears etcd's NOSPACE alarm, so that commits resume
through the running mounts (no remount needed).

When etcd's backend reaches its quota (--quota-backend-bytes) etcd raises
NOSPACE and refuses every write: commits fail with "database or disk is full"
and nothing of them lands; reads go on. A mount recovers by itself when it
can do so without harming anyone: it compacts etcd history older than
compaction.history_retention, defragments, and disarms the alarm once the
backend is within 90% of the quota (etcd.quota_backend_bytes). Use reclaim
when that is not enough or not soon enough (kvfs status still shows NOSPACE,
the mount's log says to run it), or after raising etcd's quota, since the
alarm stays until disarmed. It:

  1. compacts etcd's history up to the current revision, for every key and
     every prefix. Read transactions and time-travel files opened before it
     may then fail with "disk I/O error" (their etcd revision is gone):
     reopen them.
  2. defragments every member, one at a time; each stops answering while it
     copies its live data.
  3. disarms NOSPACE. Other alarms (CORRUPT) are listed and left alone, and
     then nothing is disarmed.

It prints each step with the backend sizes before and after. When the live
data itself (the databases, and the versions history.retention keeps) is
within 10% of the quota it still disarms, but exits 1: free space with
kvfs rm, a shorter history.retention or history.max_bytes, or raise etcd's
--quota-backend-bytes (and etcd.quota_backend_bytes). It needs no mount and
no write lease, and is safe to run when there is no alarm (it then only
compacts and defragments).
`+storeFlagsHelp+`

Example:
  kvfs status --etcd http://etcd-1:2379     # alarms: NOSPACE(member ...)
  kvfs reclaim --etcd http://etcd-1:2379`, stderr)
	cf := registerConfigFlags(fs, false)
	defragTimeout := fs.Duration("defrag-timeout", 10*time.Minute, "how long one member's defragmentation may take")
	cfg, _, err := parseCommand(fs, cf, args, 0, 0)
	if err != nil {
		return err
	}
	sess, err := openSession(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer sess.close()
	s := sess.store

	before, err := s.Status(ctx)
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	alarms, err := s.Alarms(ctx)
	if err != nil {
		return fmt.Errorf("etcd alarms: %w", err)
	}
	noSpace, _ := etcdstore.SplitAlarms(alarms)
	// The quota: the configured one, or the size etcd raised the alarm at
	// when that is smaller (etcd.quota_backend_bytes defaults to etcd's
	// default, which an external cluster need not use).
	configured := int64(cfg.Etcd.QuotaBackendBytes)
	if configured <= 0 {
		configured = 2 << 30
	}
	quota, quotaFrom := configured, "etcd.quota_backend_bytes"
	beforeSize, _ := etcdstore.MaxSizes(before)
	if noSpace && beforeSize < quota {
		quota = beforeSize
		quotaFrom = fmt.Sprintf("the backend size at the alarm; etcd.quota_backend_bytes says %s", humanBytes(configured))
	}
	fmt.Fprintf(stdout, "etcd before: %s; alarms: %s\n", sizesText(before), alarmsText(alarms))

	rev := int64(0)
	for _, m := range before {
		rev = max(rev, m.Revision)
	}
	fmt.Fprintf(stdout, "compacting history up to revision %d (read transactions opened before it may fail; reopen them)... ", rev)
	start := time.Now()
	switch err := s.Compact(ctx, rev); {
	case errors.Is(err, etcdstore.ErrCompacted):
		fmt.Fprintln(stdout, "already compacted")
	case errors.Is(err, etcdstore.ErrUnavailable):
		fmt.Fprintln(stdout, "no answer")
		return fmt.Errorf("compact etcd history: %w (etcd may still be compacting: a large backend can need a longer --etcd-request-timeout; run kvfs reclaim again)", err)
	case err != nil:
		fmt.Fprintln(stdout, "failed")
		return fmt.Errorf("compact etcd history: %w", err)
	default:
		fmt.Fprintf(stdout, "done (%s)\n", time.Since(start).Round(time.Millisecond))
	}

	// Every member, one at a time. Compaction reaches the other members
	// through raft and runs there in the background; a member whose
	// compaction finished after its defragmentation gets a second one.
	defragged := map[string]bool{}
	for pass := 0; pass < 2; pass++ {
		st, err := s.Status(ctx)
		if err != nil {
			return fmt.Errorf("etcd status: %w", err)
		}
		for _, m := range st {
			if free := m.DBSize - m.DBSizeInUse; pass == 1 && (!defragged[m.Endpoint] || free < m.DBSize/10 || free < 1<<20) {
				continue
			}
			fmt.Fprintf(stdout, "defragmenting %s (backend %s, in use %s)... ", m.Endpoint, humanBytes(m.DBSize), humanBytes(m.DBSizeInUse))
			dctx, cancel := context.WithTimeout(ctx, *defragTimeout)
			start := time.Now()
			err := s.Defragment(dctx, m.Endpoint)
			cancel()
			if err != nil {
				fmt.Fprintln(stdout, "failed")
				return fmt.Errorf("defragment %s: %w", m.Endpoint, err)
			}
			defragged[m.Endpoint] = true
			size := "?"
			if cur, err := s.Status(ctx); err == nil {
				for _, c := range cur {
					if c.Endpoint == m.Endpoint {
						size = humanBytes(c.DBSize)
					}
				}
			}
			fmt.Fprintf(stdout, "%s (%s)\n", size, time.Since(start).Round(time.Millisecond))
		}
	}

	// Disarm NOSPACE only: DisarmAll clears every alarm, so look again.
	if alarms, err = s.Alarms(ctx); err != nil {
		return fmt.Errorf("etcd alarms: %w", err)
	}
	noSpace, others := etcdstore.SplitAlarms(alarms)
	switch {
	case len(others) > 0:
		fmt.Fprintf(stdout, "not disarming: etcd also raised %s; clear that first (etcdctl alarm list), then run kvfs reclaim again\n", strings.Join(others, ", "))
	case noSpace:
		fmt.Fprintf(stdout, "disarming %s... ", alarmsText(alarms))
		if err := s.DisarmAll(ctx); err != nil {
			fmt.Fprintln(stdout, "failed")
			return fmt.Errorf("disarm: %w", err)
		}
		fmt.Fprintln(stdout, "done")
	default:
		fmt.Fprintln(stdout, "no NOSPACE alarm to disarm")
	}

	after, err := s.Status(ctx)
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	if alarms, err = s.Alarms(ctx); err != nil {
		return fmt.Errorf("etcd alarms: %w", err)
	}
	size, inUse := etcdstore.MaxSizes(after)
	fmt.Fprintf(stdout, "etcd after: %s; alarms: %s\n", sizesText(after), alarmsText(alarms))
	fmt.Fprintf(stdout, "backend %s, was %s: %.0f%% of the quota, %s (%s)\n", humanBytes(size), humanBytes(beforeSize),
		100*float64(size)/float64(quota), humanBytes(quota), quotaFrom)
	if len(others) > 0 {
		return fmt.Errorf("etcd alarms other than NOSPACE stand: %s", strings.Join(others, ", "))
	}
	if float64(size) > reclaimLimit*float64(quota) {
		return fmt.Errorf("etcd's live data still takes %s of the %s quota: commits will fill it again soon; "+
			"delete data (kvfs rm), shorten history.retention or history.max_bytes, or raise etcd's --quota-backend-bytes "+
			"(and etcd.quota_backend_bytes), then run kvfs reclaim again", humanBytes(inUse), humanBytes(quota))
	}
	return nil
}

// sizesText describes every member's backend size and bytes in use.
func sizesText(st []etcdstore.MemberStatus) string {
	parts := make([]string, len(st))
	for i, m := range st {
		parts[i] = fmt.Sprintf("%s backend %s, in use %s", m.Endpoint, humanBytes(m.DBSize), humanBytes(m.DBSizeInUse))
	}
	return strings.Join(parts, "; ")
}

func alarmsText(alarms []string) string {
	if len(alarms) == 0 {
		return "none"
	}
	return strings.Join(alarms, ", ")
}
