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
	Chain  Chain  // the CNAME chain of the challenge name that led to Name
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
		return nil, errorOf(ErrNoRule, "no rule matches %s and no default alias is configured", domain)
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
	_, _, record, err := m.plan(domain)
	return record, err
}

// Errors of the mapping, beside the chain's (chain.go). They are wrapped
// with the names involved.
var (
	// ErrNoRule: no rule covers the domain, or it is no domain at all.
	ErrNoRule = errors.New("no rule covers the domain")
	// ErrWrongTarget: the chain ends at another name than the alias.
	ErrWrongTarget = errors.New("CNAME chain ends at another name than the alias")
	// ErrOutsideZones: the chain, or the alias, ends outside every alias
	// zone.
	ErrOutsideZones = errors.New("outside the alias zones")
	// ErrBadTarget: the chain ends where no challenge record can be
	// written (a name a DNS record made up, a zone's apex, a public
	// suffix).
	ErrBadTarget = errors.New("no challenge record can be written there")
)

// ResolveError is why Resolve found no target for Domain: Err, of one of
// the kinds of findings (kinds), names the names involved; Fix is the
// record to publish in the production zone when publishing it mends the
// delegation ("" when it does not: no rule, a failed lookup).
type ResolveError struct {
	Domain string
	Chain  Chain // as far as it was followed
	Fix    string
	Err    error
}

func (e *ResolveError) Error() string {
	return brokenMessage(e.Domain, Printable(e.Err.Error()), e.Fix)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// report starts the report on domain: what its rule expects, before
// anything is looked up.
func (m *Mapper) report(domain string) *Report {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	rep := &Report{Domain: d, ChallengeName: ChallengeName(d), Resolver: strings.Join(m.Resolver.Servers(), ",")}
	rule, alias, record, err := m.plan(domain)
	if err != nil {
		return rep
	}
	rep.Zones, rep.Expected, rep.suggestion = rule.Zones, alias, record
	switch {
	case rule.Follow:
		rep.Mode = "follow"
	case rule.Alias.IsStatic():
		rep.Mode = "static"
	default:
		rep.Mode = "template"
	}
	return rep
}

// plan returns the rule responsible for domain, the alias its chain must
// end at ("" in follow mode) and the CNAME record that delegates it so.
func (m *Mapper) plan(domain string) (rule *Rule, alias, record string, err error) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	if err := ValidName(d); err != nil {
		return nil, "", "", errorOf(ErrNoRule, "%s is not a domain a certificate can be obtained for: %v", domain, err)
	}
	if rule, err = m.Rule(d); err != nil {
		return nil, "", "", err
	}
	if alias, record, err = rule.expect(d); err != nil {
		return nil, "", "", errorOf(ErrNoRule, "%v", err)
	}
	return rule, alias, record, nil
}

// Resolve is the one path from a domain to where its challenge record is
// written, which the write path, the gate, the permission module, the
// admin API and the check command all take (the last four through the
// Checker, which builds its report on top): the rule responsible for it,
// the alias it expects, and the CNAME chain of its challenge name as the
// resolvers see it, which must end at that alias (static, template) or
// inside an alias zone (follow). It returns the target, with the chain
// that led there, or a *ResolveError whose Err is of one of the kinds of
// findings (kinds). A wildcard domain resolves as its base domain: they
// share a challenge name. It never returns a target outside the rule's
// zones (or, without zones, outside the zone the alias lies in).
func (m *Mapper) Resolve(ctx context.Context, domain string) (Target, error) {
	target, fail := m.resolve(ctx, domain)
	if fail != nil {
		return Target{}, fail
	}
	return target, nil
}

// resolve is Resolve with its failure typed, for the Checker, which builds
// its report from the failure's chain and fix: no error of another type
// can reach it.
func (m *Mapper) resolve(ctx context.Context, domain string) (Target, *ResolveError) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	fail := &ResolveError{Domain: d}
	rule, alias, record, err := m.plan(domain)
	if err != nil {
		fail.Err = err
		return Target{}, fail
	}
	challenge := ChallengeName(d)
	chain, err := m.Resolver.Follow(ctx, challenge, m.MaxHops)
	switch {
	case errors.Is(err, ErrWildcard):
		err = fmt.Errorf("%w; an explicit CNAME is needed", err)
	case err != nil:
		// A loop, too many hops, a CNAME to the root, a failed lookup:
		// typed by Follow already.
	case len(chain.Hops) == 0:
		err = errorOf(ErrNoDelegation, "%s has no CNAME record", challenge)
	case !rule.Follow && chain.End != alias:
		err = errorOf(ErrWrongTarget, "the CNAME chain of %s ends at %s, not at the alias %s", challenge, chain.End, alias)
	}
	var target Target
	if err == nil {
		target, err = m.target(ctx, d, rule, chain)
	}
	if err == nil {
		return target, nil
	}
	fail.Chain, fail.Err = chain, err
	if kind, _ := kindOf(err); kind != ErrLookup {
		fail.Fix = record
	}
	return Target{}, fail
}

// target places the alias of domain under rule in its zone. In follow mode
// the alias is where chain ends.
func (m *Mapper) target(ctx context.Context, d string, rule *Rule, chain Chain) (Target, error) {
	t := Target{Domain: d, Rule: rule, Chain: chain}
	var err error
	if rule.Follow {
		t.Name = chain.End
		// A DNS record chose this name: escapes ("a\.zone"), '*' and the
		// like would let a name that only looks inside a zone through. The
		// name is normalized already: the added dot keeps ValidName from
		// normalizing away a second trailing dot ("x.zone..").
		if err = ValidName(t.Name + "."); err != nil {
			return Target{}, fmt.Errorf("the CNAME chain of %s ends at %s, where %w: %w; nothing was written", ChallengeName(d), t.Name, ErrBadTarget, err)
		}
	} else if t.Name, err = rule.Alias.Expand(d); err != nil {
		return Target{}, errorOf(ErrBadTarget, "%v", err)
	}
	if len(rule.Zones) > 0 {
		t.Zone = rule.zoneOf(t.Name)
	} else if t.Zone, err = m.Resolver.FindZone(ctx, t.Name); err != nil {
		if errors.Is(err, ErrLookup) {
			return Target{}, err
		}
		// No SOA up to the root: the alias lies in no zone at all.
		return Target{}, errorOf(ErrOutsideZones, "%v", err)
	}
	if t.Zone == "" {
		return Target{}, errorOf(ErrOutsideZones, "the CNAME chain of %s ends at %s, outside the alias zones %v; nothing was written", ChallengeName(d), t.Name, rule.Zones)
	}
	if t.Name == Normalize(t.Zone) {
		// The apex holds the zone's own records (SOA, NS, verification
		// TXT); a journal sweep refuses it too (ValidateEntry).
		return Target{}, errorOf(ErrBadTarget, "the alias of %s is %s, the apex of alias zone %s, where no challenge record is written; nothing was written", d, t.Name, t.Zone)
	}
	if len(rule.Zones) == 0 {
		if err := ValidZone(t.Zone); err != nil {
			return Target{}, errorOf(ErrBadTarget, "alias zone of %s, found by an SOA lookup of %s: %v; nothing was written", d, t.Name, err)
		}
	}
	return t, nil
}

// CNAMERecord is the zone-file line that delegates owner's challenge to target.
func CNAMERecord(owner, target string) string {
	return fmt.Sprintf("%s 300 IN CNAME %s", FQDN(owner), FQDN(target))
}
