package fence

import "time"

// Clock is the time source of a Manager: it drives each lease's own-clock
// deadline, its keep-alive schedule and AcquireWithHandoff's wait. Tests
// substitute a clock they advance by hand.
type Clock interface {
	// Now returns the current time. Only differences between values it
	// returned are used, so it need not be wall-clock time.
	Now() time.Time
	// After returns a channel that receives once d has passed on this
	// clock. A non-positive d fires at once.
	After(d time.Duration) <-chan time.Time
}

// realClock is the Clock of the running system.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var _ Clock = realClock{}
