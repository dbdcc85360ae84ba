package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvfs/kvfs/pager"
)

// A transaction over ATTACHed databases: SQLite writes each database's
// journal as usual and, before any database file, a super-journal beside
// the main database (<db>-mjXXXXXX9XX) listing the child journals by full
// path. Once every journal and database file is synced it deletes the
// super-journal — the commit point of the whole transaction — and then
// ends each child journal (deletes, truncates or zeroes it). A crash
// before the deletion rolls every database back (the child journals are
// hot and name an existing super-journal); after it, none (a child journal
// whose super-journal is gone is stale).
//
// kvfs commits, at the super-journal's deletion, the open transactions of
// every database of this mount that it lists, in one etcd transaction
// (pager.CommitAll): every host sees all of the databases' new versions or
// none, which is more than SQLite promises on a local disk (there a
// reader can see one database's commit before another's). The child
// journals' own ends then find nothing left to commit. A child on another
// filesystem commits there on its own terms.

// isSuper reports whether s is a super-journal.
func (s *sideNode) isSuper() bool { return isSuperName(s.name()) }

// isSuperName reports whether name is a super-journal's.
func isSuperName(name string) bool {
	loc := sideSuffix.FindStringIndex(name)
	return loc != nil && strings.HasPrefix(name[loc[0]:], "-mj")
}

// mountPaths returns mountpoint as an absolute path, and with symlinks
// resolved when that differs.
func mountPaths(mountpoint string) []string {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return []string{filepath.Clean(mountpoint)}
	}
	paths := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		paths = append(paths, real)
	}
	return paths
}

// superChildren returns the paths in this mount (relative to its root) of
// the databases whose journals the super-journal lists: NUL-terminated
// full paths.
func (s *sideNode) superChildren(mntPaths []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.NewSectionReader(s.f, 0, s.sizeLocked()))
	if err != nil {
		return nil, fmt.Errorf("read super-journal %s: %w", s.name(), err)
	}
	var dbs []string
	for _, p := range bytes.Split(data, []byte{0}) {
		rel, ok := relToMount(string(p), mntPaths)
		if !ok {
			continue
		}
		if db, ok := strings.CutSuffix(rel, "-journal"); ok && !slices.Contains(dbs, db) {
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return dbs, nil
}

// relToMount returns path relative to the mount's root when it lies in
// the mount (as one of mntPaths, the mountpoint's absolute paths).
func relToMount(path string, mntPaths []string) (string, bool) {
	for _, m := range mntPaths {
		if rel, ok := strings.CutPrefix(path, m+"/"); ok && rel != "" {
			return rel, true
		}
	}
	return "", false
}

// journalMagic ends a rollback journal's super-journal pointer (and starts
// every journal header).
var journalMagic = []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}

// pointsTo reports whether journal j ends with a pointer to the
// super-journal at path super (relative to the mount's root): SQLite appends the
// super-journal's full path, its length, a checksum and the journal magic
// to each child journal before it deletes the super-journal. Only such a
// child's open transaction belongs to the super-journal's.
func (j *sideNode) pointsTo(super string, mntPaths []string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	size := j.sizeLocked()
	if j.f == nil || size < 16 {
		return false
	}
	var tail [16]byte
	if _, err := j.f.ReadAt(tail[:], size-16); err != nil || !bytes.Equal(tail[8:], journalMagic) {
		return false
	}
	n := int64(binary.BigEndian.Uint32(tail[:4]))
	if n <= 0 || n > 4096 || size-16-n < 0 {
		return false
	}
	name := make([]byte, n)
	if _, err := j.f.ReadAt(name, size-16-n); err != nil {
		return false
	}
	rel, ok := relToMount(string(name), mntPaths)
	return ok && rel == super
}

// commitSuper commits, at the deletion of super-journal s, the open
// transactions of the databases it lists whose journals point back to it,
// atomically.
func (fsys *FS) commitSuper(ctx context.Context, s *sideNode) error {
	paths, err := s.superChildren(fsys.mntPaths)
	if err != nil {
		return err
	}
	super := s.path()
	var ds []*dbNode
	for _, path := range paths {
		d := fsys.openedAt(path)
		if d == nil {
			continue
		}
		if j := d.side("-journal"); j == nil || !j.pointsTo(super, fsys.mntPaths) {
			fsys.log.Warn("super-journal names a database whose journal does not point back to it; left to its own commit point",
				"super", super, "db", path)
			continue
		}
		ds = append(ds, d)
	}
	// In id order, as groups apply (groupapply.go): no two deadlock.
	slices.SortFunc(ds, func(a, b *dbNode) int { return strings.Compare(a.name, b.name) })
	for _, d := range ds {
		d.mu.Lock()
		defer d.mu.Unlock()
	}
	var txs []*pager.Tx
	var owners []*dbNode
	for _, d := range ds {
		if tx := d.takeTxLocked(); tx != nil {
			txs, owners = append(txs, tx), append(owners, d)
		}
	}
	if len(txs) == 0 {
		return nil
	}
	fsys.failpoint("super-journal-commit")
	_, err = pager.CommitAll(ctx, txs...)
	if err == nil {
		fsys.failpoint("super-journal-committed")
	}
	for _, d := range owners {
		d.afterCommitLocked(ctx, "super-journal deleted", err)
	}
	if err == nil {
		fsys.log.Debug("multi-database commit", "super", super, "dbs", paths)
	}
	return err
}

// failpoint calls Options.Failpoint, if set.
func (fsys *FS) failpoint(name string) {
	if fsys.opts.Failpoint != nil {
		fsys.opts.Failpoint(name)
	}
}
