package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
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

// Authorities asks the authoritative nameservers of zones directly, past
// the recursive resolvers and their caches: which servers a zone has
// (ZoneServers walks the delegation when the resolvers cannot say), what
// one of them answers (Ask), and whether all of them serve a record yet
// (WaitServed). Its Resolver finds the servers' names and addresses and
// sends every query, within that view's budget and counted by its Sent.
type Authorities struct{ r *Resolver }

// Authorities returns r's way to the authoritative servers of zones.
func (r *Resolver) Authorities() Authorities { return Authorities{r} }

// Ask sends one non-recursive query to one server, bypassing every cache,
// within timeout (the resolver's own if zero). A server that answers
// neither NOERROR nor NXDOMAIN is an error.
func (auth Authorities) Ask(ctx context.Context, server, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(FQDN(name), qtype)
	req.RecursionDesired = false
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	msg, err := auth.r.send(ctx, req, server, true)
	if err != nil {
		return nil, err
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s answered %s", server, dns.RcodeToString[msg.Rcode])
	}
	return msg, nil
}

// Nameservers returns the NS of zone, as the resolvers see them, sorted by
// name, with the addresses to ask them at (see nameservers for the bounds).
func (auth Authorities) Nameservers(ctx context.Context, zone string) ([]Nameserver, error) {
	msg, err := auth.r.Query(ctx, zone, dns.TypeNS)
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
	return auth.nameservers(ctx, names, nil), nil
}

// nameservers finds the addresses of the named servers, from glue if it
// has them: only for the first MaxNameservers names, at most
// MaxNameserverAddrs each, each address once, and only global unicast
// addresses unless PrivateNameservers allows the rest. The names left out
// carry ErrNotAsked.
func (auth Authorities) nameservers(ctx context.Context, names []string, glue []dns.RR) []Nameserver {
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
		addrs := auth.glue(glue, name)
		if len(addrs) == 0 {
			addrs, h.Err = auth.addresses(ctx, name)
		}
		private := false
		for _, a := range addrs {
			switch {
			case len(h.Addrs) == MaxNameserverAddrs || seen[a]:
			case !auth.r.PrivateNameservers && !globalUnicast(a):
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

func (auth Authorities) addresses(ctx context.Context, host string) ([]string, error) {
	var addrs []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		msg, err := auth.r.Query(ctx, host, qtype)
		if err != nil {
			if qtype == dns.TypeA {
				return nil, err
			}
			continue
		}
		addrs = append(addrs, auth.glue(msg.Answer, host)...)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("nameserver %s has no address", host)
	}
	return addrs, nil
}

// glue returns the addresses ("ip:port") that rrs give for host.
func (auth Authorities) glue(rrs []dns.RR, host string) []string {
	port := auth.r.NameserverPort
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

// ZoneServers returns the zone that name lies in and its nameservers. When
// the resolvers cannot answer for the zone at all (every nameserver of it
// down, a lame delegation), the delegation is read from the closest
// enclosing zone that does resolve, by asking its servers directly, so that
// a report can name the servers that fail.
func (auth Authorities) ZoneServers(ctx context.Context, name string, timeout time.Duration) (string, []Nameserver, error) {
	zone, err := auth.r.FindZone(ctx, name)
	if err == nil {
		hosts, err := auth.Nameservers(ctx, zone)
		return zone, hosts, err
	}
	enclosing, perr := auth.r.findZone(ctx, parent(name), true)
	if perr != nil {
		return "", nil, err
	}
	parentHosts, perr := auth.Nameservers(ctx, enclosing)
	if perr != nil {
		return "", nil, err
	}
	for _, h := range parentHosts {
		for _, addr := range h.Addrs {
			if zone, hosts, ok := auth.referral(ctx, addr, name, enclosing, timeout); ok {
				return zone, hosts, nil
			}
		}
	}
	return "", nil, err
}

// referral asks the server at addr, authoritative for the enclosing zone,
// where name is delegated to. ok is false when it does not answer usefully.
func (auth Authorities) referral(ctx context.Context, addr, name, enclosing string, timeout time.Duration) (string, []Nameserver, bool) {
	msg, err := auth.Ask(ctx, addr, name, dns.TypeNS, timeout)
	if err != nil {
		return "", nil, false
	}
	if msg.Authoritative {
		hosts, err := auth.Nameservers(ctx, enclosing)
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
	return zone, auth.nameservers(ctx, names, msg.Extra), true
}
