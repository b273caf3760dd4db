package solver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/netsource"
)

// Admission remembers whether names may have certificates, so that a flood
// of TLS handshakes for unknown names does not become a flood of DNS
// queries. Concurrent questions about one name share one check. The checks
// under way are bounded per client address, per client network, in total
// and per registrable domain (admission_limits.go): what anonymous clients
// can make it do is bounded by a constant, not by the flood's size, and
// one client, or a few, cannot take the checks that others need.
type Admission struct {
	// Check decides about one name. It returns how long a yes may be
	// remembered (e.g. the smallest TTL of the CNAME chain), or an error
	// that says why not. An error that is no verdict on the name (see
	// Definite) is not remembered.
	Check func(ctx context.Context, name string) (time.Duration, error)
	// MaxTTL caps how long a yes is remembered. Default: 5 minutes.
	MaxTTL time.Duration
	// MinTTL is the shortest an admission is remembered, whatever the
	// chain's TTLs say: a CNAME with TTL 0 must not turn the cache off
	// for a name that handshakes arrive for many times a second.
	// Default: 30 seconds.
	MinTTL time.Duration
	// NegativeTTL is how long a no is remembered. Default: 1 minute.
	NegativeTTL time.Duration
	// MaxChecks bounds the checks under way at once; a question that
	// would start one more is refused at once (ErrOverload). Its last
	// quarter starts only checks for client addresses that have none
	// under way (unless MaxChecksPerAddress is -1). Default:
	// DefaultMaxChecks.
	MaxChecks int
	// MaxChecksPerAddress bounds, once half of MaxChecks are under way,
	// the checks under way that the questions of one client address (an
	// IPv4 address, an IPv6 /64) started; more are refused at once
	// (ErrOverload). -1 turns the bound off. Default:
	// DefaultMaxChecksPerAddress.
	MaxChecksPerAddress int
	// MaxChecksPerNetwork is the same for a client's wider network (an
	// IPv4 /24, an IPv6 /48). -1 turns the bound off. Default:
	// DefaultMaxChecksPerNetwork.
	MaxChecksPerNetwork int
	// DomainRate bounds the checks started per minute for the names under
	// one registrable domain (a burst of as many, then one every
	// 1/DomainRate minutes); more are refused at once (ErrOverload). -1
	// turns the bound off. Default: DefaultDomainRate.
	DomainRate int
	// MaxEntries bounds the memory. Default: 10000.
	MaxEntries int
	// CheckTimeout bounds one check. Default: 30 seconds.
	CheckTimeout time.Duration

	now     func() time.Time
	mu      sync.Mutex
	entries map[string]admissionEntry
	// flights are the checks under way, by name: a question about a name
	// being checked waits for that check, and the lookup of entries and
	// of flights under one lock leaves no moment where a check's answer is
	// in neither (a question would start a second check).
	flights map[string]*flight
	// held counts the checks under way per client host and network.
	held    map[netip.Prefix]int
	buckets map[string]*domainBudget // registrable domain -> its checks' budget
}

// flight is one check under way; err is set before done is closed.
type flight struct {
	done chan struct{}
	err  error
}

type admissionEntry struct {
	err     error
	expires time.Time
}

// Allow returns nil if name may have a certificate, and otherwise the
// reason it may not. source is the address of the client that asks (the
// zero Addr when no client does): a check it starts counts against its
// address's and network's bounds until it ends. A caller whose ctx ends
// before the answer is known gets ctx's error; the check itself runs on,
// and its answer is remembered for the next caller.
func (a *Admission) Allow(ctx context.Context, name string, source netip.Addr) error {
	name = Normalize(name)
	a.mu.Lock()
	if e, ok := a.entries[name]; ok {
		if a.clock().Before(e.expires) {
			a.mu.Unlock()
			return e.err
		}
		delete(a.entries, name)
	}
	f, ok := a.flights[name]
	if !ok {
		host, network := netsource.Of(source)
		if err := a.admitCheck(name, host, network); err != nil {
			a.mu.Unlock()
			return err
		}
		f = &flight{done: make(chan struct{})}
		if a.flights == nil {
			a.flights = make(map[string]*flight)
		}
		a.flights[name] = f
		a.hold(host, network, 1)
		// The check runs on its own context: waiters with other deadlines
		// share its result, and one cancelled handshake must neither
		// cancel it for the others nor cache a no.
		go a.run(context.WithoutCancel(ctx), name, f, host, network)
	}
	a.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("checking %s: %w", name, ctx.Err())
	}
}

// run performs the check for name (the one of the questions that share
// it) and remembers its answer if it is a verdict. A check that panics is
// an error, not remembered.
func (a *Admission) run(ctx context.Context, name string, f *flight, host, network netip.Prefix) {
	var ttl time.Duration
	var err error
	finished := false
	defer func() {
		if !finished {
			// A panic on this goroutine would take the process down
			// with one broken check.
			err, ttl = fmt.Errorf("checking %s: the check panicked: %v", name, recover()), 0
		}
		a.mu.Lock()
		a.hold(host, network, -1)
		if ttl > 0 {
			a.makeRoom()
			if a.entries == nil {
				a.entries = make(map[string]admissionEntry)
			}
			a.entries[name] = admissionEntry{err: err, expires: a.clock().Add(ttl)}
		}
		delete(a.flights, name)
		f.err = err
		close(f.done)
		a.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(a.CheckTimeout, 30*time.Second))
	defer cancel()
	ttl, err = a.Check(ctx, name)
	switch {
	case err == nil:
		ttl = min(max(ttl, cmp.Or(a.MinTTL, DefaultMinTTL)), a.maxTTL())
	case Definite(err):
		ttl = a.negativeTTL()
	default:
		ttl = 0
	}
	finished = true
}

// Definite reports whether a check's error is a verdict on the name (no
// CNAME, a CNAME elsewhere, a loop), worth remembering, rather than a
// failure to reach one: a lookup that failed or timed out, a nameserver
// that did not answer, a check that ran out of time says nothing about
// the delegation, and the next handshake asks again.
func Definite(err error) bool {
	var transient interface{ Transient() bool }
	if errors.As(err, &transient) {
		return !transient.Transient()
	}
	return !errors.Is(err, ErrLookup) && !errors.Is(err, ErrNSUnreachable) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// makeRoom drops expired entries when the cache is full, and if that is not
// enough, the sixteenth of them that expire soonest (refusals of a flood of
// unknown names go before longer-lived admissions). Called with a.mu held.
func (a *Admission) makeRoom() {
	limit := a.maxEntries()
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

// Checking returns how many checks are under way.
func (a *Admission) Checking() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.flights)
}

// Len returns how many answers are remembered.
func (a *Admission) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

func (a *Admission) maxEntries() int {
	if a.MaxEntries > 0 {
		return a.MaxEntries
	}
	return 10000
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
