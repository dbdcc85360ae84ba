package etcdtest

import "strconv"

// Options configures every member a Start function launches. The zero value
// runs etcd at its defaults, which is what kvfs must work against.
type Options struct {
	// MaxRequestBytes is --max-request-bytes; 0 keeps etcd's default (1.5 MiB).
	MaxRequestBytes int
	// MaxTxnOps is --max-txn-ops; 0 keeps etcd's default (128).
	MaxTxnOps int
	// QuotaBackendBytes is --quota-backend-bytes; 0 keeps etcd's default
	// (2 GiB). A small quota lets a test reach the NOSPACE alarm quickly.
	QuotaBackendBytes int64
	// UnsafeNoFsync passes --unsafe-no-fsync: faster, but a Kill may then
	// lose acknowledged writes, so crash tests must leave it false.
	UnsafeNoFsync bool
	// ExtraArgs are appended after every flag this package sets; since etcd
	// parses with package flag, a repeated flag here overrides ours (for
	// example "--log-level=info" or "--election-timeout=500").
	ExtraArgs []string
}

// flags returns the command-line flags for the settings in o.
func (o Options) flags() []string {
	var args []string
	if o.MaxRequestBytes > 0 {
		args = append(args, "--max-request-bytes="+strconv.Itoa(o.MaxRequestBytes))
	}
	if o.MaxTxnOps > 0 {
		args = append(args, "--max-txn-ops="+strconv.Itoa(o.MaxTxnOps))
	}
	if o.QuotaBackendBytes > 0 {
		args = append(args, "--quota-backend-bytes="+strconv.FormatInt(o.QuotaBackendBytes, 10))
	}
	if o.UnsafeNoFsync {
		args = append(args, "--unsafe-no-fsync")
	}
	return append(args, o.ExtraArgs...)
}
