package solver

import (
	"context"
	"fmt"
	"sync"

	"github.com/libdns/libdns"
)

// nameLocks serialises this process's calls to inner writers at one alias
// name. Providers with an API of record sets (libdns/powerdns,
// libdns/route53) append and delete a value by reading the name's set and
// writing it back, so two calls at one name at once (apex and wildcard,
// domains sharing a static alias) each write back a set without the
// other's change. Calls at different names run in parallel. A lock lives
// only while a call at its name waits or runs, so there are never more
// than the calls in flight.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	held  chan struct{} // a channel, so that a waiter can give up with its context
	users int           // calls holding or waiting for it
}

// lock locks zone's name and returns its unlock, or the context's error if
// it ends first.
func (n *nameLocks) lock(ctx context.Context, zone, name string) (unlock func(), err error) {
	key := Normalize(zone) + " " + Normalize(name)
	n.mu.Lock()
	if n.locks == nil {
		n.locks = map[string]*nameLock{}
	}
	l := n.locks[key]
	if l == nil {
		l = &nameLock{held: make(chan struct{}, 1)}
		n.locks[key] = l
	}
	l.users++
	n.mu.Unlock()
	release := func() {
		n.mu.Lock()
		if l.users--; l.users == 0 {
			delete(n.locks, key)
		}
		n.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("waiting for another write at %s in zone %s: %w", Normalize(name), Normalize(zone), ctx.Err())
	}
}

// delete deletes recs at name in zone through w, under the name's lock.
func (n *nameLocks) delete(ctx context.Context, w Writer, zone, name string, recs []libdns.Record) error {
	unlock, err := n.lock(ctx, zone, name)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = w.DeleteRecords(ctx, FQDN(zone), recs)
	return err
}
