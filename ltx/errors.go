package ltx

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Check them with errors.Is; the returned
// errors wrap them together with a message naming the operation and cause.
var (
	// ErrCorrupt is returned by every decoder (Decode, Verify, OpenBlob,
	// Blob.ReadPage) when its input is not a well-formed kvfs LTX blob: bad
	// magic, header or trailer fields, a file checksum or post-apply checksum
	// mismatch, a malformed or truncated page frame, an LZ4 block that does
	// not decompress to exactly one page, a page index that does not describe
	// the page block, or trailing bytes. Truncation (io.ErrUnexpectedEOF)
	// is reported as ErrCorrupt too. Decoders never panic on bad input.
	ErrCorrupt = errors.New("ltx: corrupt blob")

	// ErrPageNotFound is returned by Blob.ReadPage for a page number that
	// the blob does not contain.
	ErrPageNotFound = errors.New("ltx: page not found")

	// ErrInvalid is returned by Encode, NewWriter, Writer.WritePage and
	// Writer.Close when given input that cannot form a valid blob: a bad
	// page size or header, a page of the wrong length, page number 0, a page
	// number above Commit, the lock page, a duplicate or descending page
	// number, a checksum in the wrong form, or a violation of the snapshot
	// rules (see the package documentation).
	ErrInvalid = errors.New("ltx: invalid input")
)

// corruptError reports a decoding failure. It matches ErrCorrupt and, when
// set, its underlying cause (for example io.ErrUnexpectedEOF or
// sltx.ErrChecksumMismatch) under errors.Is.
type corruptError struct {
	op  string // lowercase operation, e.g. "read page 7"
	err error  // cause; may be nil
}

func (e *corruptError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("%s: %s", ErrCorrupt, e.op)
	}
	return fmt.Sprintf("%s: %s: %s", ErrCorrupt, e.op, e.err)
}

// Unwrap returns ErrCorrupt and the cause.
func (e *corruptError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.err}
}

// corrupt returns a *corruptError for op caused by err.
func corrupt(op string, err error) error {
	return &corruptError{op: op, err: err}
}

// corruptf returns a *corruptError whose cause is a formatted message.
func corruptf(op, format string, args ...any) error {
	return &corruptError{op: op, err: fmt.Errorf(format, args...)}
}

// invalidf returns an error matching ErrInvalid with a formatted message.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// invalid wraps an encode-time rule violation reported by sltx so that it
// matches ErrInvalid and keeps sltx's message and error chain.
func invalid(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrInvalid, op, err)
}
