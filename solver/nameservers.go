package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Nameserver is one NS of a zone with the addresses ("ip:port") it is
// asked at, or the reason it has none (ErrNotAsked: left out by a bound).
type Nameserver struct {
	Name  string
	Addrs []string
	Err   error
}

// Bounds of the nameservers of one zone that are asked directly. The
// owner of a production zone chooses its NS records and their addresses,
// and a handshake can make the gate or a monitor run ask them: one name
// must not become hundreds of packets at addresses someone else picked.
const (
	// MaxNameservers: the root zone is served by 13 names, and a zone
	// that lists more gains no new independent view from the rest (a
	// zone's servers are replicas of one master or a few); the first 13
	// by name are asked, the same ones every time.
	MaxNameservers = 13
	// MaxNameserverAddrs: one IPv4 and one IPv6 address per name is what
	// a validating CA reaches a server at; more are the same server.
	MaxNameserverAddrs = 2
)

// ErrNotAsked marks a nameserver that was not asked: beyond
// MaxNameservers, or at addresses that are not global unicast.
var ErrNotAsked = errors.New("not asked")

// Nameservers returns the NS of zone, as the resolvers see them, sorted by
// name, with the addresses to ask them at (see nameservers for the bounds).
func (r *Resolver) Nameservers(ctx context.Context, zone string) ([]Nameserver, error) {
	msg, err := r.Query(ctx, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("looking up the nameservers of %s: %w", Normalize(zone), err)
	}
	var names []string
	for _, rr := range msg.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			names = append(names, Normalize(ns.Ns))
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("looking up the nameservers of %s: no NS records", Normalize(zone))
	}
	return r.nameservers(ctx, names, nil), nil
}

// nameservers finds the addresses of the named servers, from glue if it
// has them: only for the first MaxNameservers names, at most
// MaxNameserverAddrs each, each address once, and only global unicast
// addresses unless PrivateNameservers allows the rest. The names left out
// carry ErrNotAsked.
func (r *Resolver) nameservers(ctx context.Context, names []string, glue []dns.RR) []Nameserver {
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]Nameserver, 0, len(names))
	seen := map[string]bool{}
	for i, name := range names {
		h := Nameserver{Name: name}
		if i >= MaxNameservers {
			h.Err = fmt.Errorf("%w: only the first %d of the %d nameservers (by name) are asked", ErrNotAsked, MaxNameservers, len(names))
			out = append(out, h)
			continue
		}
		addrs := r.glue(glue, name)
		if len(addrs) == 0 {
			addrs, h.Err = r.addresses(ctx, name)
		}
		private := false
		for _, a := range addrs {
			switch {
			case len(h.Addrs) == MaxNameserverAddrs || seen[a]:
			case !r.PrivateNameservers && !globalUnicast(a):
				private = true
			default:
				seen[a] = true
				h.Addrs = append(h.Addrs, a)
			}
		}
		if len(h.Addrs) == 0 && private {
			h.Err = fmt.Errorf("%w: its addresses are not global unicast (loopback, private or link-local; private_nameservers allows them)", ErrNotAsked)
		}
		out = append(out, h)
	}
	return out
}

// globalUnicast reports whether addr ("ip:port") is a public unicast
// address: not loopback, private, link-local, multicast or unspecified.
func globalUnicast(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

func (r *Resolver) addresses(ctx context.Context, host string) ([]string, error) {
	var addrs []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		msg, err := r.Query(ctx, host, qtype)
		if err != nil {
			if qtype == dns.TypeA {
				return nil, err
			}
			continue
		}
		addrs = append(addrs, r.glue(msg.Answer, host)...)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("nameserver %s has no address", host)
	}
	return addrs, nil
}

// glue returns the addresses ("ip:port") that rrs give for host.
func (r *Resolver) glue(rrs []dns.RR, host string) []string {
	port := r.NameserverPort
	if port == "" {
		port = "53"
	}
	var addrs []string
	for _, rr := range rrs {
		if Normalize(rr.Header().Name) != host {
			continue
		}
		switch a := rr.(type) {
		case *dns.A:
			addrs = append(addrs, net.JoinHostPort(a.A.String(), port))
		case *dns.AAAA:
			addrs = append(addrs, net.JoinHostPort(a.AAAA.String(), port))
		}
	}
	return addrs
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

// ZoneServers returns the zone that name lies in and its nameservers. When
// the resolvers cannot answer for the zone at all (every nameserver of it
// down, a lame delegation), the delegation is read from the closest
// enclosing zone that does resolve, by asking its servers directly, so that
// a report can name the servers that fail.
func (r *Resolver) ZoneServers(ctx context.Context, name string, timeout time.Duration) (string, []Nameserver, error) {
	zone, err := r.FindZone(ctx, name)
	if err == nil {
		hosts, err := r.Nameservers(ctx, zone)
		return zone, hosts, err
	}
	enclosing, perr := r.findZone(ctx, parent(name), true)
	if perr != nil {
		return "", nil, err
	}
	parentHosts, perr := r.Nameservers(ctx, enclosing)
	if perr != nil {
		return "", nil, err
	}
	for _, h := range parentHosts {
		for _, addr := range h.Addrs {
			if zone, hosts, ok := r.referral(ctx, addr, name, enclosing, timeout); ok {
				return zone, hosts, nil
			}
		}
	}
	return "", nil, err
}

// referral asks the server at addr, authoritative for the enclosing zone,
// where name is delegated to. ok is false when it does not answer usefully.
func (r *Resolver) referral(ctx context.Context, addr, name, enclosing string, timeout time.Duration) (string, []Nameserver, bool) {
	msg, err := r.AskAuthoritative(ctx, addr, name, dns.TypeNS, timeout)
	if err != nil {
		return "", nil, false
	}
	if msg.Authoritative {
		hosts, err := r.Nameservers(ctx, enclosing)
		return enclosing, hosts, err == nil
	}
	zone := ""
	var names []string
	for _, rr := range msg.Ns {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		owner := Normalize(ns.Hdr.Name)
		if !InZone(name, owner) || !InZone(owner, enclosing) || owner == Normalize(enclosing) || (zone != "" && owner != zone) {
			continue
		}
		zone = owner
		names = append(names, Normalize(ns.Ns))
	}
	if zone == "" {
		return "", nil, false
	}
	return zone, r.nameservers(ctx, names, msg.Extra), true
}

// propagationPoll is how often WaitServed asks again: an authoritative
// server usually serves an update within milliseconds.
const propagationPoll = 50 * time.Millisecond

// WaitServed blocks until every authoritative server of zone serves value
// among the TXT records at name, and returns the largest TTL they gave it:
// how long a recursive resolver may keep an answer without it. The CA may
// ask any of them (Let's Encrypt validates from several perspectives), so
// one that lags fails the challenge as surely as none.
func (r *Resolver) WaitServed(ctx context.Context, zone, name, value string) (time.Duration, error) {
	hosts, err := r.Nameservers(ctx, zone)
	if err != nil {
		return 0, err
	}
	type server struct{ name, addr string }
	var pending []server
	var notAsked []error
	for _, h := range hosts {
		switch {
		case errors.Is(h.Err, ErrNotAsked):
			notAsked = append(notAsked, fmt.Errorf("%s: %w", h.Name, h.Err))
		case h.Err != nil:
			return 0, fmt.Errorf("%s: %w", Normalize(zone), h.Err)
		}
		for _, a := range h.Addrs {
			pending = append(pending, server{h.Name, a})
		}
	}
	if len(pending) == 0 {
		return 0, fmt.Errorf("no nameserver of %s can be asked whether it serves the record: %w", Normalize(zone), errors.Join(notAsked...))
	}
	var lastErr error
	var ttl uint32
	for {
		pending = slices.DeleteFunc(pending, func(s server) bool {
			msg, err := r.AskAuthoritative(ctx, s.addr, name, dns.TypeTXT, 0)
			if err != nil {
				lastErr = fmt.Errorf("%s (%s): %w", s.name, s.addr, err)
				return false
			}
			served, t := servesTXT(msg, name, value)
			ttl = max(ttl, t)
			return served
		})
		if len(pending) == 0 {
			return time.Duration(ttl) * time.Second, nil
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, s := range pending {
				names = append(names, fmt.Sprintf("%s (%s)", s.name, s.addr))
			}
			return 0, fmt.Errorf("TXT %s is not served by %s: %w", Normalize(name), strings.Join(names, ", "), errors.Join(ctx.Err(), lastErr))
		case <-time.After(propagationPoll):
		}
	}
}

// WaitRecursive blocks until every resolver answers value among the TXT
// records at name, asking them past this resolver's cache (theirs cannot
// be bypassed: that is what is waited out).
func (r *Resolver) WaitRecursive(ctx context.Context, name, value string) error {
	req := new(dns.Msg)
	req.SetQuestion(FQDN(name), dns.TypeTXT)
	req.RecursionDesired = true
	req.SetEdns0(4096, false)
	pending := slices.Clone(r.servers)
	var lastErr error
	for {
		pending = slices.DeleteFunc(pending, func(server string) bool {
			msg, err := r.send(ctx, req, server, false)
			if err != nil {
				lastErr = err
				return false
			}
			served, _ := servesTXT(msg, name, value)
			return served
		})
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("resolver %s still answers TXT %s without the new value: %w", strings.Join(pending, ", "), Normalize(name), errors.Join(ctx.Err(), lastErr))
		case <-time.After(recursivePoll):
		}
	}
}

// recursivePoll is how often WaitRecursive asks again: what it waits for
// is a cached answer's TTL running out, seconds rather than milliseconds.
const recursivePoll = 250 * time.Millisecond

// servesTXT reports whether msg answers value among the TXT records at
// name, and with which TTL.
func servesTXT(msg *dns.Msg, name, value string) (bool, uint32) {
	for _, rr := range msg.Answer {
		if txt, ok := rr.(*dns.TXT); ok && Normalize(txt.Hdr.Name) == Normalize(name) && strings.Join(txt.Txt, "") == value {
			return true, txt.Hdr.Ttl
		}
	}
	return false, 0
}
