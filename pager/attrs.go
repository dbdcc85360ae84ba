package pager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Attrs are a file's permission bits and owner, as chmod(2) and chown(2)
// set them. A database's are stored at Keys.Attrs beside its head —
// written at creation and by SetAttrs, never by a commit — and followed
// like the head; the mount root's at Keys.RootAttrs.
type Attrs struct {
	// Mode holds the permission bits (07777).
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// Changed is when they were last set, Unix milliseconds: the file's
	// ctime when later than its last commit.
	Changed int64 `json:"changed"`
}

// DefaultAttrs are the attributes of a database created without any, or
// by a kvfs that did not store them: 0644, owned by root.
var DefaultAttrs = Attrs{Mode: 0o644}

// DefaultRootAttrs are the mount root's until chmod or chown sets them:
// 0755, owned by root.
var DefaultRootAttrs = Attrs{Mode: 0o755}

func (a Attrs) marshal() []byte { return marshalJSON(a) }

func parseAttrs(b []byte) (Attrs, error) {
	var a Attrs
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("parse attributes: %v: %w", err, ErrCorrupt)
	}
	if a.Mode&^0o7777 != 0 {
		return a, fmt.Errorf("parse attributes: mode %#o: %w", a.Mode, ErrCorrupt)
	}
	return a, nil
}

// Attrs returns the database file's attributes as this handle last heard
// of them (another host's chmod arrives with etcd's watch).
func (db *Database) Attrs() Attrs {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.attrs
}

// SetAttrs stores a as the database file's attributes (a.Changed is set to
// now). It needs no write lease: like chmod on a local file it does not
// conflict with writes. It returns ErrNotFound when the database was
// removed (or removed and created anew) since this handle opened it.
func (db *Database) SetAttrs(ctx context.Context, a Attrs) error {
	if a.Mode&^0o7777 != 0 {
		return fmt.Errorf("set attributes of %s: mode %#o: %w", db.name, a.Mode, ErrInvalidWrite)
	}
	a.Changed = time.Now().UnixMilli()
	keys := db.p.keys
	db.mu.Lock()
	inc := db.inc
	db.mu.Unlock()
	res, err := db.p.store.Txn(ctx,
		[]etcdstore.Cmp{etcdstore.CmpCreateRevision(keys.Head(db.name), inc)},
		[]etcdstore.Op{etcdstore.OpPut(keys.Attrs(db.name), a.marshal())})
	if errors.Is(err, etcdstore.ErrCompareFailed) {
		return fmt.Errorf("set attributes of %s: %w", db.name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set attributes of %s: %w", db.name, err)
	}
	db.setAttrs(a, res.Revision)
	return nil
}

// setAttrs takes a, written at rev, unless newer ones are known.
func (db *Database) setAttrs(a Attrs, rev int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if rev > db.attrsRev {
		db.attrs, db.attrsRev = a, rev
	}
}

// RootAttrs returns the mount root directory's attributes
// (DefaultRootAttrs until SetRootAttrs).
func (p *Pager) RootAttrs(ctx context.Context) (Attrs, error) {
	kv, _, err := p.store.Get(ctx, p.keys.RootAttrs(), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return DefaultRootAttrs, nil
	}
	if err != nil {
		return Attrs{}, fmt.Errorf("read root attributes: %w", err)
	}
	return parseAttrs(kv.Value)
}

// SetRootAttrs stores a as the mount root directory's attributes, with
// a.Changed set to now, and returns what it stored.
func (p *Pager) SetRootAttrs(ctx context.Context, a Attrs) (Attrs, error) {
	if a.Mode&^0o7777 != 0 {
		return Attrs{}, fmt.Errorf("set root attributes: mode %#o: %w", a.Mode, ErrInvalidWrite)
	}
	a.Changed = time.Now().UnixMilli()
	if _, err := p.store.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(p.keys.RootAttrs(), a.marshal())}); err != nil {
		return Attrs{}, fmt.Errorf("set root attributes: %w", err)
	}
	return a, nil
}
