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
	// 20: a wrong-key flood from one source costs 5 bcrypt checks a
	// second.
	SourceRate  float64
	SourceBurst int
	// Sources is how many sources' rates are tracked at once; default
	// 4096 (about 100 bytes each: under half a MiB). When it is full, a
	// new source takes the place of one whose bucket is full again (idle
	// for burst/rate seconds); if there is none, it is refused.
	Sources int
	// ConcurrentKeyChecks is how many bcrypt comparisons run at once;
	// default 4 (a comparison takes about 50-100 ms of one core, so 4
	// cap the key checks at about 40-80 a second on any machine); a
	// request finding them all busy is refused at once, never queued.
	ConcurrentKeyChecks int
}

func (l Limits) withDefaults() Limits {
	if l.AccountRate <= 0 {
		l.AccountRate = 1
	}
	if l.AccountBurst <= 0 {
		l.AccountBurst = 10
	}
	if l.SourceRate <= 0 {
		l.SourceRate = 5
	}
	if l.SourceBurst <= 0 {
		l.SourceBurst = 20
	}
	if l.Sources <= 0 {
		l.Sources = 4096
	}
	if l.ConcurrentKeyChecks <= 0 {
		l.ConcurrentKeyChecks = 4
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

func (l *limiter) idle() bool { return l.TokensAt(l.now()) >= float64(l.Burst()) }

// sourceLimits holds a bucket per source, at most limits.Sources of them.
type sourceLimits struct {
	limits Limits
	now    func() time.Time
	mu     sync.Mutex
	byKey  map[netip.Prefix]*limiter
}

func newSourceLimits(l Limits) *sourceLimits {
	return &sourceLimits{limits: l, now: time.Now, byKey: make(map[netip.Prefix]*limiter)}
}

// sourceKey groups an IPv6 source by its /64, which one host usually
// holds whole.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow takes a token of src's bucket.
func (s *sourceLimits) allow(src netip.Addr) bool {
	key := sourceKey(src)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.byKey[key]
	if l == nil {
		if len(s.byKey) >= s.limits.Sources && !s.evictIdle() {
			return false
		}
		l = newLimiter(s.limits.SourceRate, s.limits.SourceBurst)
		l.now = s.now
		s.byKey[key] = l
	}
	return l.allow()
}

// evictIdle drops the buckets that are full again (a new one would be the
// same) and reports whether any was. s.mu is held.
func (s *sourceLimits) evictIdle() bool {
	n := len(s.byKey)
	for k, l := range s.byKey {
		if l.idle() {
			delete(s.byKey, k)
		}
	}
	return len(s.byKey) < n
}

// tracked is how many sources have a bucket now.
func (s *sourceLimits) tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}
