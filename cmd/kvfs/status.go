package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

func statusCommand() command {
	return command{
		name:    "status",
		summary: "show etcd's size and headroom, and the state of the databases",
		run:     runStatus,
	}
}

// dbStatus is the state of one database as `kvfs status DB` reports it.
type dbStatus struct {
	Name       string     `json:"name"`
	Head       pager.Head `json:"head"`
	Holder     string     `json:"holder,omitempty"`
	HolderGen  uint64     `json:"holder_generation,omitempty"`
	Deltas     int        `json:"deltas"`             // committed deltas still stored
	PIDXRows   int        `json:"deltas_outstanding"` // page index rows: deltas whose pages are not folded into shards
	Shards     int        `json:"shards"`
	Orphans    int        `json:"orphans"` // staged deltas above the head (an unfinished commit)
	QuotaBytes int64      `json:"quota_bytes"`
	QuotaPages int64      `json:"quota_pages"`
	Usage      int64      `json:"used_bytes"`     // bytes stored in etcd, as quota counts them
	Lag        uint64     `json:"compaction_lag"` // head txid minus the txid compaction folded up to
	// History: bytes kept only for past versions (not in used_bytes, not
	// counted by the quota), the oldest txid expiry kept, and epochs.
	HistoryBytes int64  `json:"history_bytes"`
	HistoryFrom  uint64 `json:"history_from_txid"`
	Epochs       int    `json:"history_epochs"`
	Retention    string `json:"history_retention"`
}

// clusterStatus is etcd's state as `kvfs status` reports it.
type clusterStatus struct {
	Members       []etcdstore.MemberStatus `json:"members"`
	Alarms        []string                 `json:"alarms"`
	QuotaBytes    int64                    `json:"quota_backend_bytes"`
	HeadroomBytes int64                    `json:"headroom_bytes"`
	Databases     []dbStatus               `json:"databases"`
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "status [flags] [DB]",
		`Without DB: etcd's members (version, revision, backend size and the part in
use), its alarms, the headroom left under etcd's backend quota
(etcd.quota_backend_bytes; set it to the cluster's --quota-backend-bytes), and a
line per database. With DB: that database's head, its write lease holder and
generation, the deltas outstanding (page index rows, not yet folded into
shards by compaction), shards, orphans of an unfinished staged commit, usage
and quota, and the bytes kept for history (past versions; not counted by the
quota, bounded by history.retention and history.max_bytes).
`+storeFlagsHelp+`

Example:
  kvfs status --data-dir /var/lib/kvfs
  kvfs status --data-dir /var/lib/kvfs app.db`, stderr)
	cf := registerConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON")
	cfg, pos, err := parseCommand(fs, cf, args, 0, 1)
	if err != nil {
		return err
	}
	sess, err := openSession(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer sess.close()
	fm := sess.fence("status")
	defer fm.Close(context.Background())

	stat := func(name, id string, head pager.Head) (dbStatus, error) {
		st, err := sess.scanDB(ctx, name, id, head)
		if err != nil {
			return st, err
		}
		info, held, err := holder(ctx, fm, id)
		if err != nil {
			return st, fmt.Errorf("lease holder of %s: %w", name, err)
		}
		if held {
			st.Holder, st.HolderGen = info.Owner, info.Generation
		}
		q := cfg.QuotaFor(name)
		st.QuotaBytes, st.QuotaPages = q.MaxBytes, q.MaxPages
		pinfo, err := pager.ReadInfo(ctx, sess.store, sess.keys, id)
		if err != nil {
			return st, err
		}
		st.Usage, st.Shards = pinfo.Usage, pinfo.Shards
		st.Lag = pinfo.Head.TXID - min(pinfo.Materialized, pinfo.Head.TXID)
		st.HistoryBytes, st.HistoryFrom, st.Epochs = pinfo.HistoryBytes, pinfo.HistoryFrom, len(pinfo.Epochs)
		st.Retention = cfg.History.Retention.String()
		return st, nil
	}

	if len(pos) == 1 {
		id, head, _, err := sess.readHead(ctx, pos[0])
		if err != nil {
			return err
		}
		st, err := stat(pos[0], id, head)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, st)
		}
		printDBStatus(stdout, st)
		return nil
	}

	var cs clusterStatus
	if cs.Members, err = sess.store.Status(ctx); err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	if cs.Alarms, err = sess.store.Alarms(ctx); err != nil {
		return fmt.Errorf("etcd alarms: %w", err)
	}
	cs.QuotaBytes = int64(cfg.Etcd.QuotaBackendBytes)
	var largest int64
	for _, m := range cs.Members {
		largest = max(largest, m.DBSize)
	}
	cs.HeadroomBytes = cs.QuotaBytes - largest
	dbs, err := sess.listHeads(ctx, "")
	if err != nil {
		return err
	}
	for _, d := range dbs {
		st, err := stat(d.Name, d.ID, d.Head)
		if err != nil {
			return err
		}
		cs.Databases = append(cs.Databases, st)
	}
	if *asJSON {
		return writeJSON(stdout, cs)
	}
	fmt.Fprintf(stdout, "etcd (prefix %s):\n", sess.keys.Prefix())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ENDPOINT\tVERSION\tLEADER\tREVISION\tBACKEND\tIN USE")
	for _, m := range cs.Members {
		fmt.Fprintf(tw, "  %s\t%s\t%v\t%d\t%s\t%s\n", m.Endpoint, m.Version, m.Leader == m.MemberID, m.Revision, humanBytes(m.DBSize), humanBytes(m.DBSizeInUse))
	}
	tw.Flush()
	alarms := "none"
	if len(cs.Alarms) > 0 {
		alarms = strings.Join(cs.Alarms, ", ")
	}
	fmt.Fprintf(stdout, "  alarms: %s\n", alarms)
	fmt.Fprintf(stdout, "  quota headroom: %s of %s (%.0f%% free)\n", humanBytes(cs.HeadroomBytes), humanBytes(cs.QuotaBytes),
		100*float64(cs.HeadroomBytes)/float64(max(cs.QuotaBytes, 1)))
	fmt.Fprintf(stdout, "\ndatabases: %d\n", len(cs.Databases))
	if len(cs.Databases) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTXID\tGEN\tLEASE HOLDER\tDELTAS OUTSTANDING\tSHARDS\tORPHANS\tUSED\tHISTORY")
	for _, st := range cs.Databases {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", st.Name, st.Head.TXID, st.Head.Generation, holderText(st),
			st.PIDXRows, st.Shards, st.Orphans, humanBytes(st.Usage), humanBytes(st.HistoryBytes))
	}
	return tw.Flush()
}

func holderText(st dbStatus) string {
	if st.Holder == "" {
		return "-"
	}
	return fmt.Sprintf("%s (gen %d)", st.Holder, st.HolderGen)
}

func printDBStatus(w io.Writer, st dbStatus) {
	h := st.Head
	committed := "never"
	if h.TXID > 0 {
		committed = time.UnixMilli(h.Timestamp).UTC().Format(time.RFC3339Nano)
	}
	limit := func(v int64, f func(int64) string) string {
		if v == 0 {
			return "unlimited"
		}
		return f(v)
	}
	fmt.Fprintf(w, "database %s\n", st.Name)
	fmt.Fprintf(w, "  head:               txid %d, generation %d, committed %s\n", h.TXID, h.Generation, committed)
	fmt.Fprintf(w, "  size:               %d pages of %d bytes (%s)\n", h.Pages, h.PageSize, humanBytes(h.Size()))
	fmt.Fprintf(w, "  write lease:        %s\n", holderText(st))
	fmt.Fprintf(w, "  deltas outstanding: %d (of %d deltas stored; not yet folded into shards)\n", st.PIDXRows, st.Deltas)
	fmt.Fprintf(w, "  shards:             %d; compaction lag %d txids\n", st.Shards, st.Lag)
	fmt.Fprintf(w, "  orphans:            %d (staged by an unfinished commit; removed by the next writer)\n", st.Orphans)
	fmt.Fprintf(w, "  used:               %s of %s; pages limit %s\n", humanBytes(st.Usage),
		limit(st.QuotaBytes, humanBytes), limit(st.QuotaPages, func(v int64) string { return fmt.Sprint(v) }))
	from := "the first commit"
	if st.HistoryFrom > 0 {
		from = fmt.Sprintf("txid %d", st.HistoryFrom)
	}
	fmt.Fprintf(w, "  history:            %s besides the used bytes (versions kept from %s; %d epochs; retention %s)\n",
		humanBytes(st.HistoryBytes), from, st.Epochs, st.Retention)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// scanDB counts a database's stored deltas, page index rows, shards and
// orphans with one keys-only range read.
func (s *session) scanDB(ctx context.Context, name, id string, head pager.Head) (dbStatus, error) {
	st := dbStatus{Name: name, Head: head}
	orphans := map[uint64]bool{}
	_, err := s.store.Range(ctx, s.keys.DB(id), etcdstore.RangeOptions{KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
		info, ok := s.keys.Parse(kv.Key)
		if !ok || info.Chunk != 0 {
			return nil
		}
		switch info.Kind {
		case etcdstore.KindDelta, etcdstore.KindPIDX:
			if info.TXID > head.TXID {
				orphans[info.TXID] = true
			} else if info.Kind == etcdstore.KindDelta {
				st.Deltas++
			} else {
				st.PIDXRows++
			}
		case etcdstore.KindShard:
			st.Shards++
		}
		return nil
	})
	st.Orphans = len(orphans)
	if err != nil {
		return st, fmt.Errorf("scan %s: %w", name, err)
	}
	return st, nil
}
