package acmednsserver

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bounds what clients may make the server do. Zero fields take the
// defaults.
type Limits struct {
	// Updates per second an account may make, and its burst. An ACME
	// client makes one update per identifier of an order (two for an
	// apex and its wildcard); default 1/s, burst 10.
	AccountRate  float64
	AccountBurst int
	// Requests per second one source (an IPv4 address, an IPv6 /64) may
	// make before its key is checked, and its burst; default 5/s, burst
	// 20.
	SourceRate  float64
	SourceBurst int
	// Failed key checks per second a source may cause, and their burst;
	// default one every 30 s, burst 2. A source without one left is
	// refused before its key is checked, unless the key is one its
	// account verified before (which costs no key check): a wrong-key
	// flood from one source costs a bcrypt check every 30 s.
	SourceFailedRate  float64
	SourceFailedBurst int
	// The same for a source's network (an IPv4 /24, an IPv6 /48), which
	// its sources share; default one every 10 s, burst 4: a flood from
	// every address of a network costs a cost-14 check (1-1.5 s of a
	// core) every 10 s.
	NetworkFailedRate  float64
	NetworkFailedBurst int
	// Sources is how many sources (and, apart, how many networks) are
	// tracked at once; default 4096 (about 300 bytes a source, 200 a
	// network: under 2 MiB both). When it is full, a new one takes the
	// place of the one seen longest ago, in O(1): a new source is never
	// shut out.
	Sources int
	// ConcurrentKeyChecks is how many bcrypt comparisons run at once;
	// default 4. One network has at most one of them (or waiting for
	// one) at a time, so a flood from one network, however many
	// addresses it has, takes at most one.
	ConcurrentKeyChecks int
	// KeyCheckQueue is how many requests may wait for a key check (at
	// most 4 of one network), served one network after another in turn;
	// default 64. KeyCheckWait is how long one waits before it is
	// refused with 503 busy; default 3 s, so that a client's first
	// update (a wait and a 1-1.5 s check at cost 14) answers within 5 s.
	KeyCheckQueue int
	KeyCheckWait  time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.AccountRate, 1)
	defInt(&l.AccountBurst, 10)
	def(&l.SourceRate, 5)
	defInt(&l.SourceBurst, 20)
	def(&l.SourceFailedRate, 1.0/30)
	defInt(&l.SourceFailedBurst, 2)
	def(&l.NetworkFailedRate, 0.1)
	defInt(&l.NetworkFailedBurst, 4)
	defInt(&l.Sources, 4096)
	defInt(&l.ConcurrentKeyChecks, 4)
	defInt(&l.KeyCheckQueue, 64)
	if l.KeyCheckWait <= 0 {
		l.KeyCheckWait = 3 * time.Second
	}
	return l
}

// limiter is a token bucket with a clock that tests can set.
type limiter struct {
	*rate.Limiter
	now func() time.Time
}

func newLimiter(r float64, burst int) *limiter {
	return &limiter{Limiter: rate.NewLimiter(rate.Limit(r), burst), now: time.Now}
}

func (l *limiter) allow() bool { return l.AllowN(l.now(), 1) }

// hasToken reports whether allow would succeed, without taking a token.
func (l *limiter) hasToken() bool { return l.TokensAt(l.now()) >= 1 }

// sourceState is what is tracked of one source.
type sourceState struct {
	requests *limiter // before the key check
	failed   *limiter // failed key checks
}

// sourceLimits holds the buckets of sources and of their networks, at
// most limits.Sources of each, the ones seen longest ago giving way.
type sourceLimits struct {
	limits   Limits
	now      func() time.Time
	mu       sync.Mutex
	sources  *lru[netip.Prefix, *sourceState]
	networks *lru[netip.Prefix, *limiter] // failed key checks
}

func newSourceLimits(l Limits) *sourceLimits {
	return &sourceLimits{limits: l, now: time.Now,
		sources: newLRU[netip.Prefix, *sourceState](l.Sources), networks: newLRU[netip.Prefix, *limiter](l.Sources)}
}

// sourceKey groups an IPv6 source by its /64, which one host usually
// holds whole.
func sourceKey(a netip.Addr) netip.Prefix { return prefixOf(a, 32, 64) }

// networkKey is a source's network: an IPv4 /24, an IPv6 /48 (a site's
// usual assignment, 65,536 /64s).
func networkKey(a netip.Addr) netip.Prefix { return prefixOf(a, 24, 48) }

func prefixOf(a netip.Addr, v4, v6 int) netip.Prefix {
	a = a.Unmap()
	bits := v4
	if a.Is6() {
		bits = v6
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow takes a token of src's request bucket.
func (s *sourceLimits) allow(src netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.source(src).requests.allow()
}

// failedChecks reports whether src and its network have a failed key
// check left, and whether either failed one lately (its bucket is not
// full).
func (s *sourceLimits) failedChecks(src netip.Addr) (left, lately bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	source, network := s.source(src).failed, s.network(src)
	left = source.hasToken() && network.hasToken()
	lately = source.TokensAt(source.now()) < float64(source.Burst()) || network.TokensAt(network.now()) < float64(network.Burst())
	return left, lately
}

// failed counts a failed key check against src and its network.
func (s *sourceLimits) failed(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.source(src).failed.allow()
	s.network(src).allow()
}

// source returns src's state, tracking it if it is new. s.mu is held.
func (s *sourceLimits) source(src netip.Addr) *sourceState {
	key := sourceKey(src)
	st, ok := s.sources.get(key)
	if !ok {
		st = &sourceState{requests: s.bucket(s.limits.SourceRate, s.limits.SourceBurst),
			failed: s.bucket(s.limits.SourceFailedRate, s.limits.SourceFailedBurst)}
		s.sources.add(key, st)
	}
	return st
}

// network returns the failed-check bucket of src's network. s.mu is held.
func (s *sourceLimits) network(src netip.Addr) *limiter {
	key := networkKey(src)
	l, ok := s.networks.get(key)
	if !ok {
		l = s.bucket(s.limits.NetworkFailedRate, s.limits.NetworkFailedBurst)
		s.networks.add(key, l)
	}
	return l
}

func (s *sourceLimits) bucket(r float64, burst int) *limiter {
	l := newLimiter(r, burst)
	l.now = s.now
	return l
}

// tracked is how many sources and networks have buckets now.
func (s *sourceLimits) tracked() (sources, networks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sources.len(), s.networks.len()
}
