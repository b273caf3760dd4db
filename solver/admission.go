package solver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/sync/singleflight"
)

// ErrOverload marks a refusal for load: too many checks under way, or too
// many for one registrable domain. It says nothing about the name, so it is
// never remembered: the next handshake asks again.
var ErrOverload = errors.New("too many delegation checks")

// Admission remembers whether names may have certificates, so that a flood
// of TLS handshakes for unknown names does not become a flood of DNS
// queries. Concurrent questions about one name share one check. The checks
// under way are bounded in total and per registrable domain: what anonymous
// clients can make it do is bounded by a constant, not by the flood's size.
type Admission struct {
	// Check decides about one name. It returns how long a yes may be
	// remembered (e.g. the smallest TTL of the CNAME chain), or an error
	// that says why not.
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
	// would start one more is refused at once (ErrOverload). Default:
	// DefaultMaxChecks.
	MaxChecks int
	// DomainRate bounds the checks started per minute for the names under
	// one registrable domain (a burst of as many, then one every
	// 1/DomainRate minutes); more are refused at once (ErrOverload). -1
	// turns the bound off. Default: DefaultDomainRate.
	DomainRate int
	// MaxEntries bounds the memory. Default: 10000.
	MaxEntries int
	// CheckTimeout bounds one check. Default: 30 seconds.
	CheckTimeout time.Duration

	now func() time.Time
	// calls shares one check among the concurrent questions about a name.
	calls   singleflight.Group
	mu      sync.Mutex
	entries map[string]admissionEntry
	running int               // checks under way
	buckets map[string]bucket // registrable domain -> its checks' budget
}

// Defaults of the admission's bounds.
const (
	// DefaultMaxChecks: a check that waits on a nameserver that never
	// answers holds one goroutine and one socket for up to CheckTimeout;
	// 64 of them stay far below any ulimit -n and a few MiB, while 64
	// checks of healthy zones (tens of milliseconds each) admit hundreds
	// of new names a second, more than any CA issues.
	DefaultMaxChecks = 64
	// DefaultDomainRate: a customer who points 30 names at the platform
	// within a minute has them all checked at once; a flood of made-up
	// names under one domain gets 30 checks a minute, not one per name.
	DefaultDomainRate = 30
	// DefaultMinTTL: one check per name per 30 s at most, whatever the
	// chain's TTLs; a customer who removes the CNAME is refused within
	// it (a recheck on request forgets the name at once).
	DefaultMinTTL = 30 * time.Second
)

// bucket is a registrable domain's budget of checks: tokens refill at
// DomainRate a minute up to DomainRate.
type bucket struct {
	tokens float64
	at     time.Time
}

type admissionEntry struct {
	err     error
	expires time.Time
}

// Allow returns nil if name may have a certificate, and otherwise the
// reason it may not. A caller whose ctx ends before the answer is known gets
// ctx's error; the check itself runs on, and its answer is remembered for
// the next caller.
func (a *Admission) Allow(ctx context.Context, name string) error {
	name = Normalize(name)
	a.mu.Lock()
	if e, ok := a.entries[name]; ok {
		if a.clock().Before(e.expires) {
			a.mu.Unlock()
			return e.err
		}
		delete(a.entries, name)
	}
	a.mu.Unlock()
	// The check runs on its own context: waiters with other deadlines
	// share its result, and one cancelled handshake must neither cancel
	// it for the others nor cache a no.
	checkCtx := context.WithoutCancel(ctx)
	ch := a.calls.DoChan(name, func() (any, error) { return nil, a.run(checkCtx, name) })
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("checking %s: %w", name, ctx.Err())
	}
}

// admitCheck decides whether a check for name may start now: refused when
// MaxChecks are under way, or when name's registrable domain spent its
// budget. Called with a.mu held.
func (a *Admission) admitCheck(name string) error {
	if limit := cmp.Or(a.MaxChecks, DefaultMaxChecks); a.running >= limit {
		return fmt.Errorf("checking %s: %w: %d under way, the most max_checks allows", name, ErrOverload, limit)
	}
	rate := cmp.Or(a.DomainRate, DefaultDomainRate)
	if rate < 0 {
		return nil
	}
	if a.buckets == nil {
		a.buckets = make(map[string]bucket)
	}
	domain := RegistrableDomain(name)
	now := a.clock()
	b, ok := a.buckets[domain]
	if !ok {
		a.makeBucketRoom(now, rate)
		b = bucket{tokens: float64(rate), at: now}
	}
	b.tokens = min(float64(rate), b.tokens+now.Sub(b.at).Minutes()*float64(rate))
	b.at = now
	if b.tokens < 1 {
		a.buckets[domain] = b
		return fmt.Errorf("checking %s: %w: more than %d a minute for names under %s (domain_rate)", name, ErrOverload, rate, domain)
	}
	b.tokens--
	a.buckets[domain] = b
	return nil
}

// makeBucketRoom keeps the budgets as bounded as the answers: when there
// are MaxEntries, those refilled by now are dropped (a full bucket and no
// bucket are the same), and if none is, the longest unused one. Called
// with a.mu held.
func (a *Admission) makeBucketRoom(now time.Time, rate int) {
	if len(a.buckets) < a.maxEntries() {
		return
	}
	var oldest string
	for k, b := range a.buckets {
		if b.tokens+now.Sub(b.at).Minutes()*float64(rate) >= float64(rate) {
			delete(a.buckets, k)
		} else if oldest == "" || b.at.Before(a.buckets[oldest].at) {
			oldest = k
		}
	}
	if len(a.buckets) >= a.maxEntries() {
		delete(a.buckets, oldest)
	}
}

// RegistrableDomain is the domain name under which a registrant creates
// names at will (eTLD+1 by the public suffix list): the unit that one
// party's names share a budget under. A name that is a public suffix
// itself is its own.
func RegistrableDomain(name string) string {
	name = Normalize(name)
	if d, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return d
	}
	return name
}

// run admits and performs the check for name (the one call of the questions
// that share it) and remembers its answer. A refusal for load is not
// remembered, nor is a check that panics, which is an error.
func (a *Admission) run(ctx context.Context, name string) (err error) {
	a.mu.Lock()
	err = a.admitCheck(name)
	if err == nil {
		a.running++
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	var ttl time.Duration
	finished := false
	defer func() {
		if !finished {
			// singleflight's DoChan would re-panic on a goroutine of its
			// own, taking the process down with one broken check.
			err, ttl = fmt.Errorf("checking %s: the check panicked: %v", name, recover()), 0
		}
		a.mu.Lock()
		a.running--
		if ttl > 0 {
			a.makeRoom()
			if a.entries == nil {
				a.entries = make(map[string]admissionEntry)
			}
			a.entries[name] = admissionEntry{err: err, expires: a.clock().Add(ttl)}
		}
		a.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(a.CheckTimeout, 30*time.Second))
	defer cancel()
	ttl, err = a.Check(ctx, name)
	if err == nil {
		ttl = min(max(ttl, cmp.Or(a.MinTTL, DefaultMinTTL)), a.maxTTL())
	} else {
		ttl = a.negativeTTL()
	}
	finished = true
	return err
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
	return a.running
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
