package solver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Admission remembers whether names may have certificates, so that a flood
// of TLS handshakes for unknown names does not become a flood of DNS
// queries. Concurrent questions about one name share one check.
type Admission struct {
	// Check decides about one name. It returns how long a yes may be
	// remembered (e.g. the smallest TTL of the CNAME chain), or an error
	// that says why not.
	Check func(ctx context.Context, name string) (time.Duration, error)
	// MaxTTL caps how long a yes is remembered. Default: 5 minutes.
	MaxTTL time.Duration
	// NegativeTTL is how long a no is remembered. Default: 1 minute.
	NegativeTTL time.Duration
	// MaxEntries bounds the memory. Default: 10000.
	MaxEntries int
	// CheckTimeout bounds one check. Default: 30 seconds.
	CheckTimeout time.Duration

	now      func() time.Time
	mu       sync.Mutex
	entries  map[string]admissionEntry
	inflight map[string]*admissionCall
}

type admissionEntry struct {
	err     error
	expires time.Time
}

type admissionCall struct {
	done chan struct{}
	err  error
}

// Allow returns nil if name may have a certificate, and otherwise the
// reason it may not. A caller whose ctx ends before the answer is known gets
// ctx's error; the check itself runs on, and its answer is remembered for
// the next caller.
func (a *Admission) Allow(ctx context.Context, name string) error {
	name = Normalize(name)
	a.mu.Lock()
	if a.entries == nil {
		a.entries = make(map[string]admissionEntry)
		a.inflight = make(map[string]*admissionCall)
	}
	if e, ok := a.entries[name]; ok {
		if a.clock().Before(e.expires) {
			a.mu.Unlock()
			return e.err
		}
		delete(a.entries, name)
	}
	c, ok := a.inflight[name]
	if !ok {
		c = &admissionCall{done: make(chan struct{})}
		a.inflight[name] = c
		// The check runs on its own context: waiters with other deadlines
		// share its result, and one cancelled handshake must neither
		// cancel it for the others nor cache a no.
		go a.run(context.WithoutCancel(ctx), name, c)
	}
	a.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("checking %s: %w", name, ctx.Err())
	}
}

// run performs the check for name, remembers its answer and hands it to
// every waiter. A check that panics is an error that is not remembered.
func (a *Admission) run(ctx context.Context, name string, c *admissionCall) {
	var (
		ttl      time.Duration
		err      error
		finished bool
	)
	defer func() {
		if !finished {
			err, ttl = fmt.Errorf("checking %s: the check panicked: %v", name, recover()), 0
		}
		a.mu.Lock()
		delete(a.inflight, name)
		if ttl > 0 {
			a.makeRoom()
			a.entries[name] = admissionEntry{err: err, expires: a.clock().Add(ttl)}
		}
		a.mu.Unlock()
		c.err = err
		close(c.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(a.CheckTimeout, 30*time.Second))
	defer cancel()
	ttl, err = a.Check(ctx, name)
	if err == nil {
		ttl = min(ttl, a.maxTTL())
	} else {
		ttl = a.negativeTTL()
	}
	finished = true
}

// makeRoom drops expired entries when the cache is full, and if that is not
// enough, the sixteenth of them that expire soonest (refusals of a flood of
// unknown names go before longer-lived admissions). Called with a.mu held.
func (a *Admission) makeRoom() {
	limit := a.MaxEntries
	if limit <= 0 {
		limit = 10000
	}
	if len(a.entries) < limit {
		return
	}
	now := a.clock()
	for k, e := range a.entries {
		if !now.Before(e.expires) {
			delete(a.entries, k)
		}
	}
	if len(a.entries) < limit {
		return
	}
	type kv struct {
		name    string
		expires time.Time
	}
	all := make([]kv, 0, len(a.entries))
	for k, e := range a.entries {
		all = append(all, kv{k, e.expires})
	}
	slices.SortFunc(all, func(x, y kv) int { return x.expires.Compare(y.expires) })
	drop := len(a.entries) - limit + max(1, limit/16)
	for _, e := range all[:min(drop, len(all))] {
		delete(a.entries, e.name)
	}
}

// Len returns how many answers are remembered.
func (a *Admission) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

func (a *Admission) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func (a *Admission) maxTTL() time.Duration {
	if a.MaxTTL > 0 {
		return a.MaxTTL
	}
	return 5 * time.Minute
}

func (a *Admission) negativeTTL() time.Duration {
	if a.NegativeTTL > 0 {
		return a.NegativeTTL
	}
	return time.Minute
}

// ChainTTL is how long a passing check may be trusted: the smallest TTL of
// the chain's CNAME records.
func (r *Report) ChainTTL() time.Duration {
	ttl := uint32(0)
	for i, h := range r.Chain.Hops {
		if i == 0 || h.TTL < ttl {
			ttl = h.TTL
		}
	}
	return time.Duration(ttl) * time.Second
}

// Forget drops what is remembered about name, so that the next question
// checks it afresh (a delegation just published, rechecked on request).
func (a *Admission) Forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.entries, Normalize(name))
}
