package fuse

import (
	"context"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvfs/kvfs/pager"
)

// A commit over several databases (a transaction over ATTACHed databases,
// see superjournal.go) lands in one etcd transaction, and every one of its
// heads names the group. A host following it applies it to all of the
// group's databases it has open at once: under PENDING and EXCLUSIVE of
// every one of them, in name order, each caught up to the commit's etcd
// revision, so that no read transaction on this host, whatever databases
// it reads, sees the commit in one database and not in another.

// group returns the open databases of this host in the group of d's
// latest head (d included, in id order), or nil for a commit of one
// database. Databases in WAL mode, or without a lock agent or a read view
// here, apply on their own. ok is false while a member's lock agent is
// still opening its files: the group must wait for it, not leave it out
// (a reader of that member would see it behind the others).
func (d *dbNode) group() (group []*dbNode, ok bool) {
	names := d.db.Head().GroupNames()
	if len(names) < 2 {
		return nil, true
	}
	d.fsys.mu.Lock()
	for _, name := range names {
		m := d.fsys.dbs[name]
		switch {
		case m == d || (m != nil && m.agent != nil && m.agent.isReady()):
			group = append(group, m)
		case m != nil && m.agent != nil:
			d.fsys.mu.Unlock()
			return nil, false
		}
	}
	d.fsys.mu.Unlock()
	group = slices.DeleteFunc(group, func(m *dbNode) bool {
		if m == d {
			return false
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.view == nil || m.ovl != nil
	})
	return group, true
}

// applyResult says how applyViews ended.
type applyResult int

const (
	applied    applyResult = iota
	busy                   // PENDING was taken (a local writer): retry soon
	heldInVain             // local readers held on past applyHold: back off
	failed                 // etcd or the views: retry soon
)

// groupStep is how long applyViews, holding some databases of a group,
// waits for the next one's readers before it lets go of all of them.
const groupStep = 20 * time.Millisecond

// applyViews makes the latest heads of group (d, alone or with the other
// databases of its head's commit, in name order) this host's read views
// together, under PENDING and EXCLUSIVE of each, and drops the kernel's
// cached pages of each. It locks one database after the other, in id
// order, and waits for another's readers only briefly while it holds some
// (groupStep): a reader holding that one may be waiting for one it holds.
// If local read transactions hold any of them past that, or the first past
// applyHold, it gives up, releasing every lock so the readers get their
// turn (the agent backs off: applyBackoff).
func applyViews(ctx context.Context, d *dbNode, group []*dbNode) applyResult {
	rev := d.db.HeadRevision()
	for _, m := range group { // name order: no two groups deadlock
		m.agent.applyMu.Lock()
		defer m.agent.applyMu.Unlock()
	}
	defer func() {
		for _, m := range group {
			setlk(m.agent.apply, unix.F_UNLCK, 0, 0)
		}
	}()
	deadline := time.Now().Add(applyHold)
	for i, m := range group {
		if !setlk(m.agent.apply, unix.F_WRLCK, pendingByte, 1) {
			return busy
		}
		// Holding earlier databases, wait only briefly: a reader may hold
		// this one and wait for one of those (readers take databases in
		// their own order), and gets its turn while the agent backs off.
		limit := deadline
		if step := time.Now().Add(groupStep); i > 0 && step.Before(deadline) {
			limit = step
		}
		for !setlk(m.agent.apply, unix.F_WRLCK, sharedFirst, sharedSize) {
			if time.Now().After(limit) || ctx.Err() != nil {
				return heldInVain
			}
			time.Sleep(500 * time.Microsecond)
		}
	}
	// Every database has heard of the commit (each follows etcd on its
	// own watch; d has, by definition).
	for _, m := range group {
		for m.db.HeadRevision() < rev {
			if time.Now().After(deadline) || ctx.Err() != nil {
				d.fsys.log.Warn("apply remote commit: a database of its group has not heard of it", "db", m.name, "rev", rev)
				return failed
			}
			time.Sleep(time.Millisecond)
		}
	}
	snaps := make([]*pager.Snapshot, len(group))
	for i, m := range group {
		snap, err := m.db.Snapshot(ctx)
		if err != nil {
			d.fsys.log.Warn("apply remote commit", "db", m.name, "err", err)
			for _, s := range snaps[:i] {
				s.Close()
			}
			return failed
		}
		snaps[i] = snap
	}
	for _, m := range group {
		m.mu.Lock()
	}
	writing := slices.ContainsFunc(group, func(m *dbNode) bool { return m.tx != nil })
	var old []*pager.Snapshot
	if !writing {
		for i, m := range group {
			old = append(old, m.view)
			m.view = snaps[i]
			m.cachedTXID = snaps[i].Head().TXID
		}
	}
	for _, m := range group {
		m.mu.Unlock()
	}
	if writing {
		for _, s := range snaps {
			s.Close()
		}
		return busy
	}
	for _, s := range old {
		if s != nil {
			s.Close()
		}
	}
	// No local SQLite transaction can read meanwhile: EXCLUSIVE is held on
	// every database of the group.
	for i, m := range group {
		d.fsys.log.Debug("applied remote commit", "db", m.name, "txid", snaps[i].Head().TXID)
		m.NotifyContent(0, 0)
	}
	for _, m := range group {
		if m != d {
			m.agent.poke() // its guard may come down
		}
	}
	return applied
}
