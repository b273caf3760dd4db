package acmednsserver

import "container/list"

// lru is a map of at most max entries that, when full, drops the entry
// used least recently to make room: every operation is O(1), whatever
// the number of entries. Callers hold their own lock.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recently used first
	byKey map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), byKey: make(map[K]*list.Element)}
}

// get returns the value of k and marks it used.
func (c *lru[K, V]) get(k K) (V, bool) {
	e := c.byKey[k]
	if e == nil {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// add sets k to v, marks it used and, if that makes one entry too many,
// drops the least recently used one.
func (c *lru[K, V]) add(k K, v V) {
	if e := c.byKey[k]; e != nil {
		e.Value.(*lruEntry[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	c.byKey[k] = c.order.PushFront(&lruEntry[K, V]{k, v})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*lruEntry[K, V]).key)
	}
}

func (c *lru[K, V]) len() int { return c.order.Len() }

// values returns the values, most recently used first.
func (c *lru[K, V]) values() []V {
	out := make([]V, 0, c.order.Len())
	for e := c.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*lruEntry[K, V]).val)
	}
	return out
}
