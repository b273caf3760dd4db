package solver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS is an in-memory recursive resolver: CNAMEs, wildcard CNAMEs, zones
// (answered by SOA, in the answer at the apex and in the authority section
// below it), SERVFAIL and transport failures. It counts every question.
type fakeDNS struct {
	mu       sync.Mutex
	cnames   map[string]fakeCNAME // by normalized owner
	wild     map[string]string    // normalized parent -> target of *.parent
	zones    map[string]bool      // normalized apexes
	servfail map[string]bool      // normalized names answered with SERVFAIL
	neterr   map[string]bool      // normalized names whose query fails in transport
	// delegateAll, if set, is the target (a name, or a template with
	// {domain}) of every _acme-challenge name outside the alias's zone
	// without a CNAME of its own: every domain delegated to its alias.
	delegateAll string
	cnameTTL    uint32
	soaTTL      uint32
	soaMin      uint32
	calls       map[question]int
}

type fakeCNAME struct {
	owner, target string // as they appear on the wire (any case, any dot)
}

func newFakeDNS(zones ...string) *fakeDNS {
	d := &fakeDNS{
		cnames:   map[string]fakeCNAME{},
		wild:     map[string]string{},
		zones:    map[string]bool{},
		servfail: map[string]bool{},
		neterr:   map[string]bool{},
		cnameTTL: 300,
		soaTTL:   3600,
		soaMin:   30,
		calls:    map[question]int{},
	}
	for _, z := range zones {
		d.zones[Normalize(z)] = true
	}
	return d
}

// cname publishes owner CNAME target; owner and target are kept as given so
// that answers can carry odd case and missing dots.
func (d *fakeDNS) cname(owner, target string) *fakeDNS {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cnames[Normalize(owner)] = fakeCNAME{owner: owner, target: target}
	return d
}

// chain publishes names[0] CNAME names[1] CNAME ... names[n-1].
func (d *fakeDNS) chain(names ...string) *fakeDNS {
	for i := 0; i+1 < len(names); i++ {
		d.cname(names[i], names[i+1])
	}
	return d
}

// wildcard publishes *.parent CNAME target.
func (d *fakeDNS) wildcard(parent, target string) *fakeDNS {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wild[Normalize(parent)] = target
	return d
}

func (d *fakeDNS) count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[question{Normalize(name), qtype}]
}

func (d *fakeDNS) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		n += c
	}
	return n
}

func (d *fakeDNS) zoneOf(name string) string {
	best := ""
	for z := range d.zones {
		if InZone(name, z) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

func (d *fakeDNS) soa(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr:    dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: d.soaTTL},
		Ns:     "ns1." + dns.Fqdn(zone),
		Mbox:   "hostmaster." + dns.Fqdn(zone),
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: d.soaMin,
	}
}

func (d *fakeDNS) lookupCNAME(n string) (fakeCNAME, bool) {
	if c, ok := d.cnames[n]; ok {
		return c, true
	}
	if domain, ok := strings.CutPrefix(n, ChallengePrefix+"."); ok && d.delegateAll != "" {
		if target := strings.ReplaceAll(d.delegateAll, PlaceholderDomain, domain); Normalize(target) != n && !InZone(n, d.zoneOf(target)) {
			return fakeCNAME{owner: n + ".", target: target}, true
		}
	}
	for p := parent(n); p != ""; p = parent(p) {
		if target, ok := d.wild[p]; ok {
			return fakeCNAME{owner: n + ".", target: target}, true
		}
	}
	return fakeCNAME{}, false
}

func (d *fakeDNS) exchange(_ context.Context, req *dns.Msg, _ string) (*dns.Msg, error) {
	q := req.Question[0]
	n := Normalize(q.Name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[question{n, q.Qtype}]++
	if d.neterr[n] {
		return nil, errors.New("i/o timeout")
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	if d.servfail[n] {
		resp.Rcode = dns.RcodeServerFailure
		return resp, nil
	}
	if c, ok := d.lookupCNAME(n); ok {
		resp.Answer = append(resp.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: c.owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: d.cnameTTL},
			Target: c.target,
		})
		if q.Qtype != dns.TypeCNAME {
			// A recursive resolver follows the CNAME; the target has no
			// record of the type asked for (NODATA in the target's zone).
			if z := d.zoneOf(c.target); z != "" {
				resp.Ns = append(resp.Ns, d.soa(z))
			}
		}
		return resp, nil
	}
	z := d.zoneOf(n)
	if z == "" {
		resp.Rcode = dns.RcodeNameError
		return resp, nil
	}
	if q.Qtype == dns.TypeSOA && n == z {
		resp.Answer = append(resp.Answer, d.soa(z))
		return resp, nil
	}
	resp.Rcode = dns.RcodeNameError
	resp.Ns = append(resp.Ns, d.soa(z))
	return resp, nil
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestResolver(t testing.TB, d *fakeDNS) (*Resolver, *fakeClock) {
	t.Helper()
	r, err := NewResolver([]string{"127.0.0.1:1"}, 0)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	clk := newFakeClock()
	r.exchange = d.exchange
	r.cache.now = clk.Now
	return r, clk
}

func mustValidate(t testing.TB, r *Rule) *Rule {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return r
}

func TestRuleValidate(t *testing.T) {
	w := &fakeWriter{}
	static := mustTemplate(t, "_acme-challenge.validation.example.org")
	tmpl := mustTemplate(t, "_acme-challenge.{domain}.validation.example.org")
	for _, tc := range []struct {
		name    string
		rule    Rule
		wantErr []string // all must appear; nil for valid
	}{
		{"static without zones", Rule{Alias: static, Writer: w}, nil},
		{"static in zone", Rule{Alias: static, Zones: []string{"validation.example.org"}, Writer: w}, nil},
		{"template in parent zone", Rule{Alias: tmpl, Zones: []string{"example.org"}, Writer: w}, nil},
		{"follow", Rule{Follow: true, Zones: []string{"validation.example.org"}, Writer: w}, nil},
		{"match exact and pattern", Rule{Match: []string{"example.com", "*.example.net"}, Alias: static, Writer: w}, nil},
		{"bad second zone", Rule{Alias: static, Zones: []string{"validation.example.org", "bad zone"}, Writer: w},
			[]string{"zones[1]", "bad zone"}},
		{"empty zone", Rule{Alias: static, Zones: []string{""}, Writer: w}, []string{"zones[0]", "empty"}},
		{"bad match", Rule{Match: []string{"ex*mple.com"}, Alias: static, Writer: w}, []string{"match[0]", "ex*mple.com"}},
		{"bad pattern", Rule{Match: []string{"example.com", "*.*.example.com"}, Alias: static, Writer: w}, []string{"match[1]"}},
		{"empty match", Rule{Match: []string{"example.com", ""}, Alias: static, Writer: w}, []string{"match[1]", "empty"}},
		{"no writer", Rule{Alias: static}, []string{"provider"}},
		{"follow without zones", Rule{Follow: true, Writer: w}, []string{"zones", "follow"}},
		{"follow and alias", Rule{Follow: true, Alias: static, Zones: []string{"validation.example.org"}, Writer: w},
			[]string{"alias and follow"}},
		{"neither alias nor follow", Rule{Writer: w}, []string{"alias"}},
		{"alias outside zones", Rule{Alias: static, Zones: []string{"other.example.org"}, Writer: w},
			[]string{"alias", "_acme-challenge.validation.example.org", "outside", "other.example.org"}},
		{"template outside zones", Rule{Alias: tmpl, Zones: []string{"badexample.org"}, Writer: w},
			[]string{"alias", "outside"}},
		{"public suffix zone", Rule{Alias: static, Zones: []string{"org"}, Writer: w}, []string{"zones[0]", "public suffix"}},
		{"unknown TLD zone", Rule{Alias: static, Zones: []string{"validation.example.org", "example"}, Writer: w}, []string{"zones[1]", "public suffix"}},
		{"private public suffix zone", Rule{Alias: mustTemplate(t, "_acme-challenge.github.io"), Zones: []string{"github.io"}, Writer: w}, []string{"zones[0]", "public suffix"}},
		{"pattern with a space", Rule{Match: []string{"*.exa mple.com"}, Alias: static, Writer: w}, []string{"match[0]", "exa mple.com"}},
		{"two matches for one domain", Rule{Match: []string{"example.com", "Example.COM."}, Alias: static, Writer: w}, []string{"match[1]", `"example.com"`, "match[0]"}},
		{"template suffix above zone", Rule{Alias: tmpl, Zones: []string{"x.validation.example.org"}, Writer: w},
			[]string{"alias", "outside"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rule
			err := r.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate = %q, want it to contain %q", err, s)
				}
			}
		})
	}

	// Validate normalizes zones and patterns.
	r := Rule{Match: []string{"Shop.Example.COM.", "*.Example.NET"}, Alias: static, Zones: []string{"Validation.Example.ORG."}, Writer: w}
	mustValidate(t, &r)
	if r.Zones[0] != "validation.example.org" || r.Match[0] != "shop.example.com" || r.Match[1] != "*.example.net" {
		t.Errorf("Validate did not normalize: zones %q match %q", r.Zones, r.Match)
	}
}

func TestMapperRulePrecedence(t *testing.T) {
	w := &fakeWriter{}
	static := mustTemplate(t, "_acme-challenge.validation.example.org")
	mk := func(match ...string) *Rule { return mustValidate(t, &Rule{Match: match, Alias: static, Writer: w}) }
	pattern := mk("*.example.com")
	long := mk("*.eu.example.com")
	exact := mk("shop.eu.example.com", "other.org")
	deflt := mk()
	// The exact rule comes last: precedence must not depend on order.
	m := &Mapper{Rules: []*Rule{pattern, long, exact}, Default: deflt}
	for _, tc := range []struct {
		domain string
		want   *Rule
	}{
		{"shop.eu.example.com", exact},
		{"other.org", exact},
		{"x.eu.example.com", long},
		{"a.b.eu.example.com", long},
		{"eu.example.com", pattern}, // *.eu.example.com does not cover eu.example.com itself
		{"www.example.com", pattern},
		{"example.com", deflt}, // *.example.com does not cover the apex
		{"badexample.com", deflt},
		{"x.badexample.com", deflt},
		{"example.net", deflt},
	} {
		got, err := m.Rule(tc.domain)
		if err != nil || got != tc.want {
			t.Errorf("Rule(%q) = %v (match %q), %v; want match %q", tc.domain, got, matchOf(got), err, tc.want.Match)
		}
	}

	// Without a default, an unmatched domain is an error naming it.
	m.Default = nil
	if r, err := m.Rule("unmatched.example.net"); err == nil {
		t.Errorf("Rule(unmatched) = %v, want an error", matchOf(r))
	} else if !strings.Contains(err.Error(), "unmatched.example.net") {
		t.Errorf("Rule(unmatched) error %q does not name the domain", err)
	}
	_, err := m.Resolve(context.Background(), "*.Unmatched.Example.NET.")
	if err == nil || !strings.Contains(err.Error(), "unmatched.example.net") {
		t.Errorf("Map(unmatched) = %v, want an error naming unmatched.example.net", err)
	}
}

func matchOf(r *Rule) []string {
	if r == nil {
		return nil
	}
	return r.Match
}

func TestMapStaticAndTemplate(t *testing.T) {
	w := &fakeWriter{}
	d := newFakeDNS("example.org", "validation.example.org", "acme.example.net")
	res, _ := newTestResolver(t, d)
	zones := []string{"example.org", "validation.example.org"}
	staticRule := mustValidate(t, &Rule{Match: []string{"*.static.test", "static.test"},
		Alias: mustTemplate(t, "_acme-challenge.validation.example.org"), Zones: zones, Writer: w})
	tmplRule := mustValidate(t, &Rule{Match: []string{"*.tmpl.test"},
		Alias: mustTemplate(t, "_acme-challenge.{domain}.validation.example.org"), Zones: zones, Writer: w})
	parentRule := mustValidate(t, &Rule{Match: []string{"*.parent.test"},
		Alias: mustTemplate(t, "{domain_hash}.example.org"), Zones: zones, Writer: w})
	soaRule := mustValidate(t, &Rule{Match: []string{"*.soa.test"},
		Alias: mustTemplate(t, "_acme-challenge.{domain}.acme.example.net"), Writer: w})
	m := &Mapper{Rules: []*Rule{staticRule, tmplRule, parentRule, soaRule}, Resolver: res}
	d.cname("_acme-challenge.static.test", "_acme-challenge.validation.example.org")
	d.cname("_acme-challenge.www.static.test", "_acme-challenge.validation.example.org")
	d.cname("_acme-challenge.shop.tmpl.test", "_acme-challenge.shop.tmpl.test.validation.example.org")
	d.cname("_acme-challenge.a.parent.test", HashLabel("a.parent.test")+".example.org")
	d.cname("_acme-challenge.a.soa.test", "_acme-challenge.a.soa.test.acme.example.net")

	for _, tc := range []struct {
		domain             string
		wantDomain, wantNm string
		wantZone           string
		wantRule           *Rule
	}{
		{"static.test", "static.test", "_acme-challenge.validation.example.org", "validation.example.org", staticRule},
		{"*.static.test", "static.test", "_acme-challenge.validation.example.org", "validation.example.org", staticRule},
		{"www.static.test", "www.static.test", "_acme-challenge.validation.example.org", "validation.example.org", staticRule},
		{"Shop.TMPL.test.", "shop.tmpl.test", "_acme-challenge.shop.tmpl.test.validation.example.org", "validation.example.org", tmplRule},
		{"*.shop.tmpl.test", "shop.tmpl.test", "_acme-challenge.shop.tmpl.test.validation.example.org", "validation.example.org", tmplRule},
		{"a.parent.test", "a.parent.test", HashLabel("a.parent.test") + ".example.org", "example.org", parentRule},
		// No configured zones: the zone comes from the SOA walk.
		{"a.soa.test", "a.soa.test", "_acme-challenge.a.soa.test.acme.example.net", "acme.example.net", soaRule},
	} {
		got, err := m.Resolve(context.Background(), tc.domain)
		if err != nil {
			t.Errorf("Map(%q) = %v", tc.domain, err)
			continue
		}
		if got.Domain != tc.wantDomain || got.Name != tc.wantNm || got.Zone != tc.wantZone || got.Rule != tc.wantRule || got.Chain.End != tc.wantNm {
			t.Errorf("Map(%q) = {%q %q %q rule %q chain %v}; want {%q %q %q rule %q}", tc.domain,
				got.Domain, got.Name, got.Zone, matchOf(got.Rule), got.Chain, tc.wantDomain, tc.wantNm, tc.wantZone, tc.wantRule.Match)
		}
	}
	// A domain and its wildcard share one challenge name, asked once.
	for _, q := range []string{"_acme-challenge.static.test", "_acme-challenge.shop.tmpl.test"} {
		if n := d.count(q, dns.TypeCNAME); n != 1 {
			t.Errorf("%d CNAME queries for %s, want 1 (cached)", n, q)
		}
	}

	// No SOA anywhere: the mapping fails, naming the alias.
	noZone := mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.{domain}.nowhere.test"), Writer: w})
	m2 := &Mapper{Default: noZone, Resolver: res}
	if _, err := m2.Resolve(context.Background(), "example.com"); err == nil || !strings.Contains(err.Error(), "_acme-challenge.example.com.nowhere.test") {
		t.Errorf("Map with no zone found = %v, want an error naming the alias", err)
	}
}

// followMapper returns a Mapper whose default follows CNAMEs confined to
// validation.example.org.
func followMapper(t testing.TB, d *fakeDNS, maxHops int) (*Mapper, *fakeClock) {
	t.Helper()
	res, clk := newTestResolver(t, d)
	rule := mustValidate(t, &Rule{Follow: true, Zones: []string{"validation.example.org", "other-validation.example.org"}, Writer: &fakeWriter{}, WriterName: "fake"})
	return &Mapper{Default: rule, Resolver: res, MaxHops: maxHops}, clk
}

func TestMapFollow(t *testing.T) {
	const (
		start = "_acme-challenge.example.com"
		end   = "_acme-challenge.example.com.validation.example.org"
	)
	hops := func(n int) []string {
		names := []string{start}
		for i := 1; i < n; i++ {
			names = append(names, fmt.Sprintf("hop%d.example.net", i))
		}
		return append(names, end)
	}
	for _, tc := range []struct {
		name     string
		setup    func(d *fakeDNS)
		domain   string
		maxHops  int
		wantEnd  string
		wantZone string
		wantHops int
		wantIs   error
		wantErr  []string
	}{
		{name: "one hop", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, end) },
			wantEnd: end, wantZone: "validation.example.org", wantHops: 1},
		{name: "two hops", domain: "*.example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "_acme-challenge.example.com.hop.example.net", end) },
			wantEnd: end, wantZone: "validation.example.org", wantHops: 2},
		{name: "longest zone wins", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "x.other-validation.example.org") },
			wantEnd: "x.other-validation.example.org", wantZone: "other-validation.example.org", wantHops: 1},
		{name: "mixed case and dots", domain: "Example.COM.",
			setup: func(d *fakeDNS) {
				d.cname("_ACME-Challenge.Example.COM.", "Hop.Example.NET") // no trailing dot on the target
				d.cname("hop.example.net", "_Acme-Challenge.EXAMPLE.com.Validation.Example.ORG.")
			},
			wantEnd: end, wantZone: "validation.example.org", wantHops: 2},
		{name: "exactly max hops", domain: "example.com", maxHops: 3,
			setup:   func(d *fakeDNS) { d.chain(hops(3)...) },
			wantEnd: end, wantZone: "validation.example.org", wantHops: 3},
		{name: "default max hops", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(hops(DefaultMaxHops)...) },
			wantEnd: end, wantZone: "validation.example.org", wantHops: DefaultMaxHops},
		{name: "ends outside zones", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "_acme-challenge.example.com.evil.example") },
			wantErr: []string{"nothing was written", "_acme-challenge.example.com.evil.example", "validation.example.org"}},
		{name: "no false suffix match", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "x.badvalidation.example.org") },
			wantErr: []string{"nothing was written", "x.badvalidation.example.org"}},
		{name: "ends at the apex of the zone", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "validation.example.org") },
			wantErr: []string{"apex", "validation.example.org", "nothing was written"}},
		{name: "ends at the parent of the zone", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "example.org") },
			wantErr: []string{"nothing was written"}},
		{name: "escaped dot inside zone", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, `evil\.validation.example.org.`) },
			wantErr: []string{`evil\.validation.example.org`, "nothing was written"}},
		{name: "double trailing dot", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "x.validation.example.org..") },
			wantErr: []string{"empty label", "nothing was written"}},
		{name: "empty label inside zone", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "a..validation.example.org") },
			wantErr: []string{"empty label", "nothing was written"}},
		{name: "wildcard label inside zone", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "*.validation.example.org") },
			wantErr: []string{"*.validation.example.org", "nothing was written"}},
		{name: "no delegation", domain: "*.Example.com",
			setup:  func(d *fakeDNS) {},
			wantIs: ErrNoDelegation,
			wantErr: []string{"_acme-challenge.example.com",
				"publish in the production zone: _acme-challenge.example.com. 300 IN CNAME _acme-challenge.example.com.validation.example.org."}},
		{name: "loop", domain: "example.com",
			setup:   func(d *fakeDNS) { d.chain(start, "a.example.net", "b.example.net", "a.example.net") },
			wantIs:  ErrLoop,
			wantErr: []string{"b.example.net", "a.example.net"}},
		{name: "loop back to start in other case", domain: "example.com",
			setup:  func(d *fakeDNS) { d.chain(start, "a.example.net", "_ACME-CHALLENGE.example.COM.") },
			wantIs: ErrLoop},
		{name: "self loop", domain: "example.com",
			setup:  func(d *fakeDNS) { d.cname(start, start) },
			wantIs: ErrLoop},
		{name: "too many hops", domain: "example.com", maxHops: 3,
			setup:   func(d *fakeDNS) { d.chain(hops(4)...) },
			wantIs:  ErrTooManyHops,
			wantErr: []string{"3", start}},
		{name: "too many hops by default", domain: "example.com",
			setup:  func(d *fakeDNS) { d.chain(hops(DefaultMaxHops + 1)...) },
			wantIs: ErrTooManyHops},
		{name: "wildcard synthesises the delegation", domain: "example.com",
			// *.example.com CNAME points into our zone even: still refused,
			// the domain's owner never delegated its challenge.
			setup:   func(d *fakeDNS) { d.wildcard("example.com", "x.validation.example.org") },
			wantIs:  ErrWildcard,
			wantErr: []string{"*.example.com", "x.validation.example.org"}},
		{name: "wildcard at a later hop", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.cname(start, "_acme-challenge.hop.example.net")
				d.wildcard("hop.example.net", end)
			},
			wantIs: ErrWildcard},
		{name: "explicit record next to a different wildcard", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.chain(start, end)
				d.wildcard("example.com", "www.example.net")
			},
			wantEnd: end, wantZone: "validation.example.org", wantHops: 1},
		{name: "servfail at the start", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.chain(start, end)
				d.servfail[start] = true
			},
			wantIs: ErrLookup, wantErr: []string{"SERVFAIL", start}},
		{name: "servfail at a hop", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.chain(start, "a.example.net", end)
				d.servfail["a.example.net"] = true
			},
			wantIs: ErrLookup, wantErr: []string{"a.example.net"}},
		{name: "servfail at the wildcard probe", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.chain(start, end)
				d.servfail[wildcardProbeLabel+".example.com"] = true
			},
			wantIs: ErrLookup},
		{name: "transport error", domain: "example.com",
			setup: func(d *fakeDNS) {
				d.chain(start, end)
				d.neterr[start] = true
			},
			wantIs: ErrLookup, wantErr: []string{"i/o timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDNS("example.com", "example.net", "example.org", "validation.example.org", "other-validation.example.org")
			tc.setup(d)
			m, _ := followMapper(t, d, tc.maxHops)
			got, err := m.Resolve(context.Background(), tc.domain)
			if tc.wantIs != nil || tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Map = %+v, nil; want an error", got)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("Map error %q is not %v", err, tc.wantIs)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Map error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Map = %v", err)
			}
			if got.Name != tc.wantEnd || got.Zone != tc.wantZone || got.Domain != "example.com" {
				t.Errorf("Map = {%q %q %q}, want {example.com %q %q}", got.Domain, got.Name, got.Zone, tc.wantEnd, tc.wantZone)
			}
			if len(got.Chain.Hops) != tc.wantHops || got.Chain.Start != start || got.Chain.End != tc.wantEnd {
				t.Fatalf("Map chain = %+v, want %d hops from %s to %s", got.Chain, tc.wantHops, start, tc.wantEnd)
			}
			for i, h := range got.Chain.Hops {
				if h.Owner != Normalize(h.Owner) || h.Target != Normalize(h.Target) {
					t.Errorf("hop %d = %+v is not normalized", i, h)
				}
				if i > 0 && got.Chain.Hops[i-1].Target != h.Owner {
					t.Errorf("hop %d owner %s does not continue from %s", i, h.Owner, got.Chain.Hops[i-1].Target)
				}
			}
		})
	}
}

func TestFindZone(t *testing.T) {
	d := newFakeDNS("example.org", "validation.example.org", "sub.validation.example.org", "example.com")
	d.cname("_acme-challenge.example.com", "x.validation.example.org")
	d.servfail["broken.test"] = true
	r, _ := newTestResolver(t, d)
	for _, tc := range []struct {
		name, want string
		wantErr    string
	}{
		{"validation.example.org", "validation.example.org", ""},           // SOA in the answer
		{"a.b.validation.example.org", "validation.example.org", ""},       // SOA in the authority section
		{"X.Validation.Example.ORG.", "validation.example.org", ""},        // case and dot
		{"a.sub.validation.example.org", "sub.validation.example.org", ""}, // delegated child zone
		{"www.example.org", "example.org", ""},
		{"badvalidation.example.org", "example.org", ""},
		// A CNAME answer carries the target's SOA: skipped, the zone of
		// the name itself is wanted.
		{"_acme-challenge.example.com", "example.com", ""},
		{"nowhere.test", "", "no SOA"},
		{"a.broken.test", "", "SERVFAIL"},
	} {
		got, err := r.FindZone(context.Background(), tc.name)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), Normalize(tc.name)) {
				t.Errorf("FindZone(%q) = %q, %v; want an error naming it and containing %q", tc.name, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("FindZone(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestFindZoneConcurrentCachedAnswer runs FindZone on one cached answer from
// many goroutines. The answer's slices have spare capacity, as those that
// miekg/dns unpacks with append do; under -race this catches code that
// appends to a shared cached message.
func TestFindZoneConcurrentCachedAnswer(t *testing.T) {
	d := newFakeDNS("validation.example.org")
	r, _ := newTestResolver(t, d)
	inner := r.exchange
	r.exchange = func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
		msg, err := inner(ctx, req, server)
		if err == nil {
			answer := make([]dns.RR, len(msg.Answer), len(msg.Answer)+8)
			copy(answer, msg.Answer)
			msg.Answer = answer
			msg.Ns = append(msg.Ns, d.soa("validation.example.org"))
		}
		return msg, err
	}
	if _, err := r.FindZone(context.Background(), "x.validation.example.org"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if z, err := r.FindZone(context.Background(), "x.validation.example.org"); err != nil || z != "validation.example.org" {
				errs <- fmt.Errorf("FindZone = %q, %v", z, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := d.total(); n != 1 {
		t.Errorf("%d queries, want 1 (the rest from the cache)", n)
	}
}

func TestResolverCache(t *testing.T) {
	const start = "_acme-challenge.example.com"
	ctx := context.Background()

	t.Run("positive answers live for their TTL", func(t *testing.T) {
		d := newFakeDNS("example.com", "validation.example.org")
		d.cnameTTL = 30
		d.chain(start, "x.validation.example.org")
		r, clk := newTestResolver(t, d)
		follow := func() {
			t.Helper()
			if c, err := r.Follow(ctx, start, 0); err != nil || c.End != "x.validation.example.org" {
				t.Fatalf("Follow = %+v, %v", c, err)
			}
		}
		follow()
		if n := d.count(start, dns.TypeCNAME); n != 1 {
			t.Fatalf("first Follow: %d queries for %s, want 1", n, start)
		}
		clk.Advance(29 * time.Second)
		follow()
		follow()
		if n := d.count(start, dns.TypeCNAME); n != 1 {
			t.Errorf("within the TTL: %d queries for %s, want 1", n, start)
		}
		clk.Advance(time.Second) // TTL reached
		follow()
		if n := d.count(start, dns.TypeCNAME); n != 2 {
			t.Errorf("after the TTL: %d queries for %s, want 2", n, start)
		}
		// Mixed case and a trailing dot hit the same cache entry.
		if _, err := r.Follow(ctx, "_ACME-challenge.Example.COM.", 0); err != nil {
			t.Fatal(err)
		}
		if n := d.count(start, dns.TypeCNAME); n != 2 {
			t.Errorf("same name in other case: %d queries, want 2", n)
		}
	})

	t.Run("long TTLs are capped", func(t *testing.T) {
		d := newFakeDNS("example.com", "validation.example.org")
		d.cnameTTL = 86400
		d.chain(start, "x.validation.example.org")
		r, clk := newTestResolver(t, d)
		if _, err := r.Follow(ctx, start, 0); err != nil {
			t.Fatal(err)
		}
		clk.Advance(maxCacheTTL - time.Second)
		if _, err := r.Follow(ctx, start, 0); err != nil {
			t.Fatal(err)
		}
		if n := d.count(start, dns.TypeCNAME); n != 1 {
			t.Errorf("%d queries, want 1", n)
		}
		clk.Advance(time.Second)
		if _, err := r.Follow(ctx, start, 0); err != nil {
			t.Fatal(err)
		}
		if n := d.count(start, dns.TypeCNAME); n != 2 {
			t.Errorf("after %v: %d queries, want 2", maxCacheTTL, n)
		}
	})

	t.Run("negative answers live for the SOA minimum", func(t *testing.T) {
		d := newFakeDNS("example.com", "validation.example.org")
		d.soaTTL = 3600
		d.soaMin = 10
		r, clk := newTestResolver(t, d)
		for range 3 {
			if c, err := r.Follow(ctx, start, 0); err != nil || len(c.Hops) != 0 {
				t.Fatalf("Follow = %+v, %v; want no hops", c, err)
			}
		}
		if n := d.count(start, dns.TypeCNAME); n != 1 {
			t.Errorf("%d queries, want 1", n)
		}
		// The operator publishes the CNAME: seen once the negative
		// answer expires, not before.
		d.chain(start, "x.validation.example.org")
		clk.Advance(9 * time.Second)
		if c, _ := r.Follow(ctx, start, 0); len(c.Hops) != 0 {
			t.Errorf("negative answer expired early: %+v", c)
		}
		clk.Advance(time.Second)
		if c, err := r.Follow(ctx, start, 0); err != nil || c.End != "x.validation.example.org" {
			t.Errorf("after the SOA minimum: Follow = %+v, %v", c, err)
		}
		if n := d.count(start, dns.TypeCNAME); n != 2 {
			t.Errorf("%d queries, want 2", n)
		}
	})

	t.Run("negative TTL is the SOA TTL when smaller", func(t *testing.T) {
		d := newFakeDNS("example.com")
		d.soaTTL = 5
		d.soaMin = 3600
		r, clk := newTestResolver(t, d)
		for _, step := range []time.Duration{0, 4 * time.Second, time.Second} {
			clk.Advance(step)
			if _, err := r.Query(ctx, start, dns.TypeCNAME); err != nil {
				t.Fatal(err)
			}
		}
		if n := d.count(start, dns.TypeCNAME); n != 2 {
			t.Errorf("%d queries, want 2", n)
		}
	})

	t.Run("negative answers without SOA and failures are not cached", func(t *testing.T) {
		d := newFakeDNS() // no zones: NXDOMAIN without SOA
		d.servfail["broken.example"] = true
		r, _ := newTestResolver(t, d)
		for range 3 {
			if _, err := r.Query(ctx, "nowhere.example", dns.TypeCNAME); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Query(ctx, "broken.example", dns.TypeCNAME); !errors.Is(err, ErrLookup) {
				t.Fatalf("Query(broken) = %v, want ErrLookup", err)
			}
		}
		if n := d.count("nowhere.example", dns.TypeCNAME); n != 3 {
			t.Errorf("NXDOMAIN without SOA: %d queries, want 3", n)
		}
		if n := d.count("broken.example", dns.TypeCNAME); n != 3 {
			t.Errorf("SERVFAIL: %d queries, want 3", n)
		}
	})

	t.Run("questions are cached per type", func(t *testing.T) {
		d := newFakeDNS("validation.example.org")
		r, _ := newTestResolver(t, d)
		for range 2 {
			for _, qt := range []uint16{dns.TypeCNAME, dns.TypeTXT} {
				if _, err := r.Query(ctx, "x.validation.example.org", qt); err != nil {
					t.Fatal(err)
				}
			}
		}
		if a, b := d.count("x.validation.example.org", dns.TypeCNAME), d.count("x.validation.example.org", dns.TypeTXT); a != 1 || b != 1 {
			t.Errorf("queries CNAME %d TXT %d, want 1 each", a, b)
		}
	})

	// A negative answer names the zone of its question in its authority
	// section: the zone of that name and of its parent is then known
	// without an SOA query of its own (the periodic checks' SOA query per
	// name).
	t.Run("negative answers tell the zone", func(t *testing.T) {
		d := newFakeDNS("validation.example.org")
		r, _ := newTestResolver(t, d)
		if _, err := r.Query(ctx, "_acme-challenge.x.validation.example.org", dns.TypeCNAME); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"_acme-challenge.x.validation.example.org", "x.validation.example.org"} {
			if zone, err := r.FindZone(ctx, n); err != nil || zone != "validation.example.org" {
				t.Fatalf("FindZone(%s) = %q, %v", n, zone, err)
			}
			if k := d.count(n, dns.TypeSOA); k != 0 {
				t.Errorf("FindZone(%s) asked %d SOA queries, want 0", n, k)
			}
		}
	})
}

func TestResolverServers(t *testing.T) {
	r, err := NewResolver([]string{"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:53", "127.0.0.1:5353", "[::1]:53", "[::1]:53"}
	if fmt.Sprint(r.Servers()) != fmt.Sprint(want) {
		t.Errorf("Servers = %v, want %v", r.Servers(), want)
	}
	if _, err := NewResolver([]string{"resolver.example"}, 0); err == nil || !strings.Contains(err.Error(), "resolver.example") {
		t.Errorf("NewResolver(hostname) = %v, want an error naming it", err)
	}

	// The second server answers when the first fails.
	d := newFakeDNS("validation.example.org")
	r, err = NewResolver([]string{"127.0.0.1:1", "127.0.0.1:2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	r.exchange = func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
		asked = append(asked, server)
		if server == "127.0.0.1:1" {
			return nil, errors.New("connection refused")
		}
		return d.exchange(ctx, req, server)
	}
	if z, err := r.FindZone(context.Background(), "validation.example.org"); err != nil || z != "validation.example.org" {
		t.Errorf("FindZone = %q, %v", z, err)
	}
	if fmt.Sprint(asked) != "[127.0.0.1:1 127.0.0.1:2]" {
		t.Errorf("asked %v, want both servers in order", asked)
	}
}

// delegatedResolver is a resolver under which every domain has delegated its
// challenge to alias (a name or a template with {domain}) in zone.
func delegatedResolver(t testing.TB, zone, alias string) *Resolver {
	d := newFakeDNS(zone)
	d.delegateAll = alias
	res, _ := newTestResolver(t, d)
	return res
}

// TestValidateRules: a domain or pattern matched by two rules is refused,
// naming both; the same name as exact domain and as pattern is not a clash.
func TestValidateRules(t *testing.T) {
	w := &fakeWriter{}
	static := mustTemplate(t, "_acme-challenge.validation.example.org")
	rule := func(match ...string) *Rule {
		return mustValidate(t, &Rule{Match: match, Alias: static, Writer: w})
	}
	for _, tc := range []struct {
		name    string
		rules   []*Rule
		wantErr string
	}{
		{"distinct", []*Rule{rule("example.com"), rule("example.net", "*.example.com")}, ""},
		{"same domain", []*Rule{rule("example.com"), rule("example.net", "Example.COM.")}, `rules[1].match[1]: "example.com" is matched by rules[0]`},
		{"same pattern", []*Rule{rule("*.example.com"), rule("x.example.net"), rule("*.example.com")}, `rules[2].match[0]: "*.example.com" is matched by rules[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateRules(tc.rules)
			if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ValidateRules = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestResolverIsolated: an isolated view answers from the live cache but
// never fills it, and a full cache keeps its live entries rather than
// being cleared, so that diagnostic lookups of arbitrary names (the admin
// API's checks) cannot push out what live challenges use.
func TestResolverIsolated(t *testing.T) {
	d := newFakeDNS("example.com")
	d.cname("_acme-challenge.live.example.com", "x.validation.example.org")
	live, _ := newTestResolver(t, d)
	ctx := context.Background()
	if _, err := live.Query(ctx, "_acme-challenge.live.example.com", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	view := live.Isolated()
	if _, err := view.Query(ctx, "_acme-challenge.live.example.com", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	if n := d.count("_acme-challenge.live.example.com", dns.TypeCNAME); n != 1 {
		t.Errorf("the view asked again (%d queries), want the live cache's answer", n)
	}
	for i := range 50 {
		d.cname(fmt.Sprintf("_acme-challenge.d%d.example.com", i), "y.example.net")
		if _, err := view.Query(ctx, fmt.Sprintf("_acme-challenge.d%d.example.com", i), dns.TypeCNAME); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(live.cache.entries); n != 1 {
		t.Errorf("diagnostic lookups put %d entries into the live cache, want only its own 1", n-1)
	}

	// A refreshing view asks although the answer is cached, and leaves
	// what it learnt in the live cache.
	d.cname("_acme-challenge.live.example.com", "moved.validation.example.org")
	if _, err := live.Refreshing().Query(ctx, "_acme-challenge.live.example.com", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	if c, ok := live.cache.lookup(question{"_acme-challenge.live.example.com.", dns.TypeCNAME}); !ok || !strings.Contains(c.msg.String(), "moved.validation.example.org") {
		t.Errorf("the refreshed answer is not in the live cache")
	}

	// Full of live answers: a new one is stored all the same, one old
	// entry makes room, and the cache stays within its bound.
	for i := range maxCacheEntries - 1 {
		live.cache.entries[question{fmt.Sprintf("filler%d.", i), dns.TypeA}] = cached{expires: live.cache.now().Add(time.Minute)}
	}
	d.cname("_acme-challenge.new.example.com", "z.example.net")
	if _, err := live.Query(ctx, "_acme-challenge.new.example.com", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	if _, ok := live.cache.lookup(question{"_acme-challenge.new.example.com.", dns.TypeCNAME}); !ok || len(live.cache.entries) != maxCacheEntries {
		t.Errorf("a full cache did not take the new answer within its bound (%d entries)", len(live.cache.entries))
	}
}
