package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kvfs/kvfs/ltx"
	"github.com/kvfs/kvfs/pager"
)

func exportCommand() command {
	return command{
		name:    "export",
		summary: "copy a database out of kvfs into a SQLite file (no mount needed)",
		run:     runExport,
	}
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "export [flags] DB FILE",
		`Writes database DB, as of its latest commit, to the SQLite file FILE ("-" for
standard output), without a mount. The copy comes from one pinned snapshot, so
commits landing meanwhile are not mixed in. FILE is written beside itself and
renamed into place after fsync; an existing FILE is replaced only with --force.
Prints the txid exported and the LTX database checksum (the one 'kvfs verify'
prints). Progress goes to standard error: a bar on a terminal, plain lines
otherwise.
`+storeFlagsHelp+`

Example:
  kvfs export --data-dir /var/lib/kvfs app.db /backup/app.db
  sqlite3 /backup/app.db 'pragma integrity_check'`, stderr)
	cf := registerConfigFlags(fs, false)
	force := fs.Bool("force", false, "replace FILE if it exists")
	cfg, pos, err := parseCommand(fs, cf, args, 2, 2)
	if err != nil {
		return err
	}
	name, file := pos[0], pos[1]
	if file != "-" && !*force {
		if _, err := os.Lstat(file); err == nil {
			return fmt.Errorf("%s exists: use --force to replace it", file)
		}
	}

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
	snap, err := db.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	head := snap.Head()

	var (
		w   io.Writer = stdout
		tmp *os.File
	)
	if file != "-" {
		tmp, err = os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".kvfs-export-*")
		if err != nil {
			return err
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	sum, err := exportSnapshot(ctx, snap, w, newProgress(stderr, "export "+name, head.Size()))
	if err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Chmod(0o644); err != nil {
			return err
		}
		if err := tmp.Sync(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), file); err != nil {
			return err
		}
		tmp = nil
		if d, err := os.Open(filepath.Dir(file)); err == nil {
			d.Sync()
			d.Close()
		}
		fmt.Fprintf(stdout, "exported %s txid %d (%d pages of %d bytes) to %s, checksum %016x\n",
			name, head.TXID, head.Pages, head.PageSize, file, uint64(sum))
	} else {
		fmt.Fprintf(stderr, "exported %s txid %d (%d pages of %d bytes), checksum %016x\n",
			name, head.TXID, head.Pages, head.PageSize, uint64(sum))
	}
	return nil
}

// exportSnapshot writes every page of snap to w and returns the database's
// LTX checksum.
func exportSnapshot(ctx context.Context, snap *pager.Snapshot, w io.Writer, prog *progress) (ltx.Checksum, error) {
	head := snap.Head()
	var sum ltx.Checksum
	if head.Pages == 0 {
		prog.Done("empty database")
		return ltx.UpdateChecksum(0, 1, nil, nil), nil
	}
	ps := int(head.PageSize)
	per := max(copyChunk/ps, 1)
	buf := make([]byte, per*ps)
	for first := uint32(1); first <= head.Pages; first += uint32(per) {
		n := min(uint32(per), head.Pages-first+1)
		chunk := buf[:int(n)*ps]
		off := int64(first-1) * int64(ps)
		got, err := snap.ReadAt(ctx, chunk, off)
		if err != nil && !(err == io.EOF && off+int64(got) == head.Size()) {
			return 0, fmt.Errorf("read pages %d-%d: %w", first, first+n-1, err)
		}
		clear(chunk[got:]) // a plain file's last page, past its size
		for i := uint32(0); i < n; i++ {
			sum = ltx.UpdateChecksum(sum, first+i, nil, chunk[int(i)*ps:int(i+1)*ps])
		}
		if _, err := w.Write(chunk[:got]); err != nil {
			return 0, err
		}
		prog.Add(int64(got))
	}
	prog.Done(fmt.Sprintf("%d pages at txid %d", head.Pages, head.TXID))
	return sum, nil
}
