// Package etcdstore is kvfs's only door to etcd: the key schema, fenced
// transactions with typed errors, revision-pinned reads, watches, chunked
// values, leases, maintenance, and the embedded etcd server.
//
// Invariant: every write this package performs is a single etcd transaction
// whose compares the caller supplies; a transaction whose compares fail
// writes nothing and returns an error matching ErrCompareFailed. No other
// kvfs package imports the etcd client.
//
// # Keys
//
// Keys builds every key kvfs stores (see Keys for the layout). Database
// names are validated by ValidateName: any bytes but '/' and NUL (not
// necessarily UTF-8), at most MaxNameLen bytes, not "." or "..".
//
// # Limits
//
// etcd refuses a request larger than --max-request-bytes (1.5 MiB by default)
// and a transaction with more than --max-txn-ops operations (128 by default).
// Store knows these limits (Config.Limits) so that callers can plan a
// transaction that fits (Limits.Fits, Store.Batches) and choose between a
// single-transaction commit and a staged one. A transaction that does not fit
// is refused before it is sent, with ErrTooLarge.
//
// # Chunked values
//
// A logical value larger than one request is stored as chunk keys
// "<base>/<index %04x>", each holding the value's chunk count and the payload
// size of every chunk but the last (big-endian uint32 each), followed by a
// slice of the value; any one chunk locates any byte (GetChunk). GetChunked reassembles them and reports a missing
// or inconsistent chunk as ErrCorrupt. Writing a value that needs more than
// one transaction is not atomic: callers make such values visible with a
// later single-key write (kvfs's head flip).
//
// # Errors
//
// Store methods return errors matching one of the sentinels in errors.go.
// ErrUnavailable on a write means the outcome is unknown: the transaction may
// have landed. Callers re-read what they compared before deciding.
//
// # Embedded server
//
// StartEmbedded runs etcd in-process on a data directory and writes the client
// endpoint to EndpointFile in that directory, so other kvfs commands can reach
// a running instance instead of failing on the locked data directory.
package etcdstore
