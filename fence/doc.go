// Package fence implements per-database writer leases: an etcd lease plus a
// fence key holding {generation, owner, lease}, the compares every write
// transaction carries, release, and handoff between hosts.
//
// Invariant: at most one live lease holds a database's fence key, each
// acquisition's generation is exactly one more than the previous one's, and
// a holder whose lease is gone — expired, revoked, released, paused past its
// TTL — lands nothing, because its Cmps fail inside the same etcd
// transaction as the write.
//
// # Keys
//
// For database D (see etcdstore.Keys):
//
//	db/D/fence       {"generation":G,"owner":"host-a","lease":ID}, attached to lease ID
//	db/D/generation  "G": the last generation handed out; not leased, so
//	                 generations keep increasing across expiries
//	db/D/handoff     {"owner":"host-b","generation":G}: host-b asks the
//	                 holder of generation G to release; attached to a
//	                 lease of host-b
//
// # Acquire
//
// Manager.Acquire grants an etcd lease and runs one transaction:
//
//	If   fence absent, generation's mod revision = the one read (0: absent)
//	Then generation = G+1, fence = {G+1, owner, lease} attached to the lease
//
// A present fence means another live lease holds the database: *HeldError
// (ErrHeld), and the granted lease is revoked. A moved generation key with
// an absent fence means a racing acquirer won and its lease is already gone:
// Acquire re-reads the generation and retries with jittered backoff, so
// racing takeovers reuse the advanced generation and never skip or repeat
// one. An ErrUnavailable answer leaves the outcome unknown; the retry's
// compare tells (a fence attached to our own lease means it landed).
//
// The pager runs takeover after Acquire — deleting orphan deltas and PIDX
// rows above the head in fenced transactions, fixing usage, preloading —
// before its first commit; fence does not know the database's contents.
//
// # Writing under the fence
//
// Lease.Cmps returns the compares (the fence key is attached to this lease
// and holds this generation's value) that every write transaction of the
// database carries. When such a transaction fails with
// etcdstore.ErrCompareFailed, Lease.Classify tells a lost fence (ErrFenced)
// from the caller's own compares failing (the error is returned unchanged).
//
// # Losing the lease
//
// A goroutine renews the lease every KeepAliveInterval. Lease.Done closes,
// and Cmps starts returning ErrFenced, as soon as any of these happens:
//
//   - a keep-alive finds the lease gone (ErrLeaseNotFound);
//   - the holder's own clock passes TTL − SafetyMargin since the start of
//     its last successful keep-alive (or of the grant) — even while etcd is
//     unreachable and before etcd expires the lease, so the holder attempts
//     no write it cannot be sure of;
//   - a watch sees the fence key deleted or overwritten;
//   - Classify sees a write refused by the fence;
//   - Release or Manager.Close.
//
// A lost lease never comes back; writing again takes a new Acquire. The own
// clock is an optimisation for clean errors, not the safety argument: a
// holder frozen after taking its Cmps (a GC or SIGSTOP pause mid-commit)
// wakes with compares that etcd rejects once the lease expired, because
// the fence key vanished with the lease and a new holder's key is attached
// to another lease with another generation.
//
// # Handoff
//
// A host that wants to write calls Manager.AcquireWithHandoff: on
// *HeldError it writes the handoff key, watches the fence key until the
// holder releases (or its lease expires) or the wait ends, then acquires
// with the next generation; if the wait ends first it returns *BusyError
// (ErrBusy and ErrHeld) and deletes its request. The holder's
// Lease.HandoffRequested channel closes when a request arrives; the pager
// releases at its next idle point (no open write transaction). fence only
// signals; it never releases a lease by itself.
//
// # Timing
//
// Options.TTL (default 10 s, at least etcd's minimum of 2 s) bounds how long
// a crashed holder blocks other hosts: its fence key disappears when etcd
// expires the lease, which etcd does up to about half a second late. A
// clean Release revokes the lease, so another host can acquire at once. A
// restarted host (same Owner, new process) also waits for its old lease to
// expire: fence cannot tell a dead previous incarnation from a live
// duplicate.
//
// Measured here (embedded etcd, TTL 2 s): a holder that stops renewing
// fences itself by its own clock 1.6 s after its last keep-alive; another
// host takes over 2.2–2.4 s after the holder froze; a handoff to an idle
// holder completes in about 2 ms.
//
// # Test seams
//
// Options.Clock replaces the time source; Options.SkipKeepAlive suppresses
// keep-alives for chosen databases, simulating a frozen or partitioned
// holder for the tests of the layers above.
package fence
