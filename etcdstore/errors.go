package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors returned by this package. Match them with errors.Is; the typed
// errors below carry the details and match the sentinel they wrap.
var (
	// ErrInvalidName is returned when a database name is not allowed
	// (see ValidateName). The error is a *NameError.
	ErrInvalidName = errors.New("invalid database name")

	// ErrCompareFailed is returned by Txn when one of its compares is false;
	// nothing was written. The error is a *CompareError holding the current
	// state of every compared key, so callers can tell which compare failed
	// (a lost fence versus a moved head).
	ErrCompareFailed = errors.New("etcd compare failed")

	// ErrTooLarge is returned when a request exceeds the server's limits:
	// more bytes than MaxRequestBytes or more operations than MaxTxnOps. It is
	// detected before sending when the configured Limits say so (the error is
	// then a *LimitError) and also when the server refuses the request.
	ErrTooLarge = errors.New("etcd request too large")

	// ErrNoSpace is returned when etcd has raised its NOSPACE alarm: the
	// backend reached its quota and etcd accepts only reads and deletes until
	// an operator compacts, defragments and disarms the alarm.
	ErrNoSpace = errors.New("etcd out of space")

	// ErrUnavailable is returned when etcd did not answer within the request
	// deadline (down, partitioned, no leader). For a write the outcome is
	// unknown: it may have landed. The error is an *UnavailableError.
	ErrUnavailable = errors.New("etcd unavailable")

	// ErrNotFound is returned by Get and GetChunked when the key (or every
	// chunk) is absent at the requested revision.
	ErrNotFound = errors.New("key not found")

	// ErrCompacted is returned when a read or watch asks for a revision
	// etcd has already compacted away. The error is a *CompactedError.
	ErrCompacted = errors.New("etcd revision compacted")

	// ErrCorrupt is returned by GetChunked when the chunks of a value are
	// missing, duplicated or disagree about their count.
	ErrCorrupt = errors.New("corrupt chunked value")

	// ErrLeaseNotFound is returned by lease operations on a lease that
	// expired or was revoked.
	ErrLeaseNotFound = errors.New("etcd lease not found")

	// ErrDataDirInUse is returned by StartEmbedded when another process
	// runs an embedded etcd on the same data directory; ReadEndpointFile
	// tells how to reach it.
	ErrDataDirInUse = errors.New("etcd data directory in use")

	// ErrNotRunning is returned by ReadEndpointFile when no live process
	// serves the data directory.
	ErrNotRunning = errors.New("no embedded etcd running")
)

// NameError describes why a database name was refused.
type NameError struct {
	Name   string
	Reason string
	// TooLong: the name is longer than MaxNameLen (ENAMETOOLONG).
	TooLong bool
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid database name %q: %s", e.Name, e.Reason)
}

// Unwrap returns ErrInvalidName.
func (e *NameError) Unwrap() error { return ErrInvalidName }

// CompareError is returned when a transaction's compares failed. Current
// maps every compared key to its value at Revision, or to nil when the key
// does not exist.
type CompareError struct {
	Revision int64
	Current  map[string]*KeyValue
}

func (e *CompareError) Error() string {
	keys := make([]string, 0, len(e.Current))
	for k := range e.Current {
		keys = append(keys, k)
	}
	return fmt.Sprintf("etcd compare failed at revision %d (keys %s)", e.Revision, strings.Join(keys, ", "))
}

// Unwrap returns ErrCompareFailed.
func (e *CompareError) Unwrap() error { return ErrCompareFailed }

// LimitError is returned when a transaction is refused before sending
// because it exceeds the configured Limits.
type LimitError struct {
	Bytes  int // estimated request size
	Ops    int // operations in the largest branch
	Limits Limits
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("etcd request too large: %d bytes, %d ops (limits %d bytes, %d ops)",
		e.Bytes, e.Ops, e.Limits.MaxRequestBytes, e.Limits.MaxTxnOps)
}

// Unwrap returns ErrTooLarge.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

// UnavailableError is returned when etcd did not answer in time.
type UnavailableError struct {
	Op      string        // the operation that failed, e.g. "txn"
	Timeout time.Duration // the deadline it was given (0 if the server said unavailable)
	Err     error         // the underlying error
}

func (e *UnavailableError) Error() string {
	if e.Timeout > 0 {
		return fmt.Sprintf("etcd unavailable: %s: no answer within %s: %v", e.Op, e.Timeout, e.Err)
	}
	return fmt.Sprintf("etcd unavailable: %s: %v", e.Op, e.Err)
}

// Unwrap returns ErrUnavailable and the underlying error.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// CompactedError is returned when a requested revision was compacted.
type CompactedError struct {
	Revision        int64 // the revision asked for
	CompactRevision int64 // the oldest revision still available, if known
}

func (e *CompactedError) Error() string {
	if e.CompactRevision > 0 {
		return fmt.Sprintf("etcd revision %d compacted (oldest available %d)", e.Revision, e.CompactRevision)
	}
	return fmt.Sprintf("etcd revision %d compacted", e.Revision)
}

// Unwrap returns ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// classify turns an etcd client error into this package's errors. op names
// the operation; ctx is the per-request context, parent the caller's.
// errServerStopped is the message of etcdserver.ErrStopped, which an
// in-process client sees when the server shuts down.
const errServerStopped = "etcdserver: server stopped"

func classify(op string, parent, ctx context.Context, timeout time.Duration, rev int64, err error) error {
	if err == nil {
		return nil
	}
	// The caller gave up: report that, not an etcd failure.
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("%s: %w", op, perr)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &UnavailableError{Op: op, Timeout: timeout, Err: err}
	}
	switch rpctypes.Error(err) {
	case rpctypes.ErrNoSpace:
		return fmt.Errorf("%s: %w", op, ErrNoSpace)
	case rpctypes.ErrRequestTooLarge, rpctypes.ErrTooManyOps:
		return fmt.Errorf("%s: %w: %v", op, ErrTooLarge, err)
	case rpctypes.ErrCompacted:
		return fmt.Errorf("%s: %w", op, &CompactedError{Revision: rev})
	case rpctypes.ErrLeaseNotFound:
		return fmt.Errorf("%s: %w", op, ErrLeaseNotFound)
	case rpctypes.ErrNoLeader, rpctypes.ErrTimeout, rpctypes.ErrLeaderChanged,
		rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrStopped, rpctypes.ErrNotCapable, rpctypes.ErrTooManyRequests:
		return &UnavailableError{Op: op, Err: err}
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
			return &UnavailableError{Op: op, Err: err}
		case codes.Unknown:
			// An in-process client gets the stopping server's own errors.
			if msg := s.Message(); msg == raft.ErrStopped.Error() || msg == errServerStopped {
				return &UnavailableError{Op: op, Err: err}
			}
		case codes.ResourceExhausted:
			// The client's own send/receive size limit.
			if strings.Contains(s.Message(), "larger than max") {
				return fmt.Errorf("%s: %w: %v", op, ErrTooLarge, err)
			}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
