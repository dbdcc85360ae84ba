package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/ltx"
	"github.com/kvfs/kvfs/pager"
)

func verifyCommand() command {
	return command{
		name:    "verify",
		summary: "check every stored blob, the page index, usage and the checksum",
		run:     runVerify,
	}
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "verify [flags] [DB]",
		`Checks database DB (default: every database), reading etcd at one revision:
  - every delta and shard blob decodes and passes its LTX checksums, and
    describes the transaction and page size it is stored under;
  - every page index row decodes and names only pages present in its delta;
  - every commit log row (history) decodes and agrees with its delta;
  - the usage recomputed from the stored bytes equals the head's used_bytes,
    and the bytes kept for history (deltas whose pages were folded, shard
    versions superseded) equal the compaction state's history_bytes;
  - every page reads back through a snapshot, page 1 of a database is a
    SQLite header that agrees with the head (a plain file, one that is not a
    SQLite database, is read through its pages as it is), and the LTX
    database checksum is printed.
Orphans of an unfinished staged commit (above the head) are reported, not
checked. Exits 1 with a precise message at the first problem.
`+storeFlagsHelp+`

Example:
  kvfs verify --data-dir /var/lib/kvfs
  kvfs verify --data-dir /var/lib/kvfs app.db`, stderr)
	cf := registerConfigFlags(fs, false)
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
	var dbs []dbHead
	if len(pos) == 0 {
		pos = []string{""}
	}
	for _, path := range pos {
		found, err := sess.listHeads(ctx, path) // a database, or every one under a directory
		if err != nil {
			return err
		}
		dbs = append(dbs, found...)
	}
	for _, d := range dbs {
		name := d.Name
		res, err := verifyDB(ctx, sess, p, d.ID)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s: ok: txid %d, %d pages of %d bytes, %d deltas, %d page index rows, %d shards, %d log rows, %d orphans, used %d bytes, history %d bytes, checksum %016x\n",
			name, res.head.TXID, res.head.Pages, res.head.PageSize, res.deltas, res.rows, res.shards, res.logs, res.orphans, res.used, res.history, uint64(res.checksum))
	}
	if len(dbs) == 0 {
		fmt.Fprintln(stdout, "no databases")
	}
	return nil
}

// verifyResult is what verifyDB found in a sound database.
type verifyResult struct {
	head                          pager.Head
	deltas, rows, shards, orphans int
	logs                          int
	used, history                 int64
	checksum                      ltx.Checksum
}

// verifyDB checks database name (its id); the first problem is its error.
func verifyDB(ctx context.Context, sess *session, p *pager.Pager, name string) (verifyResult, error) {
	var res verifyResult
	store, keys := sess.store, sess.keys
	pinfo, err := pager.ReadInfo(ctx, store, keys, name)
	if err != nil {
		return res, err
	}
	head, rev := pinfo.Head, pinfo.Revision
	res.head = head

	// List the blobs at the head's revision.
	var deltaTXIDs, rowTXIDs, logTXIDs []uint64
	var shardNums []uint32
	type shardVersion struct {
		n    uint32
		txid uint64
	}
	var keptShards []shardVersion
	orphans := map[uint64]bool{}
	orphanShards := 0
	_, err = store.Range(ctx, keys.DB(name), etcdstore.RangeOptions{Rev: rev, KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
		info, ok := keys.Parse(kv.Key)
		if !ok || info.DB != name {
			return fmt.Errorf("unexpected key %q", kv.Key)
		}
		if info.Chunk != 0 {
			return nil
		}
		switch info.Kind {
		case etcdstore.KindDelta, etcdstore.KindPIDX, etcdstore.KindLog:
			switch {
			case info.TXID > head.TXID:
				orphans[info.TXID] = true
			case info.Kind == etcdstore.KindDelta:
				deltaTXIDs = append(deltaTXIDs, info.TXID)
			case info.Kind == etcdstore.KindPIDX:
				rowTXIDs = append(rowTXIDs, info.TXID)
			default:
				logTXIDs = append(logTXIDs, info.TXID)
			}
		case etcdstore.KindShard:
			if t, live := pinfo.ShardVersions[info.Shard]; live && t == info.TXID {
				shardNums = append(shardNums, info.Shard)
			} else if slices.Contains(pinfo.KeptShards[info.Shard], info.TXID) {
				keptShards = append(keptShards, shardVersion{info.Shard, info.TXID})
			} else {
				orphanShards++ // left by an interrupted compaction pass
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("list keys: %w", err)
	}
	res.orphans = len(orphans) + orphanShards
	if len(shardNums) != len(pinfo.ShardVersions) {
		return res, fmt.Errorf("compaction state names %d shards, %d are stored", len(pinfo.ShardVersions), len(shardNums))
	}
	kept := 0
	for _, v := range pinfo.KeptShards {
		kept += len(v)
	}
	if kept != len(keptShards) {
		return res, fmt.Errorf("compaction state keeps %d shard versions for history, %d are stored", kept, len(keptShards))
	}
	// A delta whose page index row is gone is kept for history only.
	live := make(map[uint64]bool, len(rowTXIDs))
	for _, txid := range rowTXIDs {
		live[txid] = true
	}

	// Every delta decodes, verifies and matches its key.
	deltaPages := make(map[uint64][]uint32, len(deltaTXIDs))
	for _, txid := range deltaTXIDs {
		b, err := store.GetChunked(ctx, keys.Delta(name, txid), rev)
		if err != nil {
			return res, fmt.Errorf("delta %d: %w", txid, err)
		}
		hdr, err := ltx.Verify(bytes.NewReader(b))
		if err != nil {
			return res, fmt.Errorf("delta %d (%d bytes): %w", txid, len(b), err)
		}
		if uint64(hdr.MinTXID) != txid || uint64(hdr.MaxTXID) != txid {
			return res, fmt.Errorf("delta %d: its header covers txids %d-%d", txid, hdr.MinTXID, hdr.MaxTXID)
		}
		if hdr.PageSize != head.PageSize {
			return res, fmt.Errorf("delta %d: page size %d, the head says %d", txid, hdr.PageSize, head.PageSize)
		}
		blob, err := ltx.OpenBlob(b)
		if err != nil {
			return res, fmt.Errorf("delta %d: %w", txid, err)
		}
		deltaPages[txid] = blob.Pgnos()
		if live[txid] {
			res.used += int64(len(b))
		} else {
			res.history += int64(len(b))
		}
		res.deltas++
	}

	// Every log row decodes and agrees with its delta.
	for _, txid := range logTXIDs {
		b, err := store.GetChunked(ctx, keys.Log(name, txid), rev)
		if err != nil {
			return res, fmt.Errorf("log row %d: %w", txid, err)
		}
		c, err := pager.DecodeLog(txid, b)
		if err != nil {
			return res, fmt.Errorf("log row %d: %w", txid, err)
		}
		if have, ok := deltaPages[txid]; ok && len(have) != c.Changed {
			return res, fmt.Errorf("log row %d: %d pages, its delta %d", txid, c.Changed, len(have))
		}
		res.used += int64(len(b))
		res.logs++
	}

	// Every page index row names pages of its delta.
	for _, txid := range rowTXIDs {
		b, err := store.GetChunked(ctx, keys.PIDX(name, txid), rev)
		if err != nil {
			return res, fmt.Errorf("page index row %d: %w", txid, err)
		}
		pgnos, err := pager.DecodeRow(b)
		if err != nil {
			return res, fmt.Errorf("page index row %d: %w", txid, err)
		}
		have, ok := deltaPages[txid]
		if !ok {
			return res, fmt.Errorf("page index row %d: its delta %d is missing", txid, txid)
		}
		for _, pg := range pgnos {
			if _, found := slices.BinarySearch(have, pg); !found {
				return res, fmt.Errorf("page index row %d: page %d is not in delta %d", txid, pg, txid)
			}
		}
		res.used += int64(len(b))
		res.rows++
	}

	// Every shard decodes and verifies.
	for _, n := range shardNums {
		b, err := store.GetChunked(ctx, keys.ShardVersion(name, n, pinfo.ShardVersions[n]), rev)
		if err != nil {
			return res, fmt.Errorf("shard %d: %w", n, err)
		}
		hdr, err := ltx.Verify(bytes.NewReader(b))
		if err != nil {
			return res, fmt.Errorf("shard %d (%d bytes): %w", n, len(b), err)
		}
		if hdr.PageSize != head.PageSize {
			return res, fmt.Errorf("shard %d: page size %d, the head says %d", n, hdr.PageSize, head.PageSize)
		}
		if uint64(hdr.MaxTXID) > head.TXID {
			return res, fmt.Errorf("shard %d: folded up to txid %d, past the head's %d", n, hdr.MaxTXID, head.TXID)
		}
		res.used += int64(len(b))
		res.shards++
	}
	for _, v := range keptShards {
		b, err := store.GetChunked(ctx, keys.ShardVersion(name, v.n, v.txid), rev)
		if err != nil {
			return res, fmt.Errorf("shard %d version %d (history): %w", v.n, v.txid, err)
		}
		if _, err := ltx.Verify(bytes.NewReader(b)); err != nil {
			return res, fmt.Errorf("shard %d version %d (history, %d bytes): %w", v.n, v.txid, len(b), err)
		}
		res.history += int64(len(b))
	}

	if res.used != pinfo.Usage {
		return res, fmt.Errorf("usage: the stored deltas, page index rows, log rows and shards take %d bytes, the head and compaction state say %d", res.used, pinfo.Usage)
	}
	if res.history != pinfo.HistoryBytes {
		return res, fmt.Errorf("history: the deltas and shard versions kept for past versions take %d bytes, the compaction state says %d", res.history, pinfo.HistoryBytes)
	}

	// Every page reads back; page 1 agrees with the head.
	db, err := p.Open(ctx, name)
	if err != nil {
		return res, err
	}
	defer db.Close()
	snap, err := db.Snapshot(ctx)
	if err != nil {
		return res, err
	}
	defer snap.Close()
	sh := snap.Head()
	buf := make([]byte, max(sh.PageSize, 512))
	res.checksum, err = ltx.DatabaseChecksum(sh.PageSize, sh.Pages, func(pgno uint32) ([]byte, error) {
		if err := snap.ReadPage(ctx, pgno, buf); err != nil {
			return nil, fmt.Errorf("page %d at txid %d: %w", pgno, sh.TXID, err)
		}
		if pgno == 1 && !sh.Plain {
			// The header agrees with the head; its page count may not (a
			// truncated copy is stored as written, as on a local disk).
			if !bytes.HasPrefix(buf, []byte("SQLite format 3\x00")) {
				return nil, fmt.Errorf("page 1 at txid %d: no SQLite header in a database", sh.TXID)
			}
			if ps := uint32(binary.BigEndian.Uint16(buf[16:18])); ps != sh.PageSize && !(ps == 1 && sh.PageSize == 65536) {
				return nil, fmt.Errorf("page 1 at txid %d: SQLite page size %d, the head says %d", sh.TXID, ps, sh.PageSize)
			}
		}
		return buf[:sh.PageSize], nil
	})
	if err != nil {
		return res, err
	}
	res.head = sh
	return res, nil
}
