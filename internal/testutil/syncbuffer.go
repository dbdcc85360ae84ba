// Package testutil holds helpers shared by kvfs's tests.
package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is an io.Writer safe for several goroutines (a child process's
// output, a logger used by FUSE handlers) whose contents a test reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
