package solver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/libdns/libdns"
)

// Writer is what the wrapper needs from an inner libdns provider.
type Writer interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Rule maps the domains it matches onto an alias, written by its Writer.
type Rule struct {
	// Match holds exact domains ("example.com", which also covers
	// "*.example.com" since both share one challenge name) and patterns
	// ("*.example.com": any name below example.com). Empty for the default.
	Match []string
	// Alias is a static name or a template; zero in follow mode.
	Alias Template
	// Follow writes where the CNAME chain of the challenge name ends,
	// provided that lies inside one of Zones.
	Follow bool
	// Zones confine every write of this rule. Empty means: the zone found
	// by an SOA walk on the alias (static and template only).
	Zones []string
	// Writer writes into the alias zone; WriterName names it in messages.
	Writer     Writer
	WriterName string
}

// Validate checks a rule before use, naming the offending field.
func (r *Rule) Validate() error {
	for i, z := range r.Zones {
		if err := ValidZone(z); err != nil {
			return fmt.Errorf("zones[%d]: %w", i, err)
		}
		r.Zones[i] = Normalize(z)
	}
	seen := map[string]int{}
	for i, m := range r.Match {
		if strings.ContainsFunc(m, unicode.IsSpace) {
			return fmt.Errorf("match[%d]: %q contains white space", i, m)
		}
		// The added dot keeps ValidName from normalizing away a second
		// trailing dot ("example.com..").
		n := Normalize(m)
		if err := ValidName(strings.TrimPrefix(n, "*.") + "."); err != nil {
			return fmt.Errorf("match[%d]: %w", i, err)
		}
		if j, ok := seen[n]; ok {
			return fmt.Errorf("match[%d]: %q is match[%d] already", i, n, j)
		}
		seen[n] = i
		r.Match[i] = n
	}
	if r.Writer == nil {
		return fmt.Errorf("provider: no inner DNS provider configured")
	}
	switch {
	case r.Follow && r.Alias.String() != "":
		return fmt.Errorf("alias and follow: choose one (follow writes where the CNAME chain ends)")
	case r.Follow && len(r.Zones) == 0:
		return fmt.Errorf("zones: follow mode needs at least one configured alias zone, so that a DNS record cannot decide where this server writes")
	case !r.Follow && r.Alias.String() == "":
		return fmt.Errorf("alias: no alias name or template, and follow is off")
	case !r.Follow && len(r.Zones) == 0 && !r.Alias.IsStatic() && IsPublicSuffix(r.Alias.Suffix()):
		// Each name the template makes lies directly below the suffix:
		// the SOA walk ends at the suffix, and every write is refused.
		return fmt.Errorf("alias: template %q puts each name directly below the public suffix %q, where the SOA lookup finds no zone this server may write in; set zones to the validation zone", r.Alias, r.Alias.Suffix())
	case !r.Follow && len(r.Zones) > 0 && r.zoneOf(r.Alias.Suffix()) == "":
		return fmt.Errorf("alias: %q is outside the configured zones %v", r.Alias, r.Zones)
	}
	return nil
}

// ValidateRules checks what no single rule can: that no domain or pattern
// is matched by two rules, where the choice between them would be arbitrary.
// Errors name the field as rules[N].match[M].
func ValidateRules(rules []*Rule) error {
	first := map[string]int{}
	for i, r := range rules {
		for j, m := range r.Match {
			if k, ok := first[m]; ok && k != i {
				return fmt.Errorf("rules[%d].match[%d]: %q is matched by rules[%d] already", i, j, m, k)
			}
			first[m] = i
		}
	}
	return nil
}

// zoneOf returns the longest configured zone that contains name, or "".
func (r *Rule) zoneOf(name string) string {
	best := ""
	for _, z := range r.Zones {
		if InZone(name, z) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

// matches returns how specifically the rule matches domain: 0 for no match,
// more for a longer pattern, and the most for an exact name.
func (r *Rule) matches(domain string) int {
	best := 0
	for _, m := range r.Match {
		if suffix, ok := strings.CutPrefix(m, "*."); ok {
			if strings.HasSuffix(domain, "."+suffix) {
				best = max(best, len(suffix))
			}
		} else if m == domain {
			return maxNameLen + 1
		}
	}
	return best
}

// Target is where the challenge record of one domain is written.
type Target struct {
	Domain string // the domain being validated, without "*."
	Name   string // the alias name the TXT record is written at
	Zone   string // the alias zone that contains Name
	Rule   *Rule  // the rule that produced the mapping
	Chain  *Chain // follow mode: the chain that led to Name
}

// Mapper maps domains onto alias targets.
type Mapper struct {
	// Rules are tried most specific first; Default, if set, takes the rest.
	Rules    []*Rule
	Default  *Rule
	Resolver *Resolver
	MaxHops  int
}

// Rule returns the rule responsible for domain.
func (m *Mapper) Rule(domain string) (*Rule, error) {
	var best *Rule
	score := 0
	for _, r := range m.Rules {
		if s := r.matches(domain); s > score {
			best, score = r, s
		}
	}
	if best == nil {
		best = m.Default
	}
	if best == nil {
		return nil, fmt.Errorf("no rule matches %s and no default alias is configured", domain)
	}
	return best, nil
}

// expect returns the alias domain d's chain must end at ("" in follow
// mode, where any name in the rule's zones does) and the CNAME record that
// delegates d's challenge so.
func (r *Rule) expect(d string) (alias, record string, err error) {
	challenge := ChallengeName(d)
	if r.Follow {
		return "", CNAMERecord(challenge, challenge+"."+r.Zones[0]), nil
	}
	if alias, err = r.Alias.Expand(d); err != nil {
		return "", "", err
	}
	return alias, CNAMERecord(challenge, alias), nil
}

// Suggestion returns the CNAME record that would delegate domain's
// challenge as this mapping expects, for a name it does not obtain yet.
func (m *Mapper) Suggestion(domain string) (string, error) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	if err := ValidName(d); err != nil {
		return "", err
	}
	rule, err := m.Rule(d)
	if err != nil {
		return "", err
	}
	_, record, err := rule.expect(d)
	return record, err
}

// Resolve is the one path from a domain to where its challenge record is
// written: the rule responsible for it, the alias it expects, and the CNAME
// chain of its challenge name as the resolvers see it, which must end at
// that alias (static, template) or inside an alias zone (follow). It returns
// the target, or a report whose findings say what is wrong and which record
// fixes it. A wildcard domain resolves as its base domain: they share a
// challenge name. It never returns a target outside the rule's zones (or,
// without zones, outside the zone the alias lies in).
func (m *Mapper) Resolve(ctx context.Context, domain string) (Target, *Report) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	rep := &Report{Domain: d, ChallengeName: ChallengeName(d), Resolver: strings.Join(m.Resolver.Servers(), ",")}
	if err := ValidName(d); err != nil {
		rep.add(CodeNoRule, true, "%s is not a domain a certificate can be obtained for: %v", domain, err)
		return Target{}, rep
	}
	rule, err := m.Rule(d)
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
	if rep.Expected, rep.suggestion, err = rule.expect(d); err != nil {
		rep.add(CodeNoRule, true, "%v", err)
		return Target{}, rep
	}

	rep.Chain, err = m.Resolver.Follow(ctx, rep.ChallengeName, m.MaxHops)
	switch {
	case errors.Is(err, ErrWildcard):
		rep.addFix(CodeWildcard, "%v; an explicit CNAME is needed", err)
	case errors.Is(err, ErrLoop):
		rep.addFix(CodeLoop, "%v", err)
	case errors.Is(err, ErrTooManyHops):
		rep.addFix(CodeTooManyHops, "%v", err)
	case errors.Is(err, ErrRootTarget):
		rep.addFix(CodeBadTarget, "%v", err)
	case err != nil:
		rep.add(CodeLookup, true, "%v", err)
	case len(rep.Chain.Hops) == 0:
		rep.addFix(CodeNoDelegation, "%s has no CNAME record", rep.ChallengeName)
		rep.Findings[0].cause = ErrNoDelegation
	case !rule.Follow && rep.Chain.End != rep.Expected:
		rep.addFix(CodeWrongTarget, "the CNAME chain of %s ends at %s, not at the alias %s", rep.ChallengeName, rep.Chain.End, rep.Expected)
	}
	if len(rep.Findings) > 0 {
		return Target{}, rep
	}

	target, err := m.target(ctx, d, rule, &rep.Chain)
	switch {
	case err == nil:
		rep.OK, rep.chainOK = true, true
		return target, rep
	case target.Name != "" && target.Zone == "" && !errors.Is(err, ErrLookup):
		rep.addFix(CodeOutsideZones, "%v", err)
	case errors.Is(err, errBadTarget):
		rep.addFix(CodeBadTarget, "%v", err)
	default:
		rep.add(CodeLookup, true, "%v", err)
	}
	return Target{}, rep
}

// errBadTarget marks a chain that ends at a name no record can be written at.
var errBadTarget = errors.New("no challenge record can be written there")

// target places the alias of domain under rule in its zone. In follow mode
// the alias is where chain ends.
func (m *Mapper) target(ctx context.Context, d string, rule *Rule, chain *Chain) (Target, error) {
	t := Target{Domain: d, Rule: rule}
	var err error
	if rule.Follow {
		t.Chain, t.Name = chain, chain.End
		// A DNS record chose this name: escapes ("a\.zone"), '*' and the
		// like would let a name that only looks inside a zone through. The
		// name is normalized already: the added dot keeps ValidName from
		// normalizing away a second trailing dot ("x.zone..").
		if err = ValidName(t.Name + "."); err != nil {
			return Target{Domain: d, Rule: rule}, fmt.Errorf("the CNAME chain of %s ends at %s, where %w: %w; nothing was written", ChallengeName(d), t.Name, errBadTarget, err)
		}
	} else if t.Name, err = rule.Alias.Expand(d); err != nil {
		return t, err
	}
	if len(rule.Zones) > 0 {
		t.Zone = rule.zoneOf(t.Name)
	} else if t.Zone, err = m.Resolver.FindZone(ctx, t.Name); err != nil {
		return t, err
	}
	if t.Zone == "" {
		return t, fmt.Errorf("the CNAME chain of %s ends at %s, outside the alias zones %v; nothing was written", ChallengeName(d), t.Name, rule.Zones)
	}
	if t.Name == Normalize(t.Zone) {
		// The apex holds the zone's own records (SOA, NS, verification
		// TXT); a journal sweep refuses it too (ValidateEntry).
		return t, fmt.Errorf("the alias of %s is %s, the apex of alias zone %s, where no challenge record is written; nothing was written", d, t.Name, t.Zone)
	}
	if len(rule.Zones) == 0 {
		if err := ValidZone(t.Zone); err != nil {
			return t, fmt.Errorf("alias zone of %s, found by an SOA lookup of %s: %w; nothing was written", d, t.Name, err)
		}
	}
	return t, nil
}

// CNAMERecord is the zone-file line that delegates owner's challenge to target.
func CNAMERecord(owner, target string) string {
	return fmt.Sprintf("%s 300 IN CNAME %s", FQDN(owner), FQDN(target))
}
