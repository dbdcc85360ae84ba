package etcdstore

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type mvccKV = mvccpb.KeyValue

// opOverhead approximates the protobuf framing etcd adds per operation or
// compare inside a raft request; txnOverhead covers the request itself.
const (
	opOverhead  = 32
	txnOverhead = 256
)

// Cmp is one compare of a transaction. Build it with the Cmp* functions;
// a package like fence hands its Cmps to the pager to put in every write.
type Cmp struct {
	key string
	cmp clientv3.Cmp
}

// Key returns the compared key.
func (c Cmp) Key() string { return c.key }

func (c Cmp) size() int { return len(c.key) + len(c.cmp.ValueBytes()) + opOverhead }

// CmpModRevision is true when key was last written at rev (0: key absent).
func CmpModRevision(key string, rev int64) Cmp {
	return Cmp{key, clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
}

// CmpCreateRevision is true when key was created at rev (0: key absent).
func CmpCreateRevision(key string, rev int64) Cmp {
	return Cmp{key, clientv3.Compare(clientv3.CreateRevision(key), "=", rev)}
}

// CmpAbsent is true when key does not exist.
func CmpAbsent(key string) Cmp { return CmpCreateRevision(key, 0) }

// CmpPrefixEmpty is true when no key has the prefix.
func CmpPrefixEmpty(prefix string) Cmp {
	return Cmp{prefix, clientv3.Compare(clientv3.CreateRevision(prefix), "=", 0).WithPrefix()}
}

// CmpValue is true when key exists and holds exactly value.
func CmpValue(key string, value []byte) Cmp {
	return Cmp{key, clientv3.Compare(clientv3.Value(key), "=", string(value))}
}

// CmpLease is true when key exists and is attached to lease. A key that
// vanished (its lease expired) compares false.
func CmpLease(key string, lease LeaseID) Cmp {
	return Cmp{key, clientv3.Compare(clientv3.LeaseValue(key), "=", int64(lease))}
}

// Op is one write of a transaction.
type Op struct {
	key string
	op  clientv3.Op
	sz  int
}

// Key returns the key (or the start of the range) the op writes.
func (o Op) Key() string { return o.key }

// Size returns the op's estimated share of a request, in bytes.
func (o Op) Size() int { return o.sz }

// OpPut writes value at key.
func OpPut(key string, value []byte) Op { return opPut(key, string(value)) }

// opPut is OpPut for a value already in a string.
func opPut(key, value string) Op {
	return Op{key, clientv3.OpPut(key, value), len(key) + len(value) + opOverhead}
}

// OpPutLease writes value at key, attached to lease: the key disappears
// when the lease expires or is revoked.
func OpPutLease(key string, value []byte, lease LeaseID) Op {
	return Op{key, clientv3.OpPut(key, string(value), clientv3.WithLease(clientv3.LeaseID(lease))),
		len(key) + len(value) + opOverhead}
}

// OpDelete deletes key.
func OpDelete(key string) Op {
	return Op{key, clientv3.OpDelete(key), len(key) + opOverhead}
}

// OpDeletePrefix deletes every key with the prefix.
func OpDeletePrefix(prefix string) Op {
	return Op{prefix, clientv3.OpDelete(prefix, clientv3.WithPrefix()), 2*len(prefix) + opOverhead}
}

// OpDeleteRange deletes the keys in [from, end).
func OpDeleteRange(from, end string) Op {
	return Op{from, clientv3.OpDelete(from, clientv3.WithRange(end)), len(from) + len(end) + opOverhead}
}

// RequestSize estimates the bytes etcd counts against MaxRequestBytes for a
// transaction with these compares and ops.
func RequestSize(cmps []Cmp, ops []Op) int {
	n := txnOverhead
	for _, c := range cmps {
		// Each compare is also read back in the failure branch.
		n += c.size() + len(c.key) + opOverhead
	}
	for _, o := range ops {
		n += o.sz
	}
	return n
}

// Fits reports whether a transaction with these compares and ops is within l.
func (l Limits) Fits(cmps []Cmp, ops []Op) bool {
	return len(ops) <= l.MaxTxnOps && len(cmps) <= l.MaxTxnOps && RequestSize(cmps, ops) <= l.MaxRequestBytes
}

// Batches splits ops, in order, into groups that each fit l in one
// transaction carrying cmps. It returns a *LimitError when a single op does
// not fit even alone.
func (l Limits) Batches(cmps []Cmp, ops []Op) ([][]Op, error) {
	base := RequestSize(cmps, nil)
	var out [][]Op
	start, size := 0, base
	for i, o := range ops {
		if base+o.sz > l.MaxRequestBytes || len(cmps) > l.MaxTxnOps {
			return nil, &LimitError{Bytes: base + o.sz, Ops: 1, Limits: l}
		}
		if size+o.sz > l.MaxRequestBytes || i-start >= l.MaxTxnOps {
			out = append(out, ops[start:i])
			start, size = i, base
		}
		size += o.sz
	}
	if start < len(ops) {
		out = append(out, ops[start:])
	}
	return out, nil
}

// TxnResult describes a transaction that landed.
type TxnResult struct {
	// Revision is the store revision after the transaction.
	Revision int64
}

// Txn runs ops atomically if every compare holds. When one does not, it
// writes nothing and returns a *CompareError with the current state of the
// compared keys. A transaction outside s.Limits() is refused before sending
// (*LimitError). ErrUnavailable means the outcome is unknown.
func (s *Store) Txn(ctx context.Context, cmps []Cmp, ops []Op) (TxnResult, error) {
	if !s.limits.Fits(cmps, ops) {
		n := len(ops)
		if len(cmps) > n {
			n = len(cmps)
		}
		return TxnResult{}, fmt.Errorf("txn: %w", &LimitError{Bytes: RequestSize(cmps, ops), Ops: n, Limits: s.limits})
	}
	ccmps := make([]clientv3.Cmp, len(cmps))
	elseOps := make([]clientv3.Op, 0, len(cmps))
	seen := make(map[string]bool, len(cmps))
	for i, c := range cmps {
		ccmps[i] = c.cmp
		if !seen[c.key] {
			seen[c.key] = true
			elseOps = append(elseOps, clientv3.OpGet(c.key))
		}
	}
	cops := make([]clientv3.Op, len(ops))
	for i, o := range ops {
		cops[i] = o.op
	}
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(ccmps...).Then(cops...).Else(elseOps...).Commit()
	if err != nil {
		return TxnResult{}, classify("txn", ctx, cctx, s.timeout, 0, err)
	}
	if !resp.Succeeded {
		ce := &CompareError{Revision: resp.Header.Revision, Current: make(map[string]*KeyValue, len(elseOps))}
		for i, r := range resp.Responses {
			key := string(elseOps[i].KeyBytes())
			ce.Current[key] = nil
			if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				ce.Current[key] = fromKV(rr.Kvs[0])
			}
		}
		return TxnResult{Revision: resp.Header.Revision}, ce
	}
	return TxnResult{Revision: resp.Header.Revision}, nil
}

// prefixEnd returns the first key after every key with prefix.
func prefixEnd(prefix string) string { return clientv3.GetPrefixRangeEnd(prefix) }

// PrefixEnd returns the first key after every key with prefix, for
// OpDeleteRange and RangeOptions.End.
func PrefixEnd(prefix string) string { return prefixEnd(prefix) }
