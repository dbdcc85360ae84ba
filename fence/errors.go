package fence

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Errors returned by this package. Match them with errors.Is; the typed
// errors below carry the details and match the sentinels they wrap.
var (
	// ErrFenced is returned when this host may no longer write the
	// database: its lease expired, was revoked or released, its own clock
	// says the lease may have expired, or a write carrying the lease's
	// compares failed because the fence key no longer names the lease. The
	// error is a *FencedError. A fenced Lease never becomes valid again;
	// writing again takes a new Acquire (and a new generation).
	ErrFenced = errors.New("write lease lost")

	// ErrHeld is returned by Acquire when another live lease holds the
	// database's fence. The error is a *HeldError naming the holder.
	ErrHeld = errors.New("write lease held by another owner")

	// ErrBusy is returned by AcquireWithHandoff when the holder did not
	// release within the wait. The error is a *BusyError; it also matches
	// ErrHeld.
	ErrBusy = errors.New("write lease holder busy")

	// ErrNotHeld is returned by Manager.Holder when no live lease holds the
	// database's fence.
	ErrNotHeld = errors.New("write lease not held")

	// ErrClosed is returned by Acquire and AcquireWithHandoff after
	// Manager.Close.
	ErrClosed = errors.New("fence manager closed")
)

// HeldError is returned when another live lease holds the fence.
type HeldError struct {
	DB         string
	Owner      string // the holder's Options.Owner
	Generation uint64 // the holder's generation

	revision int64             // store revision at which the fence was seen held
	fenceRev int64             // the fence key's mod revision then
	lease    etcdstore.LeaseID // the holder's lease
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("database %q: %v: owner %q, generation %d", e.DB, ErrHeld, e.Owner, e.Generation)
}

// Unwrap returns ErrHeld.
func (e *HeldError) Unwrap() error { return ErrHeld }

// BusyError is returned by AcquireWithHandoff when the holder asked to hand
// the lease over did not release within the wait.
type BusyError struct {
	Held   *HeldError    // the holder last seen
	Waited time.Duration // how long the requester waited
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("database %q: %v: owner %q, generation %d did not release within %s",
		e.Held.DB, ErrBusy, e.Held.Owner, e.Held.Generation, e.Waited)
}

// Unwrap returns ErrBusy and the *HeldError (which matches ErrHeld).
func (e *BusyError) Unwrap() []error { return []error{ErrBusy, e.Held} }

// FencedError says why a lease was lost.
type FencedError struct {
	DB         string
	Generation uint64 // the lost lease's generation
	Reason     string // e.g. "released", "lease expired", "fence key deleted"
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("database %q generation %d: %v: %s", e.DB, e.Generation, ErrFenced, e.Reason)
}

// Unwrap returns ErrFenced.
func (e *FencedError) Unwrap() error { return ErrFenced }
