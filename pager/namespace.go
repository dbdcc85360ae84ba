package pager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// The namespace (key schema 2): names live in directories, apart from the
// data they name. A directory's names are keys ns/<dir id>/<name>, each
// holding the Entry of a database or a directory; a database's data stays
// under db/<id>/ whatever its name, so that a rename is one transaction
// over two ns/ keys, and a directory lists with one range read. The root
// directory is RootDir; every other directory has a record at dir/<id>
// (its parent, mode and owner). Databases created before the namespace
// keep their names as ids (Upgrade).

// RootDir is the id of the mount's root directory.
const RootDir = "0"

// schemaVersion is the value of Keys.Schema once Upgrade has run.
const schemaVersion = "2"

// Entry is what a name in a directory stands for: a database or a
// directory, by id. It is stored as JSON with the id escaped
// (url.PathEscape): the id of a database from before the namespace is its
// name, which may hold bytes that are not UTF-8.
type Entry struct {
	ID  string
	Dir bool
}

type storedEntry struct {
	ID  string `json:"id"`
	Dir bool   `json:"dir,omitempty"`
}

func (e Entry) marshal() []byte {
	return marshalJSON(storedEntry{ID: url.PathEscape(e.ID), Dir: e.Dir})
}

// DirEntry is one name of a directory listing.
type DirEntry struct {
	Name string
	Entry
}

// dirRecord is a directory's record at Keys.Dir.
type dirRecord struct {
	Parent string `json:"parent"`
	Attrs  Attrs  `json:"attrs"`
}

func parseEntry(b []byte) (Entry, error) {
	var se storedEntry
	if err := json.Unmarshal(b, &se); err != nil || se.ID == "" {
		return Entry{}, fmt.Errorf("parse directory entry %q: %w", b, ErrCorrupt)
	}
	id, err := url.PathUnescape(se.ID)
	if err != nil {
		return Entry{}, fmt.Errorf("parse directory entry %q: %w", b, ErrCorrupt)
	}
	return Entry{ID: id, Dir: se.Dir}, nil
}

// newID returns a fresh id: 16 random hex digits. Creation compares its
// keys absent, so a collision fails that transaction and is retried.
func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// Lookup returns the entry of name in directory dir and its mod revision.
// It returns ErrNotFound when there is none.
func (p *Pager) Lookup(ctx context.Context, dir, name string) (Entry, int64, error) {
	kv, _, err := p.store.Get(ctx, p.keys.Entry(dir, name), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return Entry{}, 0, fmt.Errorf("lookup %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Entry{}, 0, fmt.Errorf("lookup %q: %w", name, err)
	}
	e, err := parseEntry(kv.Value)
	return e, kv.ModRevision, err
}

// readDirPage is how many names ReadDir fetches per etcd request: 10,000
// entries are about 1 MiB.
const readDirPage = 10_000

// ReadDir returns the names of directory dir in byte order, with one range
// read for up to readDirPage of them.
func (p *Pager) ReadDir(ctx context.Context, dir string) ([]DirEntry, error) {
	prefix := p.keys.Entries(dir)
	var out []DirEntry
	_, err := p.store.Range(ctx, prefix, etcdstore.RangeOptions{PageSize: readDirPage}, func(kv *etcdstore.KeyValue) error {
		e, err := parseEntry(kv.Value)
		if err != nil {
			return err
		}
		out = append(out, DirEntry{Name: kv.Key[len(prefix):], Entry: e})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return out, nil
}

// DirAttrs returns directory dir's attributes (RootAttrs for RootDir).
func (p *Pager) DirAttrs(ctx context.Context, dir string) (Attrs, error) {
	if dir == RootDir {
		return p.RootAttrs(ctx)
	}
	rec, _, err := p.dirRecord(ctx, dir)
	return rec.Attrs, err
}

// dirRecord reads directory id's record and its create revision (0 for
// RootDir, which has none).
func (p *Pager) dirRecord(ctx context.Context, id string) (dirRecord, int64, error) {
	if id == RootDir {
		return dirRecord{Attrs: DefaultRootAttrs}, 0, nil
	}
	kv, _, err := p.store.Get(ctx, p.keys.Dir(id), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return dirRecord{}, 0, fmt.Errorf("directory %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return dirRecord{}, 0, fmt.Errorf("directory %s: %w", id, err)
	}
	var rec dirRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return rec, 0, fmt.Errorf("directory %s: %q: %w", id, kv.Value, ErrCorrupt)
	}
	return rec, kv.CreateRevision, nil
}

// dirExists is the compare that directory id still exists (created at
// rev, as dirRecord read it); none for the root.
func (p *Pager) dirExists(id string, rev int64) []etcdstore.Cmp {
	if id == RootDir {
		return nil
	}
	return []etcdstore.Cmp{etcdstore.CmpCreateRevision(p.keys.Dir(id), rev)}
}

// CreateIn creates an empty database named name in directory dir, with
// attributes a, and returns its entry. It returns ErrExists when the name
// is taken, ErrNotFound when dir is gone, an error matching
// etcdstore.ErrInvalidName for a bad name.
func (p *Pager) CreateIn(ctx context.Context, dir, name string, a Attrs) (Entry, error) {
	return p.createEntry(ctx, dir, name, a, false)
}

// Mkdir creates directory name in directory dir, with attributes a, and
// returns its entry. Errors as CreateIn.
func (p *Pager) Mkdir(ctx context.Context, dir, name string, a Attrs) (Entry, error) {
	return p.createEntry(ctx, dir, name, a, true)
}

func (p *Pager) createEntry(ctx context.Context, dir, name string, a Attrs, isDir bool) (Entry, error) {
	if err := etcdstore.ValidateName(name); err != nil {
		return Entry{}, err
	}
	if a.Mode&^0o7777 != 0 {
		return Entry{}, fmt.Errorf("create %q: mode %#o: %w", name, a.Mode, ErrInvalidWrite)
	}
	_, dirRev, err := p.dirRecord(ctx, dir)
	if err != nil {
		return Entry{}, fmt.Errorf("create %q: %w", name, err)
	}
	now := time.Now().UnixMilli()
	a.Changed = now
	for attempt := 0; ; attempt++ {
		e := Entry{ID: newID(), Dir: isDir}
		entryKey := p.keys.Entry(dir, name)
		cmps := append(p.dirExists(dir, dirRev), etcdstore.CmpAbsent(entryKey))
		ops := []etcdstore.Op{etcdstore.OpPut(entryKey, e.marshal())}
		if isDir {
			cmps = append(cmps, etcdstore.CmpAbsent(p.keys.Dir(e.ID)))
			ops = append(ops, etcdstore.OpPut(p.keys.Dir(e.ID), marshalJSON(dirRecord{Parent: dir, Attrs: a})))
		} else {
			cmps = append(cmps, etcdstore.CmpAbsent(p.keys.Head(e.ID)))
			ops = append(ops,
				etcdstore.OpPut(p.keys.Head(e.ID), Head{Timestamp: now}.marshal()),
				etcdstore.OpPut(p.keys.Attrs(e.ID), a.marshal()))
		}
		_, err := p.store.Txn(ctx, cmps, ops)
		var ce *etcdstore.CompareError
		switch {
		case err == nil:
			return e, nil
		case !errors.As(err, &ce):
			return Entry{}, fmt.Errorf("create %q: %w", name, err)
		case ce.Current[entryKey] != nil:
			return Entry{}, fmt.Errorf("create %q: %w", name, ErrExists)
		case dir != RootDir && ce.Current[p.keys.Dir(dir)] == nil:
			return Entry{}, fmt.Errorf("create %q: directory %s: %w", name, dir, ErrNotFound)
		case attempt == 3:
			return Entry{}, fmt.Errorf("create %q: %w", name, err)
		}
		// The new id was taken (or the parent moved): try another.
	}
}

// Rmdir removes the empty directory name of directory dir. It returns
// ErrNotEmpty when it has names, ErrNotDir for a database, ErrNotFound when
// there is no such name.
func (p *Pager) Rmdir(ctx context.Context, dir, name string) error {
	e, rev, err := p.Lookup(ctx, dir, name)
	if err != nil {
		return fmt.Errorf("rmdir: %w", err)
	}
	if !e.Dir {
		return fmt.Errorf("rmdir %q: %w", name, ErrNotDir)
	}
	entryKey := p.keys.Entry(dir, name)
	_, err = p.store.Txn(ctx,
		[]etcdstore.Cmp{etcdstore.CmpModRevision(entryKey, rev), etcdstore.CmpPrefixEmpty(p.keys.Entries(e.ID))},
		[]etcdstore.Op{etcdstore.OpDelete(entryKey), etcdstore.OpDelete(p.keys.Dir(e.ID))})
	var ce *etcdstore.CompareError
	if errors.As(err, &ce) {
		if cur := ce.Current[entryKey]; cur == nil || cur.ModRevision != rev {
			return fmt.Errorf("rmdir %q: %w", name, ErrNotFound)
		}
		return fmt.Errorf("rmdir %q: %w", name, ErrNotEmpty)
	}
	if err != nil {
		return fmt.Errorf("rmdir %q: %w", name, err)
	}
	return nil
}

// dirEmpty reports whether directory id has no names (false when etcd
// cannot say).
func (p *Pager) dirEmpty(ctx context.Context, id string) bool {
	errFound := errors.New("found")
	_, err := p.store.Range(ctx, p.keys.Entries(id), etcdstore.RangeOptions{KeysOnly: true, PageSize: 1}, func(*etcdstore.KeyValue) error {
		return errFound
	})
	return err == nil
}

// Unlink removes database id, named name in directory dir, and all its
// data, in one transaction fenced by f (the database's write lease). It
// returns ErrIsDir for a directory, ErrNotFound when the name is gone or
// names another database now.
func (p *Pager) Unlink(ctx context.Context, dir, name, id string, f Fence) error {
	e, rev, err := p.Lookup(ctx, dir, name)
	if err != nil {
		return fmt.Errorf("unlink: %w", err)
	}
	if e.Dir {
		return fmt.Errorf("unlink %q: %w", name, ErrIsDir)
	}
	if e.ID != id {
		return fmt.Errorf("unlink %q: %w", name, ErrNotFound)
	}
	cmps, err := f.Cmps()
	if err != nil {
		return fmt.Errorf("unlink %q: %w: %w", name, ErrFenced, err)
	}
	entryKey := p.keys.Entry(dir, name)
	_, err = p.store.Txn(ctx, append(cmps, etcdstore.CmpModRevision(entryKey, rev)),
		[]etcdstore.Op{etcdstore.OpDelete(entryKey), etcdstore.OpDeletePrefix(p.keys.DB(e.ID))})
	var ce *etcdstore.CompareError
	if errors.As(err, &ce) {
		if cur := ce.Current[entryKey]; cur == nil || cur.ModRevision != rev {
			return fmt.Errorf("unlink %q: %w", name, ErrConflict)
		}
		return fmt.Errorf("unlink %q: %w: %w", name, ErrFenced, err)
	}
	if err != nil {
		return fmt.Errorf("unlink %q: %w", name, err)
	}
	p.forget(e.ID)
	return nil
}

// SetDirAttrs stores a as directory id's attributes (SetRootAttrs for
// RootDir), with a.Changed set to now, and returns what it stored.
func (p *Pager) SetDirAttrs(ctx context.Context, id string, a Attrs) (Attrs, error) {
	if id == RootDir {
		return p.SetRootAttrs(ctx, a)
	}
	if a.Mode&^0o7777 != 0 {
		return Attrs{}, fmt.Errorf("set attributes of directory %s: mode %#o: %w", id, a.Mode, ErrInvalidWrite)
	}
	for attempt := 0; attempt < 4; attempt++ {
		kv, _, err := p.store.Get(ctx, p.keys.Dir(id), 0)
		if errors.Is(err, etcdstore.ErrNotFound) {
			return Attrs{}, fmt.Errorf("directory %s: %w", id, ErrNotFound)
		} else if err != nil {
			return Attrs{}, fmt.Errorf("directory %s: %w", id, err)
		}
		var rec dirRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return Attrs{}, fmt.Errorf("directory %s: %w", id, ErrCorrupt)
		}
		a.Changed = time.Now().UnixMilli()
		rec.Attrs = a
		_, err = p.store.Txn(ctx, []etcdstore.Cmp{etcdstore.CmpModRevision(p.keys.Dir(id), kv.ModRevision)},
			[]etcdstore.Op{etcdstore.OpPut(p.keys.Dir(id), marshalJSON(rec))})
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, etcdstore.ErrCompareFailed) {
			return Attrs{}, fmt.Errorf("directory %s: %w", id, err)
		}
	}
	return Attrs{}, fmt.Errorf("directory %s: %w", id, ErrConflict)
}

// Resolve returns the directory and name of path (names separated by
// '/', relative to the root; "" is the root itself, as name "" of
// RootDir) and what it names. It returns ErrNotFound when a component is
// missing and ErrNotDir when one before the last is a database.
func (p *Pager) Resolve(ctx context.Context, path string) (dir, name string, e Entry, err error) {
	parts := splitPath(path)
	if len(parts) == 0 {
		return RootDir, "", Entry{ID: RootDir, Dir: true}, nil
	}
	dir = RootDir
	for i, part := range parts {
		e, _, err = p.Lookup(ctx, dir, part)
		if errors.Is(err, ErrNotFound) {
			return "", "", Entry{}, fmt.Errorf("%s: %w", path, ErrNotFound)
		} else if err != nil {
			return "", "", Entry{}, fmt.Errorf("%s: %w", path, err)
		}
		if i == len(parts)-1 {
			return dir, part, e, nil
		}
		if !e.Dir {
			return "", "", Entry{}, fmt.Errorf("%s: %s: %w", path, part, ErrNotDir)
		}
		dir = e.ID
	}
	panic("unreachable")
}

// splitPath returns the non-empty names of path.
func splitPath(path string) []string {
	var parts []string
	for _, part := range strings.Split(path, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	return parts
}

// CreatePath creates an empty database at path (its directory must
// exist), with attributes a, and returns its entry. Errors as CreateIn.
func (p *Pager) CreatePath(ctx context.Context, path string, a Attrs) (Entry, error) {
	parts := splitPath(path)
	if len(parts) == 0 {
		return Entry{}, fmt.Errorf("create %q: %w", path, ErrIsDir)
	}
	dir := RootDir
	if len(parts) > 1 {
		_, _, e, err := p.Resolve(ctx, strings.Join(parts[:len(parts)-1], "/"))
		if err != nil {
			return Entry{}, fmt.Errorf("create: %w", err)
		}
		if !e.Dir {
			return Entry{}, fmt.Errorf("create %q: %w", path, ErrNotDir)
		}
		dir = e.ID
	}
	return p.CreateIn(ctx, dir, parts[len(parts)-1], a)
}

// MkdirAll makes directory path and any missing parents, with attributes
// a, and returns its id (mkdir -p). It returns ErrNotDir when a component
// is a database.
func (p *Pager) MkdirAll(ctx context.Context, path string, a Attrs) (string, error) {
	dir := RootDir
	for _, part := range splitPath(path) {
		e, _, err := p.Lookup(ctx, dir, part)
		if errors.Is(err, ErrNotFound) {
			e, err = p.Mkdir(ctx, dir, part, a)
			if errors.Is(err, ErrExists) { // made meanwhile
				e, _, err = p.Lookup(ctx, dir, part)
			}
		}
		if err != nil {
			return "", fmt.Errorf("mkdir %s: %w", path, err)
		}
		if !e.Dir {
			return "", fmt.Errorf("mkdir %s: %s: %w", path, part, ErrNotDir)
		}
		dir = e.ID
	}
	return dir, nil
}

// DatabasePath is a database found by Walk: its path and id.
type DatabasePath struct {
	Path string
	ID   string
}

// Walk returns every database under directory path ("" for all), in path
// order, with one range read per directory.
func (p *Pager) Walk(ctx context.Context, path string) ([]DatabasePath, error) {
	_, _, e, err := p.Resolve(ctx, path)
	if err != nil {
		return nil, err
	}
	prefix := strings.Join(splitPath(path), "/")
	if !e.Dir {
		return []DatabasePath{{Path: prefix, ID: e.ID}}, nil
	}
	var out []DatabasePath
	var walk func(dir, prefix string) error
	walk = func(dir, prefix string) error {
		ents, err := p.ReadDir(ctx, dir)
		if err != nil {
			return err
		}
		for _, d := range ents {
			path := d.Name
			if prefix != "" {
				path = prefix + "/" + d.Name
			}
			if d.Dir {
				if err := walk(d.ID, path); err != nil {
					return err
				}
			} else {
				out = append(out, DatabasePath{Path: path, ID: d.ID})
			}
		}
		return nil
	}
	return out, walk(e.ID, prefix)
}

// WatchNames calls fn with the directory and name of every name that is
// created, changed (renamed over) or removed (gone), by any host, from now
// until ctx ends, with what the name stood for after that change (zero
// when gone, or when the stored entry does not parse). After an etcd
// failure it watches again from then on: a change missed meanwhile is not
// reported.
func (p *Pager) WatchNames(ctx context.Context, fn func(dir, name string, e Entry, gone bool)) {
	prefix := p.keys.Namespace()
	for ctx.Err() == nil {
		for b := range p.store.Watch(ctx, prefix, 0) {
			if b.Err != nil {
				p.log.Warn("watch directory names", "err", b.Err)
				break
			}
			for _, ev := range b.Events {
				if dir, name, ok := strings.Cut(ev.KV.Key[len(prefix):], "/"); ok {
					gone := ev.Type == etcdstore.EventDelete
					var e Entry
					if !gone {
						e, _ = parseEntry(ev.KV.Value)
					}
					fn(dir, name, e, gone)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// forget marks the open database id removed: its handles fail.
func (p *Pager) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if db := p.dbs[id]; db != nil {
		db.markRemoved()
	}
}

// Rename moves name of directory dir to newName of directory newDir, in one
// etcd transaction: every reader sees the old name or the new one, never
// both or neither. A database or an empty directory already at the new
// name is replaced: a database's data is deleted in the same transaction,
// fenced by victim (its write lease; nil when the new name is free or a
// directory). It returns ErrNotFound (no such name, or newDir gone),
// ErrIsDir or ErrNotDir (a database over a directory or the other way),
// ErrNotEmpty, ErrMoveIntoSelf, ErrFenced, and ErrConflict when the names
// kept changing underneath it.
func (p *Pager) Rename(ctx context.Context, dir, name, newDir, newName string, victim Fence) error {
	if err := etcdstore.ValidateName(newName); err != nil {
		return err
	}
	for attempt := 0; attempt < 4; attempt++ {
		err := p.renameOnce(ctx, dir, name, newDir, newName, victim)
		if !errors.Is(err, errRetry) {
			return err
		}
	}
	return fmt.Errorf("rename %q: %w", name, ErrConflict)
}

// errRetry: a namespace key Rename read changed before its transaction.
var errRetry = errors.New("namespace changed: retry")

func (p *Pager) renameOnce(ctx context.Context, dir, name, newDir, newName string, victim Fence) error {
	e, rev, err := p.Lookup(ctx, dir, name)
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	if dir == newDir && name == newName {
		return nil
	}
	oldKey, newKey := p.keys.Entry(dir, name), p.keys.Entry(newDir, newName)
	cmps := []etcdstore.Cmp{etcdstore.CmpModRevision(oldKey, rev)}
	ops := []etcdstore.Op{etcdstore.OpDelete(oldKey), etcdstore.OpPut(newKey, e.marshal())}

	// The new name: free, or replaced.
	v, vrev, err := p.Lookup(ctx, newDir, newName)
	switch {
	case errors.Is(err, ErrNotFound):
		cmps = append(cmps, etcdstore.CmpAbsent(newKey))
	case err != nil:
		return fmt.Errorf("rename: %w", err)
	case v.ID == e.ID:
		return nil
	case e.Dir && !v.Dir:
		return fmt.Errorf("rename %q over %q: %w", name, newName, ErrNotDir)
	case !e.Dir && v.Dir:
		return fmt.Errorf("rename %q over %q: %w", name, newName, ErrIsDir)
	case v.Dir:
		cmps = append(cmps, etcdstore.CmpModRevision(newKey, vrev), etcdstore.CmpPrefixEmpty(p.keys.Entries(v.ID)))
		ops = append(ops, etcdstore.OpDelete(p.keys.Dir(v.ID)))
	default:
		if victim == nil {
			return fmt.Errorf("rename %q over %q: %w", name, newName, ErrFenced)
		}
		fc, err := victim.Cmps()
		if err != nil {
			return fmt.Errorf("rename %q over %q: %w: %w", name, newName, ErrFenced, err)
		}
		cmps = append(append(cmps, fc...), etcdstore.CmpModRevision(newKey, vrev))
		ops = append(ops, etcdstore.OpDeletePrefix(p.keys.DB(v.ID)))
	}

	// The new directory exists, and a directory moves to a new parent
	// only out of its own subtree.
	if newDir != dir {
		rec, recRev, err := p.dirRecord(ctx, newDir)
		if err != nil {
			return fmt.Errorf("rename %q: %w", name, err)
		}
		cmps = append(cmps, p.dirExists(newDir, recRev)...)
		if e.Dir {
			for up, r := newDir, rec; up != RootDir; {
				if up == e.ID {
					return fmt.Errorf("rename %q: %w", name, ErrMoveIntoSelf)
				}
				kv, _, err := p.store.Get(ctx, p.keys.Dir(up), 0)
				if err != nil {
					return fmt.Errorf("rename %q: directory %s: %w", name, up, err)
				}
				cmps = append(cmps, etcdstore.CmpModRevision(p.keys.Dir(up), kv.ModRevision))
				if err := json.Unmarshal(kv.Value, &r); err != nil {
					return fmt.Errorf("rename %q: directory %s: %w", name, up, ErrCorrupt)
				}
				up = r.Parent
			}
			own, ownRev, err := p.dirRecord(ctx, e.ID)
			if err != nil {
				return fmt.Errorf("rename %q: %w", name, err)
			}
			own.Parent = newDir
			cmps = append(cmps, etcdstore.CmpCreateRevision(p.keys.Dir(e.ID), ownRev))
			ops = append(ops, etcdstore.OpPut(p.keys.Dir(e.ID), marshalJSON(own)))
		}
	}
	_, err = p.store.Txn(ctx, cmps, ops)
	var ce *etcdstore.CompareError
	if errors.As(err, &ce) {
		// Both names as read: what failed is the victim's fence or a
		// directory record (a concurrent move): the fence is final.
		cur, curNew := ce.Current[oldKey], ce.Current[newKey]
		same := cur != nil && cur.ModRevision == rev && (curNew == nil && vrev == 0 || curNew != nil && curNew.ModRevision == vrev)
		switch {
		case same && v.ID != "" && !v.Dir:
			return fmt.Errorf("rename %q over %q: %w: %w", name, newName, ErrFenced, err)
		case same && v.Dir && !p.dirEmpty(ctx, v.ID):
			return fmt.Errorf("rename %q over %q: %w", name, newName, ErrNotEmpty)
		}
		return errRetry
	}
	if err != nil {
		return fmt.Errorf("rename %q: %w", name, err)
	}
	if v.ID != "" && !v.Dir {
		p.forget(v.ID)
	}
	return nil
}

// Upgrade moves the databases of the flat catalog (kvfs before schema 2)
// into the root directory, each keeping its name as its id, so no data key
// moves; it returns how many it moved. It is idempotent, and a no-op once
// the schema key says 2. Every host must run a kvfs that knows schema 2
// before it runs: an older one would not see the moved names.
func (p *Pager) Upgrade(ctx context.Context) (int, error) {
	if kv, _, err := p.store.Get(ctx, p.keys.Schema(), 0); err == nil && string(kv.Value) == schemaVersion {
		return 0, nil
	} else if err != nil && !errors.Is(err, etcdstore.ErrNotFound) {
		return 0, fmt.Errorf("upgrade: %w", err)
	}
	var names []string
	prefix := p.keys.Catalog()
	if _, err := p.store.Range(ctx, prefix, etcdstore.RangeOptions{KeysOnly: true}, func(kv *etcdstore.KeyValue) error {
		names = append(names, kv.Key[len(prefix):])
		return nil
	}); err != nil {
		return 0, fmt.Errorf("upgrade: list catalog: %w", err)
	}
	var ops []etcdstore.Op
	for _, n := range names {
		// A name already in the root (an interrupted upgrade) is moved again
		// to the same entry: the put is idempotent.
		ops = append(ops, etcdstore.OpPut(p.keys.Entry(RootDir, n), Entry{ID: n}.marshal()), etcdstore.OpDelete(p.keys.CatalogEntry(n)))
	}
	batches, err := p.store.Limits().Batches(nil, ops)
	if err != nil {
		return 0, fmt.Errorf("upgrade: %w", err)
	}
	for _, b := range batches {
		if _, err := p.store.Txn(ctx, nil, b); err != nil {
			return 0, fmt.Errorf("upgrade: %w", err)
		}
	}
	if _, err := p.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(p.keys.Schema(), []byte(schemaVersion))}); err != nil {
		return 0, fmt.Errorf("upgrade: %w", err)
	}
	return len(names), nil
}
