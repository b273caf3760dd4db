package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Nameserver is one address of one authoritative server of a zone.
type Nameserver struct {
	Name    string `json:"name"`
	Address string `json:"address"` // ip:53
}

// Nameservers returns every address of every NS of zone, as the resolvers
// see them.
func (r *Resolver) Nameservers(ctx context.Context, zone string) ([]Nameserver, error) {
	msg, err := r.Query(ctx, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("looking up the nameservers of %s: %w", Normalize(zone), err)
	}
	var out []Nameserver
	for _, rr := range msg.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		name := Normalize(ns.Ns)
		addrs, err := r.addresses(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Normalize(zone), err)
		}
		for _, a := range addrs {
			out = append(out, Nameserver{Name: name, Address: a})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no NS records", Normalize(zone))
	}
	slices.SortFunc(out, func(a, b Nameserver) int { return strings.Compare(a.Name+a.Address, b.Name+b.Address) })
	return out, nil
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
		for _, rr := range msg.Answer {
			switch a := rr.(type) {
			case *dns.A:
				addrs = append(addrs, net.JoinHostPort(a.A.String(), "53"))
			case *dns.AAAA:
				addrs = append(addrs, net.JoinHostPort(a.AAAA.String(), "53"))
			}
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("nameserver %s has no address", host)
	}
	return addrs, nil
}

// AskAuthoritative sends one non-recursive query to one server, bypassing
// every cache.
func (r *Resolver) AskAuthoritative(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(FQDN(name), qtype)
	req.RecursionDesired = false
	msg, err := r.exchange(ctx, req, server)
	if err != nil {
		return nil, err
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s answered %s", server, dns.RcodeToString[msg.Rcode])
	}
	return msg, nil
}

// propagationPoll is how often WaitServed asks again: an authoritative
// server usually serves an update within milliseconds.
const propagationPoll = 50 * time.Millisecond

// WaitServed blocks until every authoritative server of zone serves value
// among the TXT records at name. The CA may ask any of them (Let's Encrypt
// validates from several perspectives), so one that lags fails the
// challenge as surely as none.
func (r *Resolver) WaitServed(ctx context.Context, zone, name, value string) error {
	servers, err := r.Nameservers(ctx, zone)
	if err != nil {
		return err
	}
	pending := slices.Clone(servers)
	var lastErr error
	for {
		pending = slices.DeleteFunc(pending, func(ns Nameserver) bool {
			msg, err := r.AskAuthoritative(ctx, ns.Address, name, dns.TypeTXT)
			if err != nil {
				lastErr = fmt.Errorf("%s (%s): %w", ns.Name, ns.Address, err)
				return false
			}
			return servesTXT(msg, name, value)
		})
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, ns := range pending {
				names = append(names, fmt.Sprintf("%s (%s)", ns.Name, ns.Address))
			}
			return fmt.Errorf("TXT %s is not served by %s: %w", Normalize(name), strings.Join(names, ", "), errors.Join(ctx.Err(), lastErr))
		case <-time.After(propagationPoll):
		}
	}
}

func servesTXT(msg *dns.Msg, name, value string) bool {
	for _, rr := range msg.Answer {
		if txt, ok := rr.(*dns.TXT); ok && Normalize(txt.Hdr.Name) == Normalize(name) && strings.Join(txt.Txt, "") == value {
			return true
		}
	}
	return false
}
