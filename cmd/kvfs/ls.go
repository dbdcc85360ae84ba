package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/kvfs/kvfs/pager"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

func lsCommand() command {
	return command{
		name:    "ls",
		summary: "list the databases with size, txid, lease holder and usage",
		run:     runLs,
	}
}

// lsEntry is one line of `kvfs ls` (and one object of `kvfs ls --json`).
type lsEntry struct {
	Name       string `json:"name"`
	ID         string `json:"id"`   // etcd keys and write lease (kvfs_fence_* label)
	Kind       string `json:"kind"` // "database", "plain" (a file that is not a SQLite database) or "empty"
	SizeBytes  int64  `json:"size_bytes"`
	PageSize   uint32 `json:"page_size"`
	Pages      uint32 `json:"pages"`
	TXID       uint64 `json:"txid"`
	Generation uint64 `json:"generation"`
	Holder     string `json:"holder,omitempty"` // owner of the write lease; "" when free
	HolderGen  uint64 `json:"holder_generation,omitempty"`
	UsedBytes  int64  `json:"used_bytes"`
	QuotaBytes int64  `json:"quota_bytes"` // 0: unlimited
	Committed  string `json:"committed,omitempty"`
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", "ls [flags] [directory]",
		`Lists every database (under directory, a path in the mount, when given),
with its path: its size, page size, last committed transaction
(txid) and the generation of the writer that committed it, who holds its
write lease now, and the bytes it stores in etcd against its quota. Works with
or without a running mount.
`+storeFlagsHelp+`

Example:
  kvfs ls --data-dir /var/lib/kvfs
  kvfs ls --data-dir /var/lib/kvfs tenant1/
  kvfs ls --etcd https://etcd-1:2379,https://etcd-2:2379 --etcd-cacert ca.pem --json`, stderr)
	cf := registerConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON, one array of objects")
	cfg, pos, err := parseCommand(fs, cf, args, 0, 1)
	if err != nil {
		return err
	}
	sess, err := openSession(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer sess.close()
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	dbs, err := sess.listHeads(ctx, dir)
	if err != nil {
		return err
	}
	fm := sess.fence("ls")
	defer fm.Close(context.Background())
	entries := make([]lsEntry, 0, len(dbs))
	for _, d := range dbs {
		e := lsEntry{
			Name: d.Name, ID: d.ID, Kind: kindOf(d.Head), SizeBytes: d.Head.Size(), PageSize: d.Head.PageSize, Pages: d.Head.Pages,
			TXID: d.Head.TXID, Generation: d.Head.Generation, UsedBytes: d.Usage,
			QuotaBytes: cfg.QuotaFor(d.Name).MaxBytes,
		}
		if d.Head.Timestamp > 0 {
			e.Committed = time.UnixMilli(d.Head.Timestamp).UTC().Format(time.RFC3339)
		}
		info, held, err := holder(ctx, fm, d.ID)
		if err != nil {
			return fmt.Errorf("lease holder of %s: %w", d.Name, err)
		}
		if held {
			e.Holder, e.HolderGen = info.Owner, info.Generation
		}
		entries = append(entries, e)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tPAGE\tTXID\tGEN\tLEASE HOLDER\tUSED\tQUOTA")
	for _, e := range entries {
		h := "-"
		if e.Holder != "" {
			h = fmt.Sprintf("%s (gen %d)", e.Holder, e.HolderGen)
		}
		q := "unlimited"
		if e.QuotaBytes > 0 {
			q = fmt.Sprintf("%s (%.0f%%)", humanBytes(e.QuotaBytes), 100*float64(e.UsedBytes)/float64(e.QuotaBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.Name, e.Kind, humanBytes(e.SizeBytes),
			strconv.Itoa(int(e.PageSize)), e.TXID, e.Generation, h, humanBytes(e.UsedBytes), q)
	}
	return tw.Flush()
}

// kindOf says what a head's file is: "database", "plain" or "empty".
func kindOf(h pager.Head) string {
	switch {
	case h.Size() == 0:
		return "empty"
	case h.Plain:
		return "plain"
	}
	return "database"
}
