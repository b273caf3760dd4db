package acmednsserver

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// keyChecks hands out the key check slots (bcrypt comparisons, and
// registration's hashing) fairly across networks: at most one check of a
// network runs or waits at the head of the line at a time, and the
// networks waiting take the free slots in turn, so a flood from one
// network, however many addresses it has, holds at most one slot and
// delays another network's first check by at most one turn. A request that
// finds no slot waits, in a bounded queue and for a bounded time, instead
// of being refused at once.
type keyChecks struct {
	wait       time.Duration
	maxQueued  int
	perNetwork int
	mu         sync.Mutex
	free       int
	queued     int
	// networks with a check running or waiting; turns are those whose
	// turn is still to come (none running, some waiting), in order.
	networks map[netip.Prefix]*networkChecks
	turns    []netip.Prefix
}

// networkChecks is one network's place at the key checks.
type networkChecks struct {
	running bool
	queue   []chan struct{} // closed when the slot is granted
}

// maxQueuedPerNetwork bounds one network's waiting requests: an ACME
// client's first updates (an apex and its wildcard, say) wait, a flood's
// beyond them is refused at once.
const maxQueuedPerNetwork = 4

func newKeyChecks(l Limits) *keyChecks {
	return &keyChecks{wait: l.KeyCheckWait, maxQueued: l.KeyCheckQueue, perNetwork: maxQueuedPerNetwork,
		free: l.ConcurrentKeyChecks, networks: make(map[netip.Prefix]*networkChecks)}
}

// acquire waits for a key check slot for src, at most k.wait or until ctx
// ends, and returns the function that gives it back; ok is false if none
// came.
func (k *keyChecks) acquire(ctx context.Context, src netip.Addr) (release func(), ok bool) {
	network := networkKey(src)
	k.mu.Lock()
	n := k.networks[network]
	if n == nil {
		n = &networkChecks{}
		k.networks[network] = n
	}
	if !n.running && len(n.queue) == 0 && k.free > 0 {
		n.running = true
		k.free--
		k.mu.Unlock()
		return func() { k.release(network) }, true
	}
	if k.queued >= k.maxQueued || len(n.queue) >= k.perNetwork {
		k.forgetIdle(network, n)
		k.mu.Unlock()
		return nil, false
	}
	granted := make(chan struct{})
	n.queue = append(n.queue, granted)
	k.queued++
	if !n.running && len(n.queue) == 1 {
		k.turns = append(k.turns, network)
	}
	k.mu.Unlock()

	timer := time.NewTimer(k.wait)
	defer timer.Stop()
	select {
	case <-granted:
		return func() { k.release(network) }, true
	case <-timer.C:
	case <-ctx.Done():
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-granted: // granted as the wait ended: use it
		return func() { k.release(network) }, true
	default:
	}
	n.queue = slices.DeleteFunc(n.queue, func(c chan struct{}) bool { return c == granted })
	k.queued--
	k.forgetIdle(network, n)
	return nil, false
}

// release gives back network's slot: the network's next request, if any,
// waits for its turn behind the others.
func (k *keyChecks) release(network netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.networks[network]
	n.running = false
	k.free++
	if len(n.queue) > 0 {
		k.turns = append(k.turns, network)
	}
	k.forgetIdle(network, n)
	for k.free > 0 && len(k.turns) > 0 {
		next := k.networks[k.turns[0]]
		k.turns = k.turns[1:]
		granted := next.queue[0]
		next.queue = next.queue[1:]
		k.queued--
		next.running = true
		k.free--
		close(granted)
	}
}

// forgetIdle drops a network with nothing running or waiting (and its
// turn). k.mu is held.
func (k *keyChecks) forgetIdle(network netip.Prefix, n *networkChecks) {
	if n.running || len(n.queue) > 0 {
		return
	}
	delete(k.networks, network)
	k.turns = slices.DeleteFunc(k.turns, func(p netip.Prefix) bool { return p == network })
}

// running is how many key checks run now.
func (k *keyChecks) running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.networks {
		if c.running {
			n++
		}
	}
	return n
}
