package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Resolver sends queries to recursive resolvers and caches the answers for
// their TTL, so that a busy server does not repeat the same lookups.
type Resolver struct {
	// NameserverPort is the port authoritative servers are asked on
	// directly (drift, propagation): "53" when empty, as everywhere but
	// in tests that run an authoritative server on another port.
	NameserverPort string
	// PrivateNameservers lets nameservers be asked directly at addresses
	// that are not global unicast (loopback, private, link-local): for
	// private deployments and test labs. Off, such addresses are skipped,
	// so that a zone's owner cannot aim our queries at our own network.
	PrivateNameservers bool

	servers []string
	timeout time.Duration
	now     func() time.Time
	// exchange sends one query to one server; tests replace it.
	exchange func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error)

	mu    sync.Mutex
	cache map[question]cached
	// parent, if set, is a resolver whose cache this one reads but never
	// fills (Isolated), or, with refresh, fills but never reads
	// (Refreshing).
	parent  *Resolver
	refresh bool
	// budget, if set, bounds the queries this view sends.
	budget *Budget
	// Sent, if set, is told of every query sent: to a recursive resolver,
	// or directly to an authoritative server (direct).
	Sent func(direct bool)
}

// Budget bounds the queries of the resolver views that share it: the DNS
// work one request for people (the admin API, the check command) may cause.
type Budget struct {
	limit int64
	spent atomic.Int64
}

// NewBudget returns a budget of n queries.
func NewBudget(n int) *Budget { return &Budget{limit: int64(n)} }

// spend takes one query from b (nil: no bound), or says it is spent.
func (b *Budget) spend() error {
	if b == nil || b.spent.Add(1) <= b.limit {
		return nil
	}
	return fmt.Errorf("%w: this request's budget of %d queries is spent", ErrLookup, b.limit)
}

// Spent is how many queries were asked of b, refused ones included.
func (b *Budget) Spent() int { return int(min(b.spent.Load(), b.limit)) }

// WithBudget returns an isolated view of r (see Isolated) whose queries b
// bounds.
func (r *Resolver) WithBudget(b *Budget) *Resolver {
	v := r.Isolated()
	v.budget = b
	return v
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
	if err := ValidResolver(s); err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	if ip := strings.Trim(s, "[]"); net.ParseIP(ip) != nil {
		return net.JoinHostPort(ip, "53"), nil
	}
	return s, nil
}

// Servers returns the resolvers' addresses.
func (r *Resolver) Servers() []string {
	if r == nil {
		return nil
	}
	return r.servers
}

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
		msg, err := r.send(ctx, req, server, false)
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

// send sends one query to one server, within the view's budget, and tells
// Sent.
func (r *Resolver) send(ctx context.Context, req *dns.Msg, server string, direct bool) (*dns.Msg, error) {
	if err := r.budget.spend(); err != nil {
		return nil, err
	}
	if r.Sent != nil {
		r.Sent(direct)
	}
	return r.exchange(ctx, req, server)
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

// Isolated returns a resolver that asks the same servers and reads r's
// cache, but keeps its own answers to itself: diagnostic lookups (the admin
// API's checks of arbitrary names) must not push the answers that live
// challenges use out of r's bounded cache.
func (r *Resolver) Isolated() *Resolver {
	return &Resolver{NameserverPort: r.NameserverPort, PrivateNameservers: r.PrivateNameservers, Sent: r.Sent, servers: r.servers, timeout: r.timeout, now: r.now, exchange: r.exchange, cache: make(map[question]cached), parent: r}
}

// Refreshing returns a resolver that asks the same servers without
// reading any cache and stores what it learns in r's: a recheck on request
// must see a record just published, and what it saw must be what live
// challenges see next.
func (r *Resolver) Refreshing() *Resolver {
	return &Resolver{NameserverPort: r.NameserverPort, PrivateNameservers: r.PrivateNameservers, Sent: r.Sent, servers: r.servers, timeout: r.timeout, now: r.now, exchange: r.exchange, parent: r, refresh: true}
}

func (r *Resolver) lookupCache(q question) (cached, bool) {
	if r.refresh {
		return cached{}, false
	}
	r.mu.Lock()
	c, ok := r.cache[q]
	r.mu.Unlock()
	if ok && r.now().Before(c.expires) {
		return c, true
	}
	if r.parent != nil {
		return r.parent.lookupCache(q)
	}
	return cached{}, false
}

func (r *Resolver) store(q question, msg *dns.Msg, server string) {
	if r.refresh {
		r.parent.store(q, msg, server)
		return
	}
	ttl := answerTTL(msg)
	if ttl <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(q, msg, server, ttl)
	r.putZoneHints(q, msg, server, ttl)
}

// zoneHintDepth bounds the names a negative answer gives zone hints for:
// the zone lookups that follow a chain's lookups ask at the challenge name
// and at its parent.
const zoneHintDepth = 3

// putZoneHints stores what a negative answer says about zones: an NXDOMAIN
// or NODATA answer for q with the SOA of zone Z in its authority section
// says that q and its ancestors below Z lie in Z, exactly what an SOA
// question at each of them would be answered (NODATA with that SOA). A
// periodic check that resolved _acme-challenge.<name> then finds its zone
// without one SOA query per name. Called with r.mu held.
func (r *Resolver) putZoneHints(q question, msg *dns.Msg, server string, ttl time.Duration) {
	if len(msg.Answer) > 0 {
		return
	}
	var soa *dns.SOA
	for _, rr := range msg.Ns {
		if s, ok := rr.(*dns.SOA); ok && InZone(q.name, s.Hdr.Name) {
			soa = s
		}
	}
	if soa == nil {
		return
	}
	hint := new(dns.Msg)
	hint.Ns = []dns.RR{soa}
	for n, i := Normalize(q.name), 0; i < zoneHintDepth && n != Normalize(soa.Hdr.Name) && InZone(n, soa.Hdr.Name); n, i = parent(n), i+1 {
		if hq := (question{FQDN(n), dns.TypeSOA}); hq != q {
			if _, known := r.cache[hq]; !known {
				r.put(hq, hint, server, ttl)
			}
		}
	}
}

// put stores one answer, within the cache's bound. Called with r.mu held.
func (r *Resolver) put(q question, msg *dns.Msg, server string, ttl time.Duration) {
	now := r.now()
	if len(r.cache) >= maxCacheEntries {
		for k, c := range r.cache {
			if !now.Before(c.expires) {
				delete(r.cache, k)
			}
		}
		// Full of live answers: one of them (the map's iteration order
		// picks which) makes room. Refusing the new answer instead would
		// shut out, for as long as the cache stays full, the answers that
		// every name shares (a zone's nameservers, its SOA), which are then
		// asked again for each name: a monitor run over more names than
		// the cache holds paid that once per name.
		for k := range r.cache {
			if len(r.cache) < maxCacheEntries {
				break
			}
			delete(r.cache, k)
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

// AskAuthoritative sends one non-recursive query to one server, bypassing
// every cache, within timeout (the resolver's own if zero). A server that
// answers neither NOERROR nor NXDOMAIN is an error.
func (r *Resolver) AskAuthoritative(ctx context.Context, server, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(FQDN(name), qtype)
	req.RecursionDesired = false
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	msg, err := r.send(ctx, req, server, true)
	if err != nil {
		return nil, err
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s answered %s", server, dns.RcodeToString[msg.Rcode])
	}
	return msg, nil
}
