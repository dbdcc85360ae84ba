package pager

import (
	"container/list"
	"sync"
)

// lru is a cache bounded by the summed size of its values. Values are
// immutable (a page of a given txid never changes), so entries need no
// invalidation, only eviction.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	max     int64
	size    int64
	ll      *list.List
	items   map[K]*list.Element
	sizeOf  func(V) int64
	hits    uint64
	misses  uint64
	evicted uint64
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
	sz  int64
}

func newLRU[K comparable, V any](max int64, sizeOf func(V) int64) *lru[K, V] {
	return &lru[K, V]{max: max, ll: list.New(), items: make(map[K]*list.Element), sizeOf: sizeOf}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		return e.Value.(*lruEntry[K, V]).val, true
	}
	c.misses++
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(k K, v V) {
	sz := c.sizeOf(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	if sz > c.max {
		return
	}
	if e, ok := c.items[k]; ok {
		old := e.Value.(*lruEntry[K, V])
		c.size += sz - old.sz
		old.val, old.sz = v, sz
		c.ll.MoveToFront(e)
	} else {
		c.items[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, sz: sz})
		c.size += sz
	}
	for c.size > c.max {
		e := c.ll.Back()
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.items, ent.key)
		c.size -= ent.sz
		c.evicted++
	}
}

// stats returns the cache's bytes, entries, hits, misses and evictions.
func (c *lru[K, V]) stats() (bytes int64, n int, hits, misses, evicted uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, len(c.items), c.hits, c.misses, c.evicted
}
