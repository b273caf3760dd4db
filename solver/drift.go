package solver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// NameserverAnswer is what one authoritative server of the production zone
// answers for the challenge name, asked directly without recursion.
type NameserverAnswer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Target is the CNAME target it serves, "" for none.
	Target string `json:"target"`
	Error  string `json:"error,omitempty"`
}

// checkNameservers asks every NS of the production zone directly for the
// challenge name's CNAME: multi-master setups drift, and the CA may ask any.
func (c *Checker) checkNameservers(ctx context.Context, rep *Report) {
	r := c.Mapper.Resolver
	// A name that owns a CNAME is no zone's apex: its zone is its
	// parent's, one SOA query fewer per name.
	inZone := rep.ChallengeName
	if len(rep.Chain.Hops) > 0 {
		inZone = parent(inZone)
	}
	zone, hosts, err := r.Authorities().ZoneServers(ctx, inZone, c.nsTimeout())
	if err != nil {
		rep.add(errorOf(ErrLookup, "finding the authoritative nameservers of %s: %v", rep.ChallengeName, err), true)
		return
	}
	rep.Zone = zone
	notAsked := map[string][]string{} // reason -> nameservers
	for _, h := range hosts {
		if errors.Is(h.Err, ErrNotAsked) {
			notAsked[h.Err.Error()] = append(notAsked[h.Err.Error()], h.Name)
			continue
		}
		if h.Err != nil {
			rep.Nameservers = append(rep.Nameservers, NameserverAnswer{Name: h.Name, Error: h.Err.Error()})
			continue
		}
		for _, addr := range h.Addrs {
			rep.Nameservers = append(rep.Nameservers, c.askCNAME(ctx, h.Name, addr, zone, rep.ChallengeName))
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(notAsked)) {
		names := notAsked[reason]
		shown := strings.Join(names[:min(len(names), 3)], ", ")
		if len(names) > 3 {
			shown += ", ..."
		}
		rep.add(errorOf(ErrNotAsked, "%d nameserver(s) of %s (%s) %s", len(names), zone, shown, reason), false)
	}
	slices.SortFunc(rep.Nameservers, func(a, b NameserverAnswer) int { return strings.Compare(a.Name+a.Address, b.Name+b.Address) })

	answers := map[string][]string{}
	for _, a := range rep.Nameservers {
		switch {
		case a.Error != "" && a.Address == "":
			rep.add(errorOf(ErrNSUnreachable, "nameserver %s of %s cannot be reached: %s", a.Name, zone, a.Error), true)
		case a.Error != "":
			rep.add(errorOf(ErrNSUnreachable, "nameserver %s (%s) of %s did not answer for %s: %s", a.Name, a.Address, zone, rep.ChallengeName, a.Error), true)
		default:
			answers[a.Target] = append(answers[a.Target], fmt.Sprintf("%s (%s)", a.Name, a.Address))
		}
	}
	if len(answers) <= 1 {
		return
	}
	var parts []string
	for target, servers := range answers {
		if target == "" {
			target = "no CNAME"
		} else {
			target = "CNAME " + target
		}
		parts = append(parts, fmt.Sprintf("%s: %s", strings.Join(servers, ", "), target))
	}
	slices.Sort(parts)
	rep.add(errorOf(ErrDrift, "the nameservers of %s disagree about %s (%s); publish the same record on every one", zone, rep.ChallengeName, strings.Join(parts, "; ")), true)
	if rep.Fix == "" {
		// The chain the resolvers saw passed: its first record is the
		// one the other servers lack. Otherwise the chain check has
		// set the fix already, or the mapping's record is the fix.
		if rep.chainOK && len(rep.Chain.Hops) > 0 {
			rep.Fix = CNAMERecord(rep.ChallengeName, rep.Chain.Hops[0].Target)
		} else {
			rep.Fix = rep.suggestion
		}
	}
}

// askCNAME asks one server of zone, without recursion, for the CNAME at
// owner. A server that answers without authority does not serve the zone
// (a lame delegation) and counts as failing.
func (c *Checker) askCNAME(ctx context.Context, name, addr, zone, owner string) NameserverAnswer {
	ans := NameserverAnswer{Name: name, Address: addr}
	msg, err := c.Mapper.Resolver.Authorities().Ask(ctx, addr, owner, dns.TypeCNAME, c.nsTimeout())
	switch {
	case err != nil:
		ans.Error = strings.TrimPrefix(err.Error(), addr+" ")
	case !msg.Authoritative:
		ans.Error = "answered without authority: it does not serve " + zone + " (lame delegation)"
	default:
		for _, rr := range msg.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && Normalize(cn.Hdr.Name) == Normalize(owner) {
				ans.Target = Normalize(cn.Target)
			}
		}
	}
	return ans
}
