package solver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// propagationPoll is how often WaitServed asks again: an authoritative
// server usually serves an update within milliseconds.
const propagationPoll = 50 * time.Millisecond

// WaitServed blocks until every authoritative server of zone serves value
// among the TXT records at name, and returns the largest TTL they gave it:
// how long a recursive resolver may keep an answer without it. The CA may
// ask any of them (Let's Encrypt validates from several perspectives), so
// one that lags fails the challenge as surely as none.
func (auth Authorities) WaitServed(ctx context.Context, zone, name, value string) (time.Duration, error) {
	hosts, err := auth.Nameservers(ctx, zone)
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
			msg, err := auth.Ask(ctx, s.addr, name, dns.TypeTXT, 0)
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
