package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/kvfs/kvfs/pager"
)

func importCommand() command {
	return command{
		name:    "import",
		summary: "copy a SQLite database file into kvfs (no mount needed)",
		run:     runImport,
	}
}

// copyChunk is how much import and export move per read.
const copyChunk = 1 << 20

// sqliteHeader is what import learned from a file's first 100 bytes.
type sqliteHeader struct {
	PageSize uint32
	Pages    uint32 // file size / page size
}

// checkSQLiteFile validates a file's header against its size: the magic
// string, a power-of-two page size, a size that is a whole number of pages,
// the header's page count (when SQLite marks it valid), and rollback
// journal mode.
func checkSQLiteFile(hdr []byte, size int64) (sqliteHeader, error) {
	if size == 0 {
		return sqliteHeader{}, errors.New("the file is empty")
	}
	if len(hdr) < 100 || !bytes.Equal(hdr[:16], []byte("SQLite format 3\x00")) {
		return sqliteHeader{}, errors.New(`not a SQLite database (no "SQLite format 3" header)`)
	}
	ps := uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return sqliteHeader{}, fmt.Errorf("bad page size %d in the SQLite header", ps)
	}
	if size%int64(ps) != 0 {
		return sqliteHeader{}, fmt.Errorf("file size %d is not a whole number of %d-byte pages (truncated or damaged)", size, ps)
	}
	pages := size / int64(ps)
	if pages > 1<<32-2 {
		return sqliteHeader{}, fmt.Errorf("file too large: %d pages", pages)
	}
	if hdr[18] == 2 || hdr[19] == 2 {
		return sqliteHeader{}, errors.New("the database is in WAL mode, which kvfs does not serve yet: run sqlite3 FILE 'PRAGMA journal_mode=DELETE' first")
	}
	counter, validFor := binary.BigEndian.Uint32(hdr[24:28]), binary.BigEndian.Uint32(hdr[92:96])
	if n := binary.BigEndian.Uint32(hdr[28:32]); n != 0 && counter == validFor && int64(n) != pages {
		return sqliteHeader{}, fmt.Errorf("the SQLite header says %d pages but the file holds %d (truncated or damaged)", n, pages)
	}
	return sqliteHeader{PageSize: ps, Pages: uint32(pages)}, nil
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "import [flags] FILE DB",
		`Copies the SQLite database FILE into kvfs as database DB, in one transaction
under DB's write lease, without a mount: readers see the old contents or the
new, never a mix. FILE must be a valid SQLite database in a rollback-journal
mode (not WAL, no hot journal); while it is read kvfs holds a SQLite shared
lock on it, so a writer cannot change it underneath. An existing DB is
replaced only with --force (and keeps its page size). When a mount holds DB's
write lease, import asks it to hand the lease over and waits up to --wait.
DB is a path in the mount (tenant1/app.db); missing directories are made.
Progress goes to standard error: a bar on a terminal, plain lines otherwise.
`+storeFlagsHelp+`

Example:
  sqlite3 app.db 'create table t(x); insert into t values (1)'
  kvfs import --data-dir /var/lib/kvfs app.db app.db
  kvfs import --data-dir /var/lib/kvfs app.db tenant1/app.db`, stderr)
	cf := registerConfigFlags(fs, false)
	force := fs.Bool("force", false, "replace DB if it exists")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a mount holding DB's write lease to hand it over")
	cfg, pos, err := parseCommand(fs, cf, args, 2, 2)
	if err != nil {
		return err
	}
	file, name := pos[0], pos[1]

	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockShared(f); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if hotJournal(file + "-journal") {
		return fmt.Errorf("%s: %s-journal is a hot journal: open the database with sqlite3 once to roll back its unfinished transaction", file, file)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdrBuf := make([]byte, 100)
	n, _ := io.ReadFull(f, hdrBuf)
	hdr, err := checkSQLiteFile(hdrBuf[:n], st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}

	sess, p, err := openPager(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sess.close()
	defer p.Close()
	ns, err := sess.namespace(ctx)
	if err != nil {
		return err
	}
	created := false
	// A new database gets the file's mode and the importing user.
	attrs := pager.Attrs{Mode: uint32(st.Mode().Perm()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if parent := path.Dir(name); parent != "." && parent != "/" {
		// The directories the path names, as mkdir -p.
		dirAttrs := attrs
		dirAttrs.Mode = 0o755
		if _, err := ns.MkdirAll(ctx, parent, dirAttrs); err != nil {
			return err
		}
	}
	switch _, err := ns.CreatePath(ctx, name, attrs); {
	case err == nil:
		created = true
	case errors.Is(err, pager.ErrExists):
		if !*force {
			return fmt.Errorf("database %s exists: use --force to replace it", name)
		}
	default:
		return err
	}
	dir, base, e, err := ns.Resolve(ctx, name)
	if err != nil {
		return err
	}
	if e.Dir {
		return fmt.Errorf("%s: %w", name, pager.ErrIsDir)
	}
	fm := sess.fence("import")
	defer fm.Close(context.Background())
	lease, err := acquire(ctx, fm, e.ID, name, *wait)
	if err != nil {
		return err
	}
	defer lease.Release(context.Background())
	info, err := importFile(ctx, p, lease, name, e.ID, f, hdr, newProgress(stderr, "import "+name, st.Size()))
	if err != nil {
		if created {
			// Leave no empty database behind.
			if rerr := p.Unlink(context.Background(), dir, base, e.ID, lease); rerr != nil {
				sess.log.Warn("remove the database created for the failed import", "db", name, "err", rerr)
			}
		}
		return err
	}
	fmt.Fprintf(stdout, "imported %s into %s: %d pages of %d bytes, txid %d, generation %d (%d etcd transactions)\n",
		file, name, info.Head.Pages, info.Head.PageSize, info.Head.TXID, info.Head.Generation, info.Txns)
	return nil
}

// importFile writes the whole of f as database id (at path name) in one
// transaction.
func importFile(ctx context.Context, p *pager.Pager, lease pager.Fence, name, id string, f *os.File, hdr sqliteHeader, prog *progress) (pager.CommitInfo, error) {
	size := int64(hdr.Pages) * int64(hdr.PageSize)
	read := func(_ context.Context, b []byte, off int64) (int, error) { return f.ReadAt(b, off) }
	// Check the header again under the shared lock: the file may have
	// changed between the header check and the lock.
	check := func(first []byte) error {
		_, err := checkSQLiteFile(first, size)
		return err
	}
	return copyIn(ctx, p, lease, name, id, read, size, hdr.PageSize, check, prog)
}

// copyIn makes the first size bytes read from src the whole content of
// database id (at path name), in one transaction under lease; check, when
// not nil, vets the first chunk read before anything is written.
func copyIn(ctx context.Context, p *pager.Pager, lease pager.Fence, name, id string,
	src func(ctx context.Context, b []byte, off int64) (int, error), size int64, pageSize uint32,
	check func(first []byte) error, prog *progress) (pager.CommitInfo, error) {
	db, err := p.Open(ctx, id)
	if err != nil {
		return pager.CommitInfo{}, err
	}
	defer db.Close()
	if ps := db.Head().PageSize; ps != 0 && ps != pageSize {
		return pager.CommitInfo{}, fmt.Errorf("database %s has %d-byte pages and the file %d-byte pages: kvfs cannot change a database's page size; kvfs rm it first", name, ps, pageSize)
	}
	if err := db.Acquire(ctx, lease); err != nil {
		return pager.CommitInfo{}, err
	}
	defer db.Release()
	tx, err := db.Begin(ctx)
	if err != nil {
		return pager.CommitInfo{}, err
	}
	defer tx.Rollback()
	chunk := int64(copyChunk)
	if ps := int64(pageSize); ps > 0 {
		chunk = max(chunk-chunk%ps, ps)
	}
	buf := make([]byte, chunk)
	for off := int64(0); off < size; {
		n, err := src(ctx, buf[:min(chunk, size-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size-off) {
			return pager.CommitInfo{}, fmt.Errorf("read at %d: %w", off, err)
		}
		if off == 0 && check != nil {
			if err := check(buf[:n]); err != nil {
				return pager.CommitInfo{}, err
			}
		}
		if _, err := tx.WriteAt(ctx, buf[:n], off); err != nil {
			return pager.CommitInfo{}, fmt.Errorf("write at %d: %w", off, err)
		}
		off += int64(n)
		prog.Add(int64(n))
	}
	if tx.Size() > size {
		if err := tx.Truncate(ctx, size); err != nil {
			return pager.CommitInfo{}, err
		}
	}
	info, err := tx.Commit(ctx)
	if err != nil {
		return pager.CommitInfo{}, err
	}
	prog.Done(fmt.Sprintf("%d pages committed as txid %d", info.Head.Pages, info.Head.TXID))
	return info, nil
}

// lockShared takes a SQLite SHARED lock on f (a POSIX read lock on the
// shared byte range), so no SQLite writer can commit to it while kvfs reads.
// The lock goes when f is closed.
func lockShared(f *os.File) error {
	const sharedFirst, sharedSize = 0x40000002, 510
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: 0, Start: sharedFirst, Len: sharedSize}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return errors.New("a SQLite writer holds the database locked; try again when it is done")
		}
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// hotJournal reports whether path is a rollback journal with a live header
// (a PERSIST-mode journal whose header is zeroed, or none, is not hot).
func hotJournal(path string) bool {
	j, err := os.Open(path)
	if err != nil {
		return false
	}
	defer j.Close()
	magic := make([]byte, 8)
	if _, err := io.ReadFull(j, magic); err != nil {
		return false
	}
	return bytes.Equal(magic, []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7})
}
