package solver

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

	// suggestion is the CNAME record that delegates the challenge as the
	// mapping expects; chainOK says whether the chain check passed.
	suggestion string
	chainOK    bool
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
	if !rule.Follow {
		if rep.Expected, err = rule.Alias.Expand(d); err != nil {
			rep.add(CodeNoRule, true, "%v", err)
			return Target{}, rep
		}
		rep.suggestion = CNAMERecord(rep.ChallengeName, rep.Expected)
	} else {
		rep.suggestion = CNAMERecord(rep.ChallengeName, rep.ChallengeName+"."+rule.Zones[0])
	}
	suggestion := rep.suggestion

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
	rep.OK, rep.chainOK = true, true
	return target, rep
}

// Check runs the whole check for domain: the chain, what every
// authoritative server of the production zone answers, and CAA. A wildcard
// domain ("*.example.com") shares its base domain's challenge name but is
// judged by CAA issuewild.
func (c *Checker) Check(ctx context.Context, domain string) *Report {
	_, rep := c.CheckChain(ctx, domain)
	wildcard := strings.HasPrefix(Normalize(domain), "*.")
	if wildcard {
		rep.Domain = "*." + rep.Domain
	}
	c.checkNameservers(ctx, rep)
	c.checkCAA(ctx, rep, wildcard)
	rep.OK = !slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Fatal })
	return rep
}

// nsHost is one nameserver of a zone with its addresses ("ip:53"), or the
// reason it has none.
type nsHost struct {
	name  string
	addrs []string
	err   error
}

// checkNameservers asks every NS of the production zone directly for the
// challenge name's CNAME: multi-master setups drift, and the CA may ask any.
func (c *Checker) checkNameservers(ctx context.Context, rep *Report) {
	zone, hosts, err := c.zoneServers(ctx, rep.ChallengeName)
	if err != nil {
		rep.add(CodeLookup, true, "finding the authoritative nameservers of %s: %v", rep.ChallengeName, err)
		return
	}
	rep.Zone = zone
	for _, h := range hosts {
		if h.err != nil {
			rep.Nameservers = append(rep.Nameservers, NameserverAnswer{Name: h.name, Error: h.err.Error()})
			continue
		}
		for _, addr := range h.addrs {
			rep.Nameservers = append(rep.Nameservers, c.askAuthoritative(ctx, h.name, addr, zone, rep.ChallengeName))
		}
	}
	slices.SortFunc(rep.Nameservers, func(a, b NameserverAnswer) int { return strings.Compare(a.Name+a.Address, b.Name+b.Address) })

	answers := map[string][]string{}
	for _, a := range rep.Nameservers {
		switch {
		case a.Error != "" && a.Address == "":
			rep.add(CodeNSUnreachable, true, "nameserver %s of %s cannot be reached: %s", a.Name, zone, a.Error)
		case a.Error != "":
			rep.add(CodeNSUnreachable, true, "nameserver %s (%s) of %s did not answer for %s: %s", a.Name, a.Address, zone, rep.ChallengeName, a.Error)
		default:
			answers[a.Target] = append(answers[a.Target], fmt.Sprintf("%s (%s)", a.Name, a.Address))
		}
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
}

// zoneServers returns the zone that name lies in and its nameservers. When
// the resolvers cannot answer for the zone at all (every nameserver of it
// down, a lame delegation), the delegation is read from the closest
// enclosing zone that does resolve, by asking its servers directly, so that
// the report can name the servers that fail.
func (c *Checker) zoneServers(ctx context.Context, name string) (string, []nsHost, error) {
	zone, err := c.Mapper.Resolver.FindZone(ctx, name)
	if err == nil {
		hosts, err := c.nameservers(ctx, zone)
		return zone, hosts, err
	}
	enclosing, perr := c.enclosingZone(ctx, parent(name))
	if perr != nil {
		return "", nil, err
	}
	parentHosts, perr := c.nameservers(ctx, enclosing)
	if perr != nil {
		return "", nil, err
	}
	for _, h := range parentHosts {
		for _, addr := range h.addrs {
			if zone, hosts, ok := c.referral(ctx, addr, name, enclosing); ok {
				return zone, hosts, nil
			}
		}
	}
	return "", nil, err
}

// enclosingZone is like Resolver.FindZone but walks past names the
// resolvers fail on, to the closest enclosing zone that resolves.
func (c *Checker) enclosingZone(ctx context.Context, name string) (string, error) {
	var errs []error
	for n := Normalize(name); n != ""; n = parent(n) {
		msg, err := c.Mapper.Resolver.Query(ctx, n, dns.TypeSOA)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range slices.Concat(msg.Answer, msg.Ns) {
			if soa, ok := rr.(*dns.SOA); ok && InZone(n, soa.Hdr.Name) {
				return Normalize(soa.Hdr.Name), nil
			}
		}
	}
	return "", fmt.Errorf("no zone encloses %s: %w", name, errors.Join(errs...))
}

// referral asks the server at addr, authoritative for the enclosing zone,
// where name is delegated to. ok is false when it does not answer usefully.
func (c *Checker) referral(ctx context.Context, addr, name, enclosing string) (string, []nsHost, bool) {
	req := new(dns.Msg)
	req.SetQuestion(FQDN(name), dns.TypeNS)
	req.RecursionDesired = false
	ctx, cancel := context.WithTimeout(ctx, c.nsTimeout())
	defer cancel()
	msg, err := c.Mapper.Resolver.exchange(ctx, req, addr)
	if err != nil || (msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError) {
		return "", nil, false
	}
	if msg.Authoritative {
		hosts, err := c.nameservers(ctx, enclosing)
		return enclosing, hosts, err == nil
	}
	zone := ""
	var hosts []nsHost
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
		h := nsHost{name: Normalize(ns.Ns)}
		for _, extra := range msg.Extra {
			if Normalize(extra.Header().Name) != h.name {
				continue
			}
			switch a := extra.(type) {
			case *dns.A:
				h.addrs = append(h.addrs, net.JoinHostPort(a.A.String(), "53"))
			case *dns.AAAA:
				h.addrs = append(h.addrs, net.JoinHostPort(a.AAAA.String(), "53"))
			}
		}
		if len(h.addrs) == 0 {
			h.addrs, h.err = c.Mapper.Resolver.addresses(ctx, h.name)
		}
		hosts = append(hosts, h)
	}
	return zone, hosts, zone != ""
}

// nameservers returns the NS of zone, as the resolvers see them, with their
// addresses.
func (c *Checker) nameservers(ctx context.Context, zone string) ([]nsHost, error) {
	msg, err := c.Mapper.Resolver.Query(ctx, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("looking up the nameservers of %s: %w", zone, err)
	}
	var hosts []nsHost
	for _, rr := range msg.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		h := nsHost{name: Normalize(ns.Ns)}
		h.addrs, h.err = c.Mapper.Resolver.addresses(ctx, h.name)
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("looking up the nameservers of %s: no NS records", zone)
	}
	return hosts, nil
}

func (c *Checker) nsTimeout() time.Duration {
	if c.NSTimeout > 0 {
		return c.NSTimeout
	}
	return 2 * time.Second
}

// askAuthoritative asks one server of zone, without recursion, for the CNAME
// at owner. A server that answers without authority does not serve the zone
// (a lame delegation) and counts as failing.
func (c *Checker) askAuthoritative(ctx context.Context, name, addr, zone, owner string) NameserverAnswer {
	ans := NameserverAnswer{Name: name, Address: addr}
	req := new(dns.Msg)
	req.SetQuestion(FQDN(owner), dns.TypeCNAME)
	req.RecursionDesired = false
	ctx, cancel := context.WithTimeout(ctx, c.nsTimeout())
	defer cancel()
	msg, err := c.Mapper.Resolver.exchange(ctx, req, addr)
	switch {
	case err != nil:
		ans.Error = err.Error()
	case msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError:
		ans.Error = "answered " + dns.RcodeToString[msg.Rcode]
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

// checkCAA finds the CAA record set that applies to the domain (the closest
// one walking up from the domain, RFC 8659) and judges it for the
// configured CA identities. CAA is checked on the original name only: the CA
// never looks at the alias zone's. A wildcard is judged by issuewild when
// the set has any, by issue otherwise; issuewild never applies to other
// names. A set with no property of the relevant tag does not restrict
// issuance.
func (c *Checker) checkCAA(ctx context.Context, rep *Report, wildcard bool) {
	for name := strings.TrimPrefix(rep.Domain, "*."); name != ""; name = parent(name) {
		msg, err := c.Mapper.Resolver.Query(ctx, name, dns.TypeCAA)
		if err != nil {
			if rep.Zone != "" && !InZone(name, rep.Zone) {
				// Above the production zone (a TLD, usually): nothing
				// the operator can fix, so a note rather than a failure.
				rep.add(CodeLookup, false, "looking up CAA of %s, above the production zone %s, failed; CAA not judged: %v", name, rep.Zone, err)
				return
			}
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
	owner := rep.CAA[0].Owner
	for _, rec := range rep.CAA {
		if rec.Flag&128 != 0 && !slices.Contains(knownCAATags, rec.Tag) {
			rep.add(CodeCAAForbids, true, "CAA at %s has the critical property %q, which CAs do not know, so none may issue (RFC 8659); remove it or clear its critical flag", owner, rec.Tag)
		}
	}

	tag := "issue"
	if wildcard && slices.ContainsFunc(rep.CAA, func(r CAARecord) bool { return r.Tag == "issuewild" }) {
		tag = "issuewild"
	}
	var issuers []string
	var methodsBlocked []CAARecord
	permitted := false
	for _, rec := range rep.CAA {
		if rec.Tag != tag {
			continue
		}
		issuer, params := parseCAAValue(rec.Value)
		if issuer == "" {
			issuers = append(issuers, `";" (no CA)`)
		} else {
			issuers = append(issuers, issuer)
		}
		if !slices.Contains(c.CAIdentities, issuer) {
			continue
		}
		if methods, ok := params["validationmethods"]; ok && !hasMethod(methods, "dns-01") {
			methodsBlocked = append(methodsBlocked, rec)
			continue
		}
		permitted = true
		if uri, ok := params["accounturi"]; ok {
			rep.add(CodeCAAAccountURI, false, "CAA %s at %s allows %s only for the ACME account %s: Caddy must use that account", tag, owner, issuer, uri)
		}
	}
	switch {
	case len(issuers) == 0 || permitted:
		return
	case len(methodsBlocked) > 0:
		rec := methodsBlocked[0]
		issuer, params := parseCAAValue(rec.Value)
		value := issuer
		for _, k := range slices.Sorted(maps.Keys(params)) {
			if k != "validationmethods" {
				value += "; " + k + "=" + params[k]
			}
		}
		value += "; validationmethods=" + params["validationmethods"] + ",dns-01"
		fix := fmt.Sprintf("%s. 300 IN CAA 0 %s %q", owner, tag, value)
		rep.add(CodeCAAMethods, true, "CAA %s %q at %s allows %s only with validationmethods=%s, which excludes dns-01; replace it with: %s",
			tag, rec.Value, owner, issuer, params["validationmethods"], fix)
		if rep.Fix == "" {
			rep.Fix = fix
		}
	default:
		fix := fmt.Sprintf("%s. 300 IN CAA 0 %s %q", owner, tag, c.CAIdentities[0])
		rep.add(CodeCAAForbids, true, "CAA %s at %s allows only %s, none of %s; add: %s",
			tag, owner, strings.Join(issuers, ", "), strings.Join(c.CAIdentities, ", "), fix)
		if rep.Fix == "" {
			rep.Fix = fix
		}
	}
}

// knownCAATags are the property tags a CA understands; an unknown one with
// the critical flag forbids issuance.
var knownCAATags = []string{"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}

func hasMethod(methods, method string) bool {
	for _, m := range strings.Split(methods, ",") {
		if strings.EqualFold(strings.TrimSpace(m), method) {
			return true
		}
	}
	return false
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
