package fuse

import (
	"bytes"
	"context"
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
func (s *sideNode) isSuper() bool { return isSuperName(s.name) }

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

// superChildren returns the databases of this mount whose journals the
// super-journal lists: NUL-terminated full paths.
func (s *sideNode) superChildren(mntPaths []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.NewSectionReader(s.f, 0, s.sizeLocked()))
	if err != nil {
		return nil, fmt.Errorf("read super-journal %s: %w", s.name, err)
	}
	var dbs []string
	for _, p := range bytes.Split(data, []byte{0}) {
		path := string(p)
		if path == "" || !slices.Contains(mntPaths, filepath.Dir(path)) {
			continue
		}
		base := filepath.Base(path)
		if db, ok := isSide(base); ok && strings.HasSuffix(base, "-journal") && !slices.Contains(dbs, db) {
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return dbs, nil
}

// commitSuper commits, at the deletion of super-journal s, the open
// transactions of the databases it lists, atomically.
func (fsys *FS) commitSuper(ctx context.Context, s *sideNode) error {
	names, err := s.superChildren(fsys.mntPaths)
	if err != nil {
		return err
	}
	var ds []*dbNode
	fsys.mu.Lock()
	for _, name := range names { // sorted: the locks below in name order
		if d := fsys.dbs[name]; d != nil {
			ds = append(ds, d)
		}
	}
	fsys.mu.Unlock()
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
	_, err = pager.CommitAll(ctx, txs...)
	for _, d := range owners {
		d.afterCommitLocked(ctx, "super-journal deleted", err)
	}
	if err == nil {
		fsys.log.Debug("multi-database commit", "super", s.name, "dbs", names)
	}
	return err
}
