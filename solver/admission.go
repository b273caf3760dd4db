package solver

import (
	"context"
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
// reason it may not.
func (a *Admission) Allow(ctx context.Context, name string) error {
	name = Normalize(name)
	a.mu.Lock()
	if a.entries == nil {
		a.entries = make(map[string]admissionEntry)
		a.inflight = make(map[string]*admissionCall)
	}
	if e, ok := a.entries[name]; ok && a.clock().Before(e.expires) {
		a.mu.Unlock()
		return e.err
	}
	if c, ok := a.inflight[name]; ok {
		a.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &admissionCall{done: make(chan struct{})}
	a.inflight[name] = c
	a.mu.Unlock()

	// The check runs on its own context: waiters with other deadlines
	// share its result, and one cancelled handshake must not cache a no.
	checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	ttl, err := a.Check(checkCtx, name)
	cancel()
	if err == nil {
		ttl = min(ttl, a.maxTTL())
	} else {
		ttl = a.negativeTTL()
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
	return err
}

// makeRoom drops expired entries, and if that is not enough, the ones that
// expire soonest. Called with a.mu held.
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
	for len(a.entries) >= limit {
		var oldest string
		var oldestExp time.Time
		for k, e := range a.entries {
			if oldest == "" || e.expires.Before(oldestExp) {
				oldest, oldestExp = k, e.expires
			}
		}
		delete(a.entries, oldest)
	}
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
