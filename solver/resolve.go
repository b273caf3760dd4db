package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Errors a CNAME chain can end in. They are wrapped with the names involved.
var (
	ErrLoop        = errors.New("CNAME loop")
	ErrTooManyHops = errors.New("CNAME chain too long")
	ErrWildcard    = errors.New("CNAME synthesised by a wildcard record")
	ErrLookup      = errors.New("DNS lookup failed")
)

// DefaultMaxHops caps CNAME chains. Let's Encrypt's Unbound gives up after
// about 8 restarts, so a longer chain could not validate anyway.
const DefaultMaxHops = 8

// Resolver sends queries to recursive resolvers and caches the answers for
// their TTL, so that a busy server does not repeat the same lookups.
type Resolver struct {
	servers []string
	timeout time.Duration
	now     func() time.Time
	// exchange sends one query to one server; tests replace it.
	exchange func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error)

	mu    sync.Mutex
	cache map[question]cached
}

type question struct {
	name  string
	qtype uint16
}

type cached struct {
	msg     *dns.Msg
	server  string
	expires time.Time
}

const (
	maxCacheTTL     = 60 * time.Second
	maxCacheEntries = 10000
	defaultTimeout  = 5 * time.Second
)

// NewResolver returns a resolver that asks servers (host or host:port) in
// order. With no servers it uses those of /etc/resolv.conf.
func NewResolver(servers []string, timeout time.Duration) (*Resolver, error) {
	if len(servers) == 0 {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no resolvers configured and none in /etc/resolv.conf: %w", err)
		}
		servers = conf.Servers
	}
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	r := &Resolver{timeout: timeout, now: time.Now, cache: make(map[question]cached)}
	r.exchange = func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
		return exchange(ctx, req, server, timeout)
	}
	for _, s := range servers {
		addr, err := resolverAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, addr)
	}
	return r, nil
}

func resolverAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if net.ParseIP(strings.Trim(s, "[]")) == nil {
		return "", fmt.Errorf("resolver %q is not an IP address or IP:port", s)
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53"), nil
}

// Servers returns the resolvers' addresses.
func (r *Resolver) Servers() []string { return r.servers }

// Query asks the resolvers for name/qtype with recursion desired. A SERVFAIL
// or REFUSED answer is an error; NXDOMAIN and NODATA are answers.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	msg, _, err := r.queryFrom(ctx, name, qtype)
	return msg, err
}

// queryFrom is Query that also says which resolver answered (for a cached
// answer: the one that answered first).
func (r *Resolver) queryFrom(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, error) {
	q := question{FQDN(name), qtype}
	if c, ok := r.lookupCache(q); ok {
		return c.msg, c.server, nil
	}
	req := new(dns.Msg)
	req.SetQuestion(q.name, qtype)
	req.RecursionDesired = true
	req.SetEdns0(4096, false)

	var errs []error
	for _, server := range r.servers {
		msg, err := r.exchange(ctx, req, server)
		if err == nil && msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
			err = fmt.Errorf("%s answered %s", server, dns.RcodeToString[msg.Rcode])
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.store(q, msg, server)
		return msg, server, nil
	}
	return nil, "", fmt.Errorf("%w: %s %s: %w", ErrLookup, dns.TypeToString[qtype], q.name, errors.Join(errs...))
}

// exchange sends one query to one server over UDP, retrying over TCP when the
// answer is truncated.
func exchange(ctx context.Context, req *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, req, server)
	if err == nil && msg.Truncated {
		msg, _, err = (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, req, server)
	}
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", server, err)
	}
	return msg, nil
}

func (r *Resolver) lookupCache(q question) (cached, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cache[q]
	if !ok || !r.now().Before(c.expires) {
		return cached{}, false
	}
	return c, true
}

func (r *Resolver) store(q question, msg *dns.Msg, server string) {
	ttl := answerTTL(msg)
	if ttl <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if len(r.cache) >= maxCacheEntries {
		for k, c := range r.cache {
			if !now.Before(c.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCacheEntries {
			clear(r.cache)
		}
	}
	r.cache[q] = cached{msg: msg, server: server, expires: now.Add(ttl)}
}

// answerTTL is how long msg may be cached: the smallest TTL in its answer, or
// for a negative answer the SOA's negative TTL (RFC 2308), capped.
func answerTTL(msg *dns.Msg) time.Duration {
	ttl := uint32(maxCacheTTL / time.Second)
	if len(msg.Answer) > 0 {
		for _, rr := range msg.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	} else {
		neg := uint32(0)
		for _, rr := range msg.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				neg = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
		ttl = min(ttl, neg)
	}
	return time.Duration(ttl) * time.Second
}

// Hop is one CNAME record of a chain.
type Hop struct {
	Owner  string `json:"owner"`
	Target string `json:"target"`
	TTL    uint32 `json:"ttl"`
	// Server is the resolver that answered for this hop.
	Server string `json:"server"`
}

// Chain is the CNAME chain from a start name to the name where it ends.
type Chain struct {
	Start string `json:"start"`
	Hops  []Hop  `json:"hops,omitempty"`
	End   string `json:"end"`
}

// wildcardProbeLabel is looked up next to every CNAME owner: if it gets the
// same CNAME, the owner's record is (or is indistinguishable from) one
// synthesised by a wildcard, and following it would write into a zone the
// domain's owner never pointed at us.
const wildcardProbeLabel = "_dns-alias-wildcard-probe"

// Follow resolves the CNAME chain that starts at name, one hop at a time,
// comparing owners case-insensitively. It stops at the first name without a
// CNAME and fails on loops, on more than maxHops hops, on lookup errors and on
// wildcard-synthesised CNAMEs.
func (r *Resolver) Follow(ctx context.Context, name string, maxHops int) (Chain, error) {
	if maxHops <= 0 {
		maxHops = DefaultMaxHops
	}
	chain := Chain{Start: Normalize(name)}
	seen := map[string]bool{chain.Start: true}
	current := chain.Start
	for {
		hop, err := r.cname(ctx, current)
		if err != nil {
			return chain, err
		}
		target := hop.Target
		if target == "" {
			chain.End = current
			return chain, nil
		}
		if synthesised, err := r.isWildcardSynthesised(ctx, current, target); err != nil {
			return chain, err
		} else if synthesised {
			return chain, fmt.Errorf("%w: %s CNAME %s is what any name next to it gets: a wildcard record at *.%s (or above) synthesises it", ErrWildcard, current, target, parent(current))
		}
		chain.Hops = append(chain.Hops, hop)
		if seen[target] {
			return chain, fmt.Errorf("%w: %s points back to %s", ErrLoop, current, target)
		}
		if len(chain.Hops) > maxHops {
			return chain, fmt.Errorf("%w: more than %d hops from %s", ErrTooManyHops, maxHops, chain.Start)
		}
		seen[target] = true
		current = target
	}
}

// cname returns the CNAME owned by name, or a Hop without target if there
// is none.
func (r *Resolver) cname(ctx context.Context, name string) (Hop, error) {
	msg, server, err := r.queryFrom(ctx, name, dns.TypeCNAME)
	if err != nil {
		return Hop{}, err
	}
	for _, rr := range msg.Answer {
		if c, ok := rr.(*dns.CNAME); ok && Normalize(c.Hdr.Name) == Normalize(name) {
			return Hop{Owner: Normalize(name), Target: Normalize(c.Target), TTL: c.Hdr.Ttl, Server: server}, nil
		}
	}
	return Hop{}, nil
}

func (r *Resolver) isWildcardSynthesised(ctx context.Context, owner, target string) (bool, error) {
	p := parent(owner)
	if p == "" {
		return false, nil
	}
	probe, err := r.cname(ctx, wildcardProbeLabel+"."+p)
	if err != nil {
		return false, err
	}
	return probe.Target == target, nil
}

func parent(name string) string {
	_, p, _ := strings.Cut(Normalize(name), ".")
	return p
}

// FindZone returns the zone that name lies in, by the SOA record that the
// resolvers return for it or for the closest enclosing name that has one.
// CNAME answers are skipped: the zone of the name itself is wanted.
func (r *Resolver) FindZone(ctx context.Context, name string) (string, error) {
	for n := Normalize(name); n != ""; n = parent(n) {
		msg, err := r.Query(ctx, n, dns.TypeSOA)
		if err != nil {
			return "", fmt.Errorf("finding the zone of %s: %w", Normalize(name), err)
		}
		// slices.Concat, not append: msg is shared through the cache.
		for _, rr := range slices.Concat(msg.Answer, msg.Ns) {
			if soa, ok := rr.(*dns.SOA); ok && InZone(n, soa.Hdr.Name) {
				return Normalize(soa.Hdr.Name), nil
			}
		}
	}
	return "", fmt.Errorf("finding the zone of %s: no SOA record found up to the root", Normalize(name))
}
