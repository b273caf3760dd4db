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

// Check codes name each kind of finding, for tools that act on them.
const (
	CodeOK            = "ok"
	CodeNoDelegation  = "no_delegation"   // no CNAME at the challenge name
	CodeWrongTarget   = "wrong_target"    // chain ends at another name than the alias
	CodeOutsideZones  = "outside_zones"   // chain ends outside every alias zone
	CodeWildcard      = "wildcard"        // CNAME synthesised by a wildcard
	CodeLoop          = "loop"            // CNAME loop
	CodeTooManyHops   = "too_many_hops"   // chain longer than the cap
	CodeLookup        = "lookup_failed"   // SERVFAIL, timeout, REFUSED
	CodeDrift         = "drift"           // authoritative servers disagree
	CodeNSUnreachable = "ns_unreachable"  // an authoritative server did not answer
	CodeCAAForbids    = "caa_forbids"     // CAA allows none of the CA identities
	CodeCAAMethods    = "caa_methods"     // CAA validationmethods excludes dns-01
	CodeCAAAccountURI = "caa_account_uri" // CAA binds issuance to an account
	CodeNoRule        = "no_rule"         // no rule covers the domain
)

// Finding is one problem (or note) of a report.
type Finding struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Fatal findings fail the verdict; the rest are notes.
	Fatal bool `json:"fatal"`
}

// NameserverAnswer is what one authoritative server of the production zone
// answers for the challenge name, asked directly without recursion.
type NameserverAnswer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Target is the CNAME target it serves, "" for none.
	Target string `json:"target"`
	Error  string `json:"error,omitempty"`
}

// CAARecord is one CAA record that applies to the domain.
type CAARecord struct {
	Owner string `json:"owner"`
	Flag  uint8  `json:"flag"`
	Tag   string `json:"tag"`
	Value string `json:"value"`
}

// Report is the result of checking one domain's delegation.
type Report struct {
	Domain        string `json:"domain"`
	ChallengeName string `json:"challenge_name"`
	// Mode is "static", "template" or "follow".
	Mode string `json:"mode"`
	// Expected is the alias the chain must end at (static, template), or ""
	// in follow mode, where it must end inside one of Zones.
	Expected string   `json:"expected,omitempty"`
	Zones    []string `json:"zones,omitempty"`
	// Resolver is the recursive resolver that answered the chain lookups.
	Resolver    string             `json:"resolver"`
	Chain       Chain              `json:"chain"`
	Zone        string             `json:"production_zone,omitempty"`
	Nameservers []NameserverAnswer `json:"nameservers,omitempty"`
	CAA         []CAARecord        `json:"caa,omitempty"`
	Findings    []Finding          `json:"findings,omitempty"`
	OK          bool               `json:"ok"`
	// Fix is the zone-file line to publish in the production zone, when
	// publishing it would fix the delegation.
	Fix string `json:"fix,omitempty"`
}

func (r *Report) add(code string, fatal bool, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Code: code, Message: fmt.Sprintf(format, args...), Fatal: fatal})
}

// Err returns nil for a passing report, or an error that names the domain,
// every fatal finding and the record to publish.
func (r *Report) Err() error {
	if r.OK {
		return nil
	}
	var msgs []string
	for _, f := range r.Findings {
		if f.Fatal {
			msgs = append(msgs, f.Message)
		}
	}
	msg := fmt.Sprintf("delegation of %s is broken: %s", r.Domain, strings.Join(msgs, "; "))
	if r.Fix != "" {
		msg += "; publish in the production zone: " + r.Fix
	}
	return errors.New(msg)
}

// Checker checks domains' delegations against the mapping.
type Checker struct {
	Mapper *Mapper
	// CAIdentities are the CAA issuer domains of the CAs in use, e.g.
	// "letsencrypt.org". Empty: CAA records are reported, not judged.
	CAIdentities []string
	// NSTimeout bounds each direct query to an authoritative server.
	NSTimeout time.Duration
}

// CheckChain is the part of the check that runs before every write: the
// domain's CNAME chain must end at its alias (static, template) or inside an
// alias zone (follow). It returns the target to write at.
func (c *Checker) CheckChain(ctx context.Context, domain string) (Target, *Report) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	rep := &Report{Domain: d, ChallengeName: ChallengeName(d), Resolver: strings.Join(c.Mapper.Resolver.Servers(), ",")}
	rule, err := c.Mapper.Rule(d)
	if err != nil {
		rep.add(CodeNoRule, true, "%v", err)
		return Target{}, rep
	}
	rep.Zones = rule.Zones
	switch {
	case rule.Follow:
		rep.Mode = "follow"
	case rule.Alias.IsStatic():
		rep.Mode = "static"
	default:
		rep.Mode = "template"
	}
	var suggestion string
	if !rule.Follow {
		if rep.Expected, err = rule.Alias.Expand(d); err != nil {
			rep.add(CodeNoRule, true, "%v", err)
			return Target{}, rep
		}
		suggestion = CNAMERecord(rep.ChallengeName, rep.Expected)
	} else {
		suggestion = CNAMERecord(rep.ChallengeName, rep.ChallengeName+"."+rule.Zones[0])
	}

	rep.Chain, err = c.Mapper.Resolver.Follow(ctx, rep.ChallengeName, c.Mapper.MaxHops)
	switch {
	case errors.Is(err, ErrWildcard):
		rep.add(CodeWildcard, true, "%v; an explicit CNAME is needed", err)
		rep.Fix = suggestion
	case errors.Is(err, ErrLoop):
		rep.add(CodeLoop, true, "%v", err)
		rep.Fix = suggestion
	case errors.Is(err, ErrTooManyHops):
		rep.add(CodeTooManyHops, true, "%v", err)
		rep.Fix = suggestion
	case err != nil:
		rep.add(CodeLookup, true, "%v", err)
	case len(rep.Chain.Hops) == 0:
		rep.add(CodeNoDelegation, true, "%s has no CNAME record", rep.ChallengeName)
		rep.Fix = suggestion
	case !rule.Follow && rep.Chain.End != rep.Expected:
		rep.add(CodeWrongTarget, true, "the CNAME chain of %s ends at %s, not at the alias %s", rep.ChallengeName, rep.Chain.End, rep.Expected)
		rep.Fix = suggestion
	}
	if len(rep.Findings) > 0 {
		return Target{}, rep
	}

	target, err := c.Mapper.target(ctx, d, rule, &rep.Chain)
	if err != nil {
		code := CodeLookup
		if target.Name != "" && target.Zone == "" {
			code = CodeOutsideZones
			rep.Fix = suggestion
		}
		rep.add(code, true, "%v", err)
		return Target{}, rep
	}
	rep.OK = true
	return target, rep
}

// Check runs the whole check for domain: the chain, what every
// authoritative server of the production zone answers, and CAA.
func (c *Checker) Check(ctx context.Context, domain string) *Report {
	_, rep := c.CheckChain(ctx, domain)
	c.checkNameservers(ctx, rep)
	c.checkCAA(ctx, rep)
	rep.OK = !slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Fatal })
	return rep
}

// checkNameservers asks every NS of the production zone directly for the
// challenge name's CNAME: multi-master setups drift, and the CA may ask any.
func (c *Checker) checkNameservers(ctx context.Context, rep *Report) {
	res := c.Mapper.Resolver
	zone, err := res.FindZone(ctx, rep.ChallengeName)
	if err != nil {
		rep.add(CodeLookup, true, "%v", err)
		return
	}
	rep.Zone = zone
	msg, err := res.Query(ctx, zone, dns.TypeNS)
	if err != nil {
		rep.add(CodeLookup, true, "looking up the nameservers of %s: %v", zone, err)
		return
	}
	for _, rr := range msg.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		name := Normalize(ns.Ns)
		addrs, err := c.addresses(ctx, name)
		if err != nil {
			rep.Nameservers = append(rep.Nameservers, NameserverAnswer{Name: name, Error: err.Error()})
			continue
		}
		for _, addr := range addrs {
			rep.Nameservers = append(rep.Nameservers, c.askAuthoritative(ctx, name, addr, rep.ChallengeName))
		}
	}
	slices.SortFunc(rep.Nameservers, func(a, b NameserverAnswer) int { return strings.Compare(a.Name+a.Address, b.Name+b.Address) })

	answers := map[string][]string{}
	for _, a := range rep.Nameservers {
		if a.Error != "" {
			rep.add(CodeNSUnreachable, true, "nameserver %s (%s) of %s did not answer for %s: %s", a.Name, a.Address, zone, rep.ChallengeName, a.Error)
			continue
		}
		answers[a.Target] = append(answers[a.Target], fmt.Sprintf("%s (%s)", a.Name, a.Address))
	}
	if len(answers) > 1 {
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
		rep.add(CodeDrift, true, "the nameservers of %s disagree about %s (%s); publish the same record on every one", zone, rep.ChallengeName, strings.Join(parts, "; "))
		if rep.Fix == "" && len(rep.Chain.Hops) > 0 {
			rep.Fix = CNAMERecord(rep.ChallengeName, rep.Chain.Hops[0].Target)
		}
	}
}

func (c *Checker) addresses(ctx context.Context, host string) ([]string, error) {
	var addrs []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		msg, err := c.Mapper.Resolver.Query(ctx, host, qtype)
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

func (c *Checker) askAuthoritative(ctx context.Context, name, addr, owner string) NameserverAnswer {
	ans := NameserverAnswer{Name: name, Address: addr}
	req := new(dns.Msg)
	req.SetQuestion(FQDN(owner), dns.TypeCNAME)
	req.RecursionDesired = false
	timeout := c.NSTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.Mapper.Resolver.exchange(ctx, req, addr)
	switch {
	case err != nil:
		ans.Error = err.Error()
	case msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError:
		ans.Error = "answered " + dns.RcodeToString[msg.Rcode]
	default:
		for _, rr := range msg.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && Normalize(cn.Hdr.Name) == Normalize(owner) {
				ans.Target = Normalize(cn.Target)
			}
		}
	}
	return ans
}

// checkCAA finds the CAA record set that applies to the domain (the closest
// one walking up from the domain, RFC 8659) and judges it for the
// configured CA identities. CAA is checked on the original name only: the CA
// never looks at the alias zone's.
func (c *Checker) checkCAA(ctx context.Context, rep *Report) {
	for name := rep.Domain; name != ""; name = parent(name) {
		msg, err := c.Mapper.Resolver.Query(ctx, name, dns.TypeCAA)
		if err != nil {
			rep.add(CodeLookup, true, "looking up CAA of %s: %v", name, err)
			return
		}
		for _, rr := range msg.Answer {
			if caa, ok := rr.(*dns.CAA); ok {
				rep.CAA = append(rep.CAA, CAARecord{Owner: name, Flag: caa.Flag, Tag: strings.ToLower(caa.Tag), Value: caa.Value})
			}
		}
		if len(rep.CAA) > 0 {
			break
		}
	}
	if len(rep.CAA) == 0 || len(c.CAIdentities) == 0 {
		return
	}
	allowed := false
	for _, rec := range rep.CAA {
		if rec.Tag != "issue" && rec.Tag != "issuewild" {
			continue
		}
		issuer, params := parseCAAValue(rec.Value)
		if !slices.Contains(c.CAIdentities, issuer) {
			continue
		}
		if methods, ok := params["validationmethods"]; ok && !slices.Contains(strings.Split(methods, ","), "dns-01") {
			rep.add(CodeCAAMethods, true, "CAA at %s allows %s only with validationmethods=%s, which excludes dns-01", rec.Owner, issuer, methods)
			continue
		}
		if uri, ok := params["accounturi"]; ok {
			rep.add(CodeCAAAccountURI, false, "CAA at %s allows %s only for the ACME account %s", rec.Owner, issuer, uri)
		}
		allowed = true
	}
	if !allowed && !rep.hasFinding(CodeCAAMethods) {
		rep.add(CodeCAAForbids, true, "CAA at %s allows none of %v to issue; add e.g. %s. 300 IN CAA 0 issue \"%s\"",
			rep.CAA[0].Owner, c.CAIdentities, rep.CAA[0].Owner, c.CAIdentities[0])
	}
}

func (r *Report) hasFinding(code string) bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Code == code })
}

// parseCAAValue splits an issue/issuewild value ("ca.example; key=value")
// into the issuer domain and its parameters.
func parseCAAValue(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok {
			params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
		}
	}
	return Normalize(parts[0]), params
}
