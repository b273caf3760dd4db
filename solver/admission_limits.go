package solver

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/time/rate"
)

// ErrOverload marks a refusal for load: too many checks under way (in
// all, for one client address or network), or too many for one
// registrable domain. It says nothing about the name, so it is never
// remembered: the next handshake asks again.
var ErrOverload = errors.New("too many delegation checks")

// Bounds of the admission, as OverloadError.Limit names them (the
// permission module's fields).
const (
	LimitMaxChecks  = "max_checks"
	LimitPerAddress = "max_checks_per_address"
	LimitPerNetwork = "max_checks_per_network"
	LimitDomainRate = "domain_rate"
)

// OverloadError is a refusal for load; Limit is the bound that refused.
type OverloadError struct {
	Limit string
	err   error // wraps ErrOverload
}

func (e *OverloadError) Error() string { return e.err.Error() }
func (e *OverloadError) Unwrap() error { return e.err }

func overload(limit, name, format string, args ...any) error {
	return &OverloadError{Limit: limit, err: fmt.Errorf("checking %s: %w: %s", name, ErrOverload, fmt.Sprintf(format, args...))}
}

// Defaults of the admission's bounds.
const (
	// DefaultMaxChecks: a check that waits on a nameserver that never
	// answers holds one goroutine and one socket for up to CheckTimeout;
	// 64 of them stay far below any ulimit -n and a few MiB, while 64
	// checks of healthy zones (tens of milliseconds each) admit hundreds
	// of new names a second, more than any CA issues.
	DefaultMaxChecks = 64
	// DefaultMaxChecksPerAddress: a browser asks for one new name at a
	// time, a platform's own monitoring for a few; 4 lets a client behind
	// a NAT be many of them once the pool is contended, and 16 flooding
	// addresses of distinct networks still leave the reserved quarter of
	// max_checks to the others.
	DefaultMaxChecksPerAddress = 4
	// DefaultMaxChecksPerNetwork: one IPv4 /24 or IPv6 /48 (a site, a
	// hosting customer) starts no more checks once half of the default
	// max_checks are under way and it holds a quarter, however many
	// addresses it floods from.
	DefaultMaxChecksPerNetwork = 16
	// DefaultDomainRate: a customer who points 30 names at the platform
	// within a minute has them all checked at once; a flood of made-up
	// names under one domain gets 30 checks a minute, not one per name.
	DefaultDomainRate = 30
	// DefaultMinTTL: one check per name per 30 s at most, whatever the
	// chain's TTLs; a customer who removes the CNAME is refused within
	// it (a recheck on request forgets the name at once).
	DefaultMinTTL = 30 * time.Second
)

// admitCheck decides whether a check for name, asked by a client of host
// and network (invalid prefixes: no client), may start now. While fewer
// than half of MaxChecks are under way, any client may start one (a
// platform's script that warms 30 new names at once is served at once);
// from then on each client's share is taken before the pool's: refused
// when its address or network has its most under way, when MaxChecks are
// under way (the last quarter only for addresses with none), or when
// name's registrable domain spent its budget. Called with a.mu held.
func (a *Admission) admitCheck(name string, host, network netip.Prefix) error {
	limit := cmp.Or(a.MaxChecks, DefaultMaxChecks)
	running := len(a.flights)
	perAddress := bound(a.MaxChecksPerAddress, DefaultMaxChecksPerAddress)
	if contended := running >= limit/2; contended {
		if host.IsValid() && perAddress >= 0 && a.held[host] >= perAddress {
			return overload(LimitPerAddress, name, "%d under way for the client %s, the most max_checks_per_address allows once half of max_checks are under way", a.held[host], host)
		}
		if perNetwork := bound(a.MaxChecksPerNetwork, DefaultMaxChecksPerNetwork); network.IsValid() && perNetwork >= 0 && a.held[network] >= perNetwork {
			return overload(LimitPerNetwork, name, "%d under way for the clients in %s, the most max_checks_per_network allows once half of max_checks are under way", a.held[network], network)
		}
	}
	if running >= limit {
		return overload(LimitMaxChecks, name, "%d under way, the most max_checks allows", running)
	}
	// The reserve is part of the per-address share: off with it.
	if reserved := limit / 4; host.IsValid() && perAddress >= 0 && a.held[host] > 0 && running >= limit-reserved {
		return overload(LimitMaxChecks, name, "%d of max_checks %d under way, the last %d kept for clients with none (%s has %d)", running, limit, reserved, host, a.held[host])
	}
	return a.spendDomainBudget(name)
}

// bound is a limit field's value: its default when zero, -1 (off) when
// negative.
func bound(v, def int) int {
	if v < 0 {
		return -1
	}
	return cmp.Or(v, def)
}

// hold adds n to the checks under way of host and network, dropping a
// count that reaches 0: the map holds at most two keys per check under
// way. Called with a.mu held.
func (a *Admission) hold(host, network netip.Prefix, n int) {
	for _, p := range []netip.Prefix{host, network} {
		if !p.IsValid() {
			continue
		}
		if a.held == nil {
			a.held = make(map[netip.Prefix]int)
		}
		if a.held[p] += n; a.held[p] <= 0 {
			delete(a.held, p)
		}
	}
}

// domainBudget is a registrable domain's budget of checks: DomainRate a
// minute, as many at once.
type domainBudget struct {
	*rate.Limiter
	used time.Time
}

// spendDomainBudget takes one check from the budget of name's registrable
// domain. Called with a.mu held.
func (a *Admission) spendDomainBudget(name string) error {
	perMinute := cmp.Or(a.DomainRate, DefaultDomainRate)
	if perMinute < 0 {
		return nil
	}
	domain := RegistrableDomain(name)
	now := a.clock()
	b, ok := a.buckets[domain]
	if !ok {
		a.makeBucketRoom(now)
		b = &domainBudget{Limiter: rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)}
		if a.buckets == nil {
			a.buckets = make(map[string]*domainBudget)
		}
		a.buckets[domain] = b
	}
	b.used = now
	if !b.AllowN(now, 1) {
		return overload(LimitDomainRate, name, "more than %d a minute for names under %s (domain_rate)", perMinute, domain)
	}
	return nil
}

// makeBucketRoom keeps the budgets as bounded as the answers: when there
// are MaxEntries, those refilled by now are dropped (a full budget and no
// budget are the same), and if none is, the longest unused one. Called
// with a.mu held.
func (a *Admission) makeBucketRoom(now time.Time) {
	if len(a.buckets) < a.maxEntries() {
		return
	}
	var oldest string
	for k, b := range a.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(a.buckets, k)
		} else if oldest == "" || b.used.Before(a.buckets[oldest].used) {
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
