package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Resolver sends queries to recursive resolvers, through a cache of their
// answers (answerCache), within a view's budget: it follows CNAME chains
// (Follow) and finds zones (FindZone). What asks authoritative servers
// directly is Authorities, which sends through it.
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
	// exchange sends one query to one server; tests replace it.
	exchange func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error)

	cache *answerCache
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

const defaultTimeout = 5 * time.Second

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
	r := &Resolver{timeout: timeout, cache: newAnswerCache(time.Now)}
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
	if c, ok := r.cache.lookup(q); ok {
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
		r.cache.store(q, msg, server)
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
	return r.view(r.cache.isolated())
}

// Refreshing returns a resolver that asks the same servers without
// reading any cache and stores what it learns in r's: a recheck on request
// must see a record just published, and what it saw must be what live
// challenges see next.
func (r *Resolver) Refreshing() *Resolver {
	return r.view(r.cache.refreshing())
}

// view returns a resolver like r (its servers, settings and Sent, no
// budget) that reads and fills cache.
func (r *Resolver) view(cache *answerCache) *Resolver {
	return &Resolver{NameserverPort: r.NameserverPort, PrivateNameservers: r.PrivateNameservers, Sent: r.Sent, servers: r.servers, timeout: r.timeout, exchange: r.exchange, cache: cache}
}

// FindZone returns the zone that name lies in, by the SOA record that the
// resolvers return for it or for the closest enclosing name that has one.
// CNAME answers are skipped: the zone of the name itself is wanted.
//
// certmagic's FindZoneByFQDN does the same walk, but solver imports no
// Caddy code, and that walk goes through certmagic's own package-level
// SOA cache and resolvers: outside this Resolver's per-request query
// budgets (Budget), its isolated and refreshing views, its bounded cache
// and its Sent counter, which every other lookup of a check goes through.
func (r *Resolver) FindZone(ctx context.Context, name string) (string, error) {
	return r.findZone(ctx, name, false)
}

// findZone walks up from name to the first name with an SOA. With
// pastFailures it walks on past names the resolvers fail on, to the closest
// enclosing zone that resolves.
func (r *Resolver) findZone(ctx context.Context, name string, pastFailures bool) (string, error) {
	var errs []error
	for n := Normalize(name); n != ""; n = parent(n) {
		msg, err := r.Query(ctx, n, dns.TypeSOA)
		if err != nil {
			if !pastFailures {
				return "", fmt.Errorf("finding the zone of %s: %w", Normalize(name), err)
			}
			errs = append(errs, err)
			continue
		}
		// slices.Concat, not append: msg is shared through the cache.
		for _, rr := range slices.Concat(msg.Answer, msg.Ns) {
			if soa, ok := rr.(*dns.SOA); ok && InZone(n, soa.Hdr.Name) {
				return Normalize(soa.Hdr.Name), nil
			}
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("no zone encloses %s: %w", Normalize(name), errors.Join(errs...))
	}
	return "", fmt.Errorf("finding the zone of %s: no SOA record found up to the root (resolvers: %s)", Normalize(name), strings.Join(r.servers, ", "))
}
