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
//
// A suspect request (its source or network failed a check lately) starts
// only while no other check runs or waits: the core a cost-14 check
// takes is then not shared with an attacker's next guess, and a client's
// first update takes what one check takes.
type keyChecks struct {
	wait       time.Duration
	maxQueued  int
	perNetwork int
	mu         sync.Mutex
	free       int
	queued     int
	clean      int // running checks that are not suspect
	// networks with a check running or waiting; turns are those whose
	// turn is still to come (none running, some waiting), in order.
	networks map[netip.Prefix]*networkChecks
	turns    []netip.Prefix
}

// networkChecks is one network's place at the key checks.
type networkChecks struct {
	running, runningClean bool
	queue                 []*checkWaiter
}

// checkWaiter is a request waiting for a slot; granted is closed when it
// gets one.
type checkWaiter struct {
	granted chan struct{}
	suspect bool
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
// came. suspect marks a source or network that failed a check lately.
func (k *keyChecks) acquire(ctx context.Context, src netip.Addr, suspect bool) (release func(), ok bool) {
	network := networkKey(src)
	k.mu.Lock()
	n := k.networks[network]
	if n == nil {
		n = &networkChecks{}
		k.networks[network] = n
	}
	if !n.running && len(n.queue) == 0 && k.free > 0 && (!suspect || k.clean == 0 && k.cleanTurn() < 0) {
		k.start(n, suspect)
		k.mu.Unlock()
		return func() { k.release(network) }, true
	}
	if k.queued >= k.maxQueued || len(n.queue) >= k.perNetwork {
		k.forgetIdle(network, n)
		k.mu.Unlock()
		return nil, false
	}
	w := &checkWaiter{granted: make(chan struct{}), suspect: suspect}
	n.queue = append(n.queue, w)
	k.queued++
	if !n.running && len(n.queue) == 1 {
		k.turns = append(k.turns, network)
	}
	k.mu.Unlock()

	timer := time.NewTimer(k.wait)
	defer timer.Stop()
	select {
	case <-w.granted:
		return func() { k.release(network) }, true
	case <-timer.C:
	case <-ctx.Done():
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-w.granted: // granted as the wait ended: use it
		return func() { k.release(network) }, true
	default:
	}
	n.queue = slices.DeleteFunc(n.queue, func(o *checkWaiter) bool { return o == w })
	k.queued--
	k.forgetIdle(network, n)
	return nil, false
}

// start runs a check of n. k.mu is held.
func (k *keyChecks) start(n *networkChecks, suspect bool) {
	n.running, n.runningClean = true, !suspect
	k.free--
	if !suspect {
		k.clean++
	}
}

// cleanTurn is the index of the first network in turns whose next request
// is not suspect, or -1. k.mu is held.
func (k *keyChecks) cleanTurn() int {
	return slices.IndexFunc(k.turns, func(p netip.Prefix) bool { return !k.networks[p].queue[0].suspect })
}

// release gives back network's slot: the network's next request, if any,
// waits for its turn behind the others. Free slots go to the networks
// waiting in turn, those whose next request is not suspect first.
func (k *keyChecks) release(network netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.networks[network]
	if n.runningClean {
		k.clean--
	}
	n.running, n.runningClean = false, false
	k.free++
	if len(n.queue) > 0 {
		k.turns = append(k.turns, network)
	}
	k.forgetIdle(network, n)
	for k.free > 0 && len(k.turns) > 0 {
		i := k.cleanTurn()
		if i < 0 {
			if k.clean > 0 {
				break
			}
			i = 0
		}
		next := k.networks[k.turns[i]]
		k.turns = slices.Delete(k.turns, i, i+1)
		w := next.queue[0]
		next.queue = next.queue[1:]
		k.queued--
		k.start(next, w.suspect)
		close(w.granted)
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
