// Package fence implements per-database writer leases: an etcd lease plus a
// fence key holding {generation, owner, lease}, the compares every write
// transaction carries, takeover, release and handoff.
//
// Invariant: at most one holder per database per generation, and a holder
// whose lease is gone — expired, revoked, paused past its TTL — lands
// nothing, because its fence compare fails inside the same etcd transaction
// as the write.
//
// Status: planned (issue "fence"); this package holds no code yet.
package fence
