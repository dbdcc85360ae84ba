package pager

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/kvfs/kvfs/etcdstore"
)

// stagedWindow is how many staged transactions of one commit are in flight
// at once. etcd can propose concurrent requests together (one raft round,
// one WAL fsync) and apply one while it receives the next; measured here
// the gain is modest and noisy (a 256 MiB spooled commit 5.9 s → 5.1 s,
// BenchmarkLargeCommit about 15%), and each one in flight holds a request
// of chunks in memory, so two.
const stagedWindow = 2

// stager sends a staged commit's batches, up to stagedWindow at once, each
// carrying the commit's compares. The first failure cancels the batches
// still in flight; wait reports it. Staged batches write only keys under
// the reserved txid, so their order does not matter: the head flip, sent
// after wait, is what makes them visible.
type stager struct {
	store  Store
	fail   func(error) error // turns a failed batch into the error to report
	ctx    context.Context
	cancel context.CancelFunc
	cmps   []etcdstore.Cmp
	slots  chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	err  error // first failure
	sent int   // batches handed to send, for testHookStaged
	txns int   // batches that landed
}

func newStager(ctx context.Context, store Store, cmps []etcdstore.Cmp, fail func(error) error) *stager {
	ctx, cancel := context.WithCancel(ctx)
	return &stager{store: store, fail: fail, ctx: ctx, cancel: cancel, cmps: cmps, slots: make(chan struct{}, stagedWindow)}
}

// send starts one batch once a slot is free. It returns the first failure
// so far, after which the caller stops sending.
func (s *stager) send(batch []etcdstore.Op) error {
	if testHookStaged != nil {
		// Tests see the sequential order: batches before i have landed.
		s.wg.Wait()
		testHookStaged(s.sent)
	}
	s.sent++
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
	}
	if err := s.failed(); err != nil {
		return err
	}
	if err := s.ctx.Err(); err != nil {
		return err // the caller's context ended
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		_, err := s.store.Txn(s.ctx, s.cmps, batch)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err == nil {
			s.txns++
		} else if s.err == nil {
			s.err = s.fail(err)
			s.cancel()
		}
	}()
	return nil
}

func (s *stager) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// sendOps sends ops in as few batches as the store's limits allow.
func (s *stager) sendOps(ops []etcdstore.Op) error {
	batches, err := s.store.Limits().Batches(s.cmps, ops)
	if err != nil {
		return err
	}
	for _, b := range batches {
		if err := s.send(b); err != nil {
			return err
		}
	}
	return nil
}

// sendChunks stores the size bytes of r under base in chunks of chunkSize,
// reading one chunk at a time (r is the encoded delta, in memory or in a
// spool file), and deletes any chunk beyond them left by an unfinished
// commit of the same txid.
func (s *stager) sendChunks(base string, r io.ReaderAt, size int64, chunkSize int) error {
	limits := s.store.Limits()
	count, err := etcdstore.ChunkCount(base, size, chunkSize)
	if err != nil {
		return err
	}
	var batch []etcdstore.Op
	buf := make([]byte, chunkSize)
	for i := 0; i < count; i++ {
		off := int64(i) * int64(chunkSize)
		n := int(min(int64(chunkSize), size-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil && !(err == io.EOF && n == 0) {
			return fmt.Errorf("read encoded delta: %w", err)
		}
		// ChunkOp copies the payload: buf is reused.
		op := etcdstore.ChunkOp(base, i, count, chunkSize, buf[:n])
		if len(batch) > 0 && !limits.Fits(s.cmps, append(batch, op)) {
			if err := s.send(batch); err != nil {
				return err
			}
			batch = nil
		}
		batch = append(batch, op)
	}
	return s.send(append(batch, etcdstore.ChunkTailDelete(base, count)))
}

// wait waits for every batch sent and returns the transactions that landed
// and the first failure. It must be called after the last send, also when
// a send failed, so that no batch outlives the commit.
func (s *stager) wait() (int, error) {
	s.wg.Wait()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txns, s.err
}
