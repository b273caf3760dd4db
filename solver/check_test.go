package solver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// checkDNS extends fakeDNS (the recursive view of mapping_test.go) with
// what the delegation check asks besides CNAMEs: NS and address records,
// CAA, names below a zone the resolver fails on, and authoritative servers
// asked directly, each by its address.
type checkDNS struct {
	rec *fakeDNS // the recursive resolver's view of CNAMEs and zones

	mu       sync.Mutex
	ns       map[string][]string // zone -> NS host names
	addr     map[string][]string // host -> IPv4 addresses
	caa      map[string][]dns.RR // owner -> CAA records
	failZone []string            // the resolver answers SERVFAIL at and below these
	// servfailExceptCNAME: the resolver SERVFAILs every question but CNAME.
	servfailExceptCNAME bool
	auth                map[string]*fakeAuth
	asked               map[uint16]int // questions to the resolver, by type
}

// fakeAuth is one authoritative server. It serves the CNAMEs of data (the
// recursive view unless a test gives it its own copy to stage drift).
type fakeAuth struct {
	data      *fakeDNS
	lame      bool                // answers without the AA bit
	rcode     int                 // answers this rcode when not 0
	referrals map[string]referral // sub-zone -> its delegation
}

type referral struct {
	ns   []string
	glue map[string]string
}

const testResolver = "127.0.0.1:1"

// newCheckDNS serves example.com (ns1.example.com, 192.0.2.1), the alias zone
// validation.example.org, hop.example and notours.example.
func newCheckDNS(t testing.TB) (*checkDNS, *Resolver) {
	d := &checkDNS{
		rec:   newFakeDNS("example.com", "validation.example.org", "hop.example", "notours.example"),
		ns:    map[string][]string{"example.com": {"ns1.example.com"}},
		addr:  map[string][]string{"ns1.example.com": {"192.0.2.1"}},
		caa:   map[string][]dns.RR{},
		auth:  map[string]*fakeAuth{},
		asked: map[uint16]int{},
	}
	d.auth["192.0.2.1:53"] = &fakeAuth{data: d.rec}
	r, _ := newTestResolver(t, d.rec)
	r.exchange = d.exchange
	return d, r
}

func (d *checkDNS) withCAA(t *testing.T, records ...string) *checkDNS {
	t.Helper()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad CAA %q: %v", s, err)
		}
		d.caa[Normalize(rr.Header().Name)] = append(d.caa[Normalize(rr.Header().Name)], rr)
	}
	return d
}

func (d *checkDNS) exchange(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
	if server != testResolver {
		return d.authoritative(req, server)
	}
	q := req.Question[0]
	n := Normalize(q.Name)
	d.mu.Lock()
	d.asked[q.Qtype]++
	resp := new(dns.Msg)
	resp.SetReply(req)
	if d.servfailExceptCNAME && q.Qtype != dns.TypeCNAME {
		d.mu.Unlock()
		resp.Rcode = dns.RcodeServerFailure
		return resp, nil
	}
	for _, z := range d.failZone {
		if InZone(n, z) {
			d.mu.Unlock()
			resp.Rcode = dns.RcodeServerFailure
			return resp, nil
		}
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: dns.Fqdn(n), Rrtype: t, Class: dns.ClassINET, Ttl: 300}
	}
	switch {
	case q.Qtype == dns.TypeNS && d.ns[n] != nil:
		for _, h := range d.ns[n] {
			resp.Answer = append(resp.Answer, &dns.NS{Hdr: hdr(dns.TypeNS), Ns: dns.Fqdn(h)})
		}
	case q.Qtype == dns.TypeA && d.addr[n] != nil:
		for _, a := range d.addr[n] {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: parseIP(a)})
		}
	case q.Qtype == dns.TypeAAAA && d.addr[n] != nil:
		// NODATA: the lab's nameservers have IPv4 addresses only.
	case q.Qtype == dns.TypeCAA && d.caa[n] != nil:
		resp.Answer = append(resp.Answer, d.caa[n]...)
	default:
		d.mu.Unlock()
		return d.rec.exchange(ctx, req, server)
	}
	d.mu.Unlock()
	return resp, nil
}

func (d *checkDNS) authoritative(req *dns.Msg, server string) (*dns.Msg, error) {
	d.mu.Lock()
	a := d.auth[server]
	d.mu.Unlock()
	if a == nil {
		return nil, errors.New("read udp " + server + ": connection refused")
	}
	if req.RecursionDesired {
		return nil, errors.New("test: an authoritative server was asked with recursion desired")
	}
	q := req.Question[0]
	n := Normalize(q.Name)
	resp := new(dns.Msg)
	resp.SetReply(req)
	if a.rcode != 0 {
		resp.Rcode = a.rcode
		return resp, nil
	}
	for zone, ref := range a.referrals {
		if InZone(n, zone) {
			for _, h := range ref.ns {
				resp.Ns = append(resp.Ns, &dns.NS{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 300}, Ns: dns.Fqdn(h)})
				if ip, ok := ref.glue[h]; ok {
					resp.Extra = append(resp.Extra, &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(h), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: parseIP(ip)})
				}
			}
			return resp, nil
		}
	}
	resp.Authoritative = !a.lame
	a.data.mu.Lock()
	c, ok := a.data.lookupCNAME(n)
	a.data.mu.Unlock()
	if ok && (q.Qtype == dns.TypeCNAME || q.Qtype == dns.TypeANY) {
		resp.Answer = append(resp.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: dns.Fqdn(n), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300},
			Target: dns.Fqdn(c.target),
		})
	} else if !ok {
		resp.Rcode = dns.RcodeNameError
	}
	return resp, nil
}

func parseIP(s string) []byte {
	rr, err := dns.NewRR("x. A " + s)
	if err != nil {
		panic(err)
	}
	return rr.(*dns.A).A
}

// Rules like the plugin's: a static alias, a template, and follow mode, all
// confined to the alias zone.
// ourAccount is the ACME account URI a test's server orders with.
const ourAccount = "https://acme-v02.api.letsencrypt.org/acme/acct/100"

// knownIssuer is a Checker's Issuer for Let's Encrypt and accounts (none:
// this server has no account yet).
func knownIssuer(accounts ...string) func(context.Context) Issuer {
	return func(context.Context) Issuer {
		return Issuer{CAIdentities: []string{"letsencrypt.org"}, AccountURIs: accounts}
	}
}

func staticRule(t *testing.T) *Rule {
	return mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.validation.example.org"),
		Zones: []string{"validation.example.org"}, Writer: &fakeWriter{}, WriterName: "fake"})
}

func templateRule(t *testing.T) *Rule {
	return mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.{domain}.validation.example.org"),
		Zones: []string{"validation.example.org"}, Writer: &fakeWriter{}, WriterName: "fake"})
}

func followRule(t *testing.T) *Rule {
	return mustValidate(t, &Rule{Follow: true, Zones: []string{"validation.example.org"}, Writer: &fakeWriter{}, WriterName: "fake"})
}

func findingCodes(r *Report, fatal bool) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Fatal == fatal {
			out = append(out, f.Code)
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	const (
		staticAlias = "_acme-challenge.validation.example.org"
		tmplAlias   = "_acme-challenge.example.com.validation.example.org"
		challenge   = "_acme-challenge.example.com"
	)
	for _, tc := range []struct {
		name    string
		rule    func(*testing.T) *Rule
		maxHops int
		domain  string // default example.com
		setup   func(t *testing.T, d *checkDNS)
		fatal   []string // fatal finding codes, in order; nil: the check passes
		notes   []string // non-fatal finding codes
		fix     string   // Report.Fix, exactly
		msgs    []string // each must appear in the findings' messages
		end     string   // Chain.End, when the chain was resolved
		hops    int
		// accounts are this server's ACME account URIs at the CA (none:
		// not known yet)
		accounts []string
	}{
		{
			name: "ok static", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) { d.rec.cname(challenge, staticAlias) },
			end:   staticAlias, hops: 1,
		},
		{
			name: "ok template through two hops, odd case and dots", rule: templateRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.chain("_ACME-Challenge.Example.COM.", "x.hop.example", "_acme-challenge.example.com.VALIDATION.example.org")
			},
			end: tmplAlias, hops: 2,
		},
		{
			name: "ok follow", rule: followRule,
			setup: func(t *testing.T, d *checkDNS) { d.rec.cname(challenge, "anything.validation.example.org") },
			end:   "anything.validation.example.org", hops: 1,
		},
		{
			name: "no delegation, static", rule: staticRule,
			fatal: []string{CodeNoDelegation},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
			msgs:  []string{"_acme-challenge.example.com has no CNAME record"},
			end:   challenge,
		},
		{
			name: "no delegation, template", rule: templateRule,
			fatal: []string{CodeNoDelegation},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.example.com.validation.example.org.",
			end:   challenge,
		},
		{
			name: "no delegation, follow", rule: followRule, domain: "Shop.Example.com.",
			fatal: []string{CodeNoDelegation},
			fix:   "_acme-challenge.shop.example.com. 300 IN CNAME _acme-challenge.shop.example.com.validation.example.org.",
			msgs:  []string{"_acme-challenge.shop.example.com has no CNAME record"},
			end:   "_acme-challenge.shop.example.com",
		},
		{
			name: "wrong target", rule: templateRule,
			setup: func(t *testing.T, d *checkDNS) { d.rec.cname(challenge, staticAlias) },
			fatal: []string{CodeWrongTarget},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.example.com.validation.example.org.",
			msgs:  []string{"ends at " + staticAlias + ", not at the alias " + tmplAlias},
			end:   staticAlias, hops: 1,
		},
		{
			name: "outside the alias zones", rule: followRule,
			setup: func(t *testing.T, d *checkDNS) { d.rec.cname(challenge, "x.notours.example") },
			fatal: []string{CodeOutsideZones},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.example.com.validation.example.org.",
			msgs:  []string{"ends at x.notours.example, outside the alias zones [validation.example.org]", "nothing was written"},
			end:   "x.notours.example", hops: 1,
		},
		{
			name: "wildcard", rule: followRule, domain: "shop.example.com",
			setup: func(t *testing.T, d *checkDNS) { d.rec.wildcard("example.com", "x.validation.example.org") },
			fatal: []string{CodeWildcard},
			fix:   "_acme-challenge.shop.example.com. 300 IN CNAME _acme-challenge.shop.example.com.validation.example.org.",
			msgs:  []string{"CNAME synthesised by a wildcard record", "*.shop.example.com", "an explicit CNAME is needed"},
		},
		{
			name: "loop", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.chain(challenge, "a.hop.example", "b.hop.example", "a.hop.example")
			},
			fatal: []string{CodeLoop},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
			msgs:  []string{"CNAME loop: b.hop.example points back to a.hop.example"},
			hops:  3,
		},
		{
			name: "chain at the cap", rule: staticRule, maxHops: 3,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.chain(challenge, "1.hop.example", "2.hop.example", staticAlias)
			},
			end: staticAlias, hops: 3,
		},
		{
			name: "chain one hop over the cap", rule: staticRule, maxHops: 3,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.chain(challenge, "1.hop.example", "2.hop.example", "3.hop.example", staticAlias)
			},
			fatal: []string{CodeTooManyHops},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
			msgs:  []string{"CNAME chain too long: more than 3 hops from _acme-challenge.example.com"},
			hops:  4,
		},
		{
			name: "SERVFAIL", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) { d.rec.servfail[challenge] = true },
			fatal: []string{CodeLookup},
			msgs:  []string{"DNS lookup failed: CNAME _acme-challenge.example.com.", "SERVFAIL"},
		},
		{
			name: "timeout", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, "x.hop.example")
				d.rec.neterr["x.hop.example"] = true
			},
			fatal: []string{CodeLookup},
			msgs:  []string{"DNS lookup failed: CNAME x.hop.example.", "i/o timeout"},
			hops:  1,
		},
		{
			name: "drift, the resolver saw the record", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.ns["example.com"] = []string{"ns1.example.com", "ns2.example.com"}
				d.addr["ns2.example.com"] = []string{"192.0.2.2"}
				d.auth["192.0.2.2:53"] = &fakeAuth{data: newFakeDNS("example.com")}
			},
			fatal: []string{CodeDrift},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
			msgs: []string{
				"the nameservers of example.com disagree about _acme-challenge.example.com",
				"ns1.example.com (192.0.2.1:53): CNAME _acme-challenge.validation.example.org",
				"ns2.example.com (192.0.2.2:53): no CNAME",
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "drift, the resolver saw another target", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, "old.validation.example.org")
				d.ns["example.com"] = []string{"ns1.example.com", "ns2.example.com"}
				d.addr["ns2.example.com"] = []string{"192.0.2.2"}
				d.auth["192.0.2.2:53"] = &fakeAuth{data: newFakeDNS("example.com").cname(challenge, staticAlias)}
			},
			fatal: []string{CodeWrongTarget, CodeDrift},
			fix:   "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
			msgs: []string{
				"ns1.example.com (192.0.2.1:53): CNAME old.validation.example.org",
				"ns2.example.com (192.0.2.2:53): CNAME _acme-challenge.validation.example.org",
			},
			end: "old.validation.example.org", hops: 1,
		},
		{
			name: "nameserver down", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.ns["example.com"] = []string{"ns1.example.com", "ns2.example.com"}
				d.addr["ns2.example.com"] = []string{"192.0.2.2"}
			},
			fatal: []string{CodeNSUnreachable},
			msgs:  []string{"nameserver ns2.example.com (192.0.2.2:53) of example.com did not answer for _acme-challenge.example.com", "connection refused"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "nameserver without address", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.ns["example.com"] = []string{"ns1.example.com", "ns2.example.com"}
			},
			fatal: []string{CodeNSUnreachable},
			msgs:  []string{"nameserver ns2.example.com of example.com cannot be reached"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "lame nameserver", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.auth["192.0.2.1:53"].lame = true
			},
			fatal: []string{CodeNSUnreachable},
			msgs:  []string{"nameserver ns1.example.com (192.0.2.1:53) of example.com", "lame delegation"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "nameserver refuses", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.auth["192.0.2.1:53"].rcode = dns.RcodeRefused
			},
			fatal: []string{CodeNSUnreachable},
			msgs:  []string{"ns1.example.com (192.0.2.1:53)", "answered REFUSED"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "every nameserver of a sub-zone unreachable", rule: staticRule, domain: "x.sub.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.failZone = []string{"sub.example.com"}
				d.auth["192.0.2.1:53"].referrals = map[string]referral{
					"sub.example.com": {ns: []string{"ns1.sub.example.com"}, glue: map[string]string{"ns1.sub.example.com": "192.0.2.9"}},
				}
			},
			// The resolver fails on CAA too, as a CA's would.
			fatal: []string{CodeLookup, CodeNSUnreachable, CodeLookup},
			msgs: []string{
				"DNS lookup failed: CNAME _acme-challenge.x.sub.example.com.",
				"looking up CAA of x.sub.example.com",
				"nameserver ns1.sub.example.com (192.0.2.9:53) of sub.example.com did not answer for _acme-challenge.x.sub.example.com: read udp 192.0.2.9:53: connection refused",
			},
		},
		{
			name: "CAA forbids", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "sectigo.com"`, `example.com. 300 IN CAA 0 iodef "mailto:x@example.com"`)
			},
			fatal: []string{CodeCAAForbids},
			fix:   `example.com. 300 IN CAA 0 issue "letsencrypt.org"`,
			msgs:  []string{"CAA issue at example.com allows only sectigo.com, none of letsencrypt.org"},
			end:   staticAlias, hops: 1,
		},
		{
			// DNS is untrusted: a CAA value's control bytes (here one that
			// clears the terminal) reach no terminal, log or event raw.
			name: "CAA value with control bytes", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				// As it comes off the wire: the bytes themselves.
				d.caa["example.com"] = []dns.RR{&dns.CAA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeCAA, Class: dns.ClassINET, Ttl: 300},
					Tag: "issue", Value: "\x1b[2Jevil.example"}}
			},
			fatal: []string{CodeCAAForbids},
			fix:   `example.com. 300 IN CAA 0 issue "letsencrypt.org"`,
			msgs:  []string{`CAA issue at example.com allows only \x1b[2jevil.example, none of letsencrypt.org`},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA of the parent applies", rule: staticRule, domain: "shop.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname("_acme-challenge.shop.example.com", staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue ";"`)
			},
			fatal: []string{CodeCAAForbids},
			fix:   `example.com. 300 IN CAA 0 issue "letsencrypt.org"`,
			msgs:  []string{`CAA issue at example.com allows only ";" (no CA)`},
			end:   staticAlias, hops: 1,
		},
		{
			name: "closest CAA set wins", rule: staticRule, domain: "shop.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname("_acme-challenge.shop.example.com", staticAlias)
				d.withCAA(t, `shop.example.com. 300 IN CAA 0 issue "letsencrypt.org"`, `example.com. 300 IN CAA 0 issue ";"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA without issue property does not restrict", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 iodef "mailto:x@example.com"`, `example.com. 300 IN CAA 0 issuewild "sectigo.com"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA issuewild judges a wildcard", rule: staticRule, domain: "*.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`, `example.com. 300 IN CAA 0 issuewild "sectigo.com"`)
			},
			fatal: []string{CodeCAAForbids},
			fix:   `example.com. 300 IN CAA 0 issuewild "letsencrypt.org"`,
			msgs:  []string{"CAA issuewild at example.com allows only sectigo.com"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA issue covers a wildcard without issuewild", rule: staticRule, domain: "*.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA critical unknown property", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`, `example.com. 300 IN CAA 128 tbs "x"`)
			},
			fatal: []string{CodeCAAForbids},
			msgs:  []string{`critical property "tbs"`},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA validationmethods without dns-01", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01,tls-alpn-01"`)
			},
			fatal: []string{CodeCAAMethods},
			fix:   `example.com. 300 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01,tls-alpn-01,dns-01"`,
			msgs:  []string{"allows letsencrypt.org only with validationmethods=http-01,tls-alpn-01, which excludes dns-01"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA validationmethods with dns-01", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01, DNS-01"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA another record permits dns-01", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01"`, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA accounturi is a note", rule: staticRule,
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/123"`)
			},
			notes: []string{CodeCAAAccountURI},
			msgs:  []string{"only for the ACME account https://acme-v02.api.letsencrypt.org/acme/acct/123"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA accounturi names another account", rule: staticRule, accounts: []string{ourAccount},
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/123; validationmethods=dns-01"`)
			},
			fatal: []string{CodeCAAAccountURI},
			fix:   `example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=` + ourAccount + `; validationmethods=dns-01"`,
			msgs:  []string{"allows letsencrypt.org only for the ACME accounts https://acme-v02.api.letsencrypt.org/acme/acct/123, not this server's (" + ourAccount + ")"},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA accounturi names this server's account", rule: staticRule, accounts: []string{ourAccount},
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/123"`,
					`example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=`+ourAccount+`"`)
			},
			end: staticAlias, hops: 1,
		},
		{
			name: "CAA accounturi and a property without one: any account may ask", rule: staticRule, accounts: []string{ourAccount},
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=`+ourAccount+`"`, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`)
			},
			notes: []string{CodeCAAUnbound},
			end:   staticAlias, hops: 1,
		},
		{
			name: "CAA accounturi of another CA does not bind this one", rule: staticRule, accounts: []string{ourAccount},
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname(challenge, staticAlias)
				d.withCAA(t, `example.com. 300 IN CAA 0 issue "sectigo.com; accounturi=https://acme.sectigo.com/acct/1"`, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`)
			},
			notes: []string{CodeCAAUnbound},
			msgs:  []string{`CAA issue at example.com allows this CA from any ACME account; to bind issuance to this server's ACME account, publish: example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=` + ourAccount + `"`},
			end:   staticAlias, hops: 1,
		},
		{
			name: "no CAA: the record binding this server's account is a note", rule: staticRule, accounts: []string{ourAccount}, domain: "www.example.com",
			setup: func(t *testing.T, d *checkDNS) {
				d.rec.cname("_acme-challenge.www.example.com", staticAlias)
			},
			notes: []string{CodeCAAUnbound},
			msgs:  []string{`no CAA applies to www.example.com; to bind issuance to this server's ACME account, publish: www.example.com. 300 IN CAA 0 issue "letsencrypt.org; accounturi=` + ourAccount + `"`},
			end:   staticAlias, hops: 1,
		},
		{
			name: "no rule covers the domain",
			rule: func(t *testing.T) *Rule {
				r := staticRule(t)
				r.Match = []string{"example.net"}
				return r
			},
			fatal: []string{CodeNoRule},
			msgs:  []string{"no rule matches example.com"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, res := newCheckDNS(t)
			if tc.setup != nil {
				tc.setup(t, d)
			}
			rule := tc.rule(t)
			m := &Mapper{Resolver: res, MaxHops: tc.maxHops}
			if len(rule.Match) > 0 {
				m.Rules = []*Rule{rule}
			} else {
				m.Default = rule
			}
			c := &Checker{Mapper: m, Issuer: knownIssuer(tc.accounts...)}
			domain := tc.domain
			if domain == "" {
				domain = "example.com"
			}
			_, rep := c.Check(context.Background(), domain)
			if t.Failed() {
				return
			}
			dump, _ := json.MarshalIndent(rep, "", "  ")
			if got := findingCodes(rep, true); !slices.Equal(got, tc.fatal) {
				t.Errorf("fatal findings = %v, want %v\n%s", got, tc.fatal, dump)
			}
			if got := findingCodes(rep, false); !slices.Equal(got, tc.notes) {
				t.Errorf("notes = %v, want %v\n%s", got, tc.notes, dump)
			}
			if rep.OK != (tc.fatal == nil) {
				t.Errorf("OK = %v, want %v\n%s", rep.OK, tc.fatal == nil, dump)
			}
			if rep.Fix != tc.fix {
				t.Errorf("Fix = %q, want %q", rep.Fix, tc.fix)
			}
			var all []string
			for _, f := range rep.Findings {
				all = append(all, f.Message)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(strings.Join(all, "\n"), m) {
					t.Errorf("no finding says %q:\n%s", m, strings.Join(all, "\n"))
				}
			}
			if rep.Chain.End != tc.end {
				t.Errorf("Chain.End = %q, want %q", rep.Chain.End, tc.end)
			}
			if len(rep.Chain.Hops) != tc.hops {
				t.Errorf("%d hops, want %d: %+v", len(rep.Chain.Hops), tc.hops, rep.Chain.Hops)
			}
			if want := strings.TrimSuffix(Normalize(domain), "."); rep.Domain != want {
				t.Errorf("Domain = %q, want %q", rep.Domain, want)
			}

			// Err carries the domain, every fatal finding and the fix.
			err := rep.Err()
			if tc.fatal == nil {
				if err != nil {
					t.Errorf("Err = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Err = nil for a failing report")
			}
			want := "delegation of " + rep.Domain + " is broken: "
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Err = %q, want it to start with %q", err, want)
			}
			for _, f := range rep.Findings {
				if f.Fatal != strings.Contains(err.Error(), f.Message) {
					t.Errorf("Err = %q; finding %q (fatal %v) in it: %v", err, f.Message, f.Fatal, !f.Fatal)
				}
			}
			if tc.fix != "" && !strings.HasSuffix(err.Error(), "; publish in the production zone: "+tc.fix) {
				t.Errorf("Err = %q, want it to end with the fix %q", err, tc.fix)
			}
		})
	}
}

// TestCheckReport checks the report's details: the chain hop by hop, the
// answer of every authoritative server, the CAA records found, and JSON.
func TestCheckReport(t *testing.T) {
	d, res := newCheckDNS(t)
	d.rec.chain("_acme-challenge.example.com", "x.hop.example", "_acme-challenge.example.com.validation.example.org")
	d.ns["example.com"] = []string{"ns2.example.com", "ns1.example.com"}
	d.addr["ns2.example.com"] = []string{"192.0.2.2"}
	d.auth["192.0.2.2:53"] = &fakeAuth{data: d.rec}
	d.withCAA(t, `example.com. 300 IN CAA 0 issue "letsencrypt.org"`)
	c := &Checker{Mapper: &Mapper{Resolver: res, Default: templateRule(t)}, Issuer: knownIssuer()}
	_, rep := c.Check(context.Background(), "example.com")
	if !rep.OK || rep.Err() != nil {
		t.Fatalf("report fails: %v", rep.Err())
	}
	want := Report{
		Domain:        "example.com",
		ChallengeName: "_acme-challenge.example.com",
		Mode:          "template",
		Expected:      "_acme-challenge.example.com.validation.example.org",
		Zones:         []string{"validation.example.org"},
		Resolver:      testResolver,
		Chain: Chain{Start: "_acme-challenge.example.com", End: "_acme-challenge.example.com.validation.example.org", Hops: []Hop{
			{Owner: "_acme-challenge.example.com", Target: "x.hop.example", TTL: 300, Server: testResolver},
			{Owner: "x.hop.example", Target: "_acme-challenge.example.com.validation.example.org", TTL: 300, Server: testResolver},
		}},
		Zone: "example.com",
		Nameservers: []NameserverAnswer{
			{Name: "ns1.example.com", Address: "192.0.2.1:53", Target: "x.hop.example"},
			{Name: "ns2.example.com", Address: "192.0.2.2:53", Target: "x.hop.example"},
		},
		CAA:     []CAARecord{{Owner: "example.com", Tag: "issue", Value: "letsencrypt.org"}},
		OK:      true,
		Verdict: VerdictOK,
	}
	got, _ := json.MarshalIndent(rep, "", "  ")
	exp, _ := json.MarshalIndent(&want, "", "  ")
	if string(got) != string(exp) {
		t.Errorf("report:\n%s\nwant:\n%s", got, exp)
	}
	var generic map[string]any
	if err := json.Unmarshal(got, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"domain", "challenge_name", "mode", "expected", "chain", "production_zone", "nameservers", "caa", "ok", "verdict"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON report has no %q: %s", k, got)
		}
	}
}

// TestCheckChainIsCheap: the part that runs before every write asks for
// CNAMEs only, no NS, address or CAA records, and its answers are cached.
func TestCheckChainIsCheap(t *testing.T) {
	d, res := newCheckDNS(t)
	d.rec.cname("_acme-challenge.example.com", "_acme-challenge.validation.example.org")
	c := &Checker{Mapper: &Mapper{Resolver: res, Default: staticRule(t)}, Issuer: knownIssuer()}
	for i := 0; i < 3; i++ {
		target, rep := c.Verify(context.Background(), "*.example.com", CheckChain)
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if target.Name != "_acme-challenge.validation.example.org" || target.Zone != "validation.example.org" {
			t.Fatalf("target = %+v", target)
		}
	}
	for _, qt := range []uint16{dns.TypeNS, dns.TypeA, dns.TypeAAAA, dns.TypeCAA} {
		if n := d.asked[qt]; n != 0 {
			t.Errorf("CheckChain asked %d %s questions", n, dns.TypeToString[qt])
		}
	}
	if n := d.rec.count("_acme-challenge.example.com", dns.TypeCNAME); n != 1 {
		t.Errorf("the challenge name's CNAME was asked %d times, want 1 (cached)", n)
	}
}

func TestReportErr(t *testing.T) {
	ok := &Report{Domain: "example.com", OK: true, Findings: []Finding{{Code: CodeCAAAccountURI, Message: "a note"}}}
	if err := ok.Err(); err != nil {
		t.Errorf("Err of a passing report = %v", err)
	}
	bad := &Report{
		Domain: "example.com",
		Findings: []Finding{
			{Code: CodeNoDelegation, Message: "_acme-challenge.example.com has no CNAME record", Fatal: true},
			{Code: CodeCAAAccountURI, Message: "a note"},
			{Code: CodeDrift, Message: "servers disagree", Fatal: true},
		},
		Fix: "_acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org.",
	}
	want := "delegation of example.com is broken: _acme-challenge.example.com has no CNAME record; servers disagree; " +
		"publish in the production zone: _acme-challenge.example.com. 300 IN CNAME _acme-challenge.validation.example.org."
	if err := bad.Err(); err == nil || err.Error() != want {
		t.Errorf("Err = %v\nwant  %s", err, want)
	}
	bad.Fix = ""
	if err := bad.Err(); err == nil || strings.Contains(err.Error(), "publish") {
		t.Errorf("Err without a fix = %v", err)
	}
}

func TestParseCAAValue(t *testing.T) {
	for _, tc := range []struct {
		in     string
		issuer string
		params map[string]string
	}{
		{"letsencrypt.org", "letsencrypt.org", map[string]string{}},
		{" LetsEncrypt.org. ; validationmethods = dns-01 ;AccountURI=https://x/1", "letsencrypt.org",
			map[string]string{"validationmethods": "dns-01", "accounturi": "https://x/1"}},
		{";", "", map[string]string{}},
	} {
		issuer, params := parseCAAValue(tc.in)
		if issuer != tc.issuer || len(params) != len(tc.params) {
			t.Errorf("parseCAAValue(%q) = %q, %v", tc.in, issuer, params)
			continue
		}
		for k, v := range tc.params {
			if params[k] != v {
				t.Errorf("parseCAAValue(%q)[%s] = %q, want %q", tc.in, k, params[k], v)
			}
		}
	}
}

// TestDriftRefusedBeforeTheWrite: the gate's check asks every
// authoritative server of the production zone, so a drifted delegation is
// refused every time, whichever server the resolver asked; the write path
// that follows the gate's check asks no authoritative server again: it
// resolves the chain and confines the target, nothing more.
func TestDriftRefusedBeforeTheWrite(t *testing.T) {
	for _, resolverSaw := range []string{"the record", "no record"} {
		t.Run(resolverSaw, func(t *testing.T) {
			d, res := newCheckDNS(t)
			other := newFakeDNS("example.com")
			if resolverSaw == "the record" {
				d.rec.cname("_acme-challenge.example.com", "_acme-challenge.validation.example.org")
			} else {
				other.cname("_acme-challenge.example.com", "_acme-challenge.validation.example.org")
			}
			d.ns["example.com"] = []string{"ns1.example.com", "ns2.example.com"}
			d.addr["ns2.example.com"] = []string{"192.0.2.2"}
			d.auth["192.0.2.2:53"] = &fakeAuth{data: other}
			var direct atomic.Int32
			res.Sent = func(toAuthoritative bool) {
				if toAuthoritative {
					direct.Add(1)
				}
			}
			w := &fakeWriter{}
			rule := mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.validation.example.org"),
				Zones: []string{"validation.example.org"}, Writer: w, WriterName: "fake"})
			m := &Mapper{Resolver: res, Default: rule}
			c := &Checker{Mapper: m}
			for range 10 {
				target, rep := c.Verify(context.Background(), "example.com", CheckChain|CheckNameservers)
				err := rep.Err()
				if target.Name != "" || err == nil {
					t.Fatal("the check passed a drifted delegation")
				}
				if resolverSaw == "the record" && (!errors.Is(err, ErrDrift) || !strings.Contains(err.Error(), "ns2.example.com (192.0.2.2:53): no CNAME")) {
					t.Errorf("refusal %q is no drift naming the server and its answer", err)
				}
			}

			direct.Store(0)
			p := &Provider{Mapper: m}
			_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", "v")})
			if n := direct.Load(); n != 0 {
				t.Errorf("the write path asked authoritative servers %d times, want none (the gate did)", n)
			}
			if resolverSaw == "no record" && (!errors.Is(err, ErrNoDelegation) || len(w.getCalls()) != 0) {
				t.Errorf("write without a delegation the resolver sees = %v, inner calls %v; want it refused", err, w.getCalls())
			}
		})
	}
}

// TestFollowFindings: a CNAME to the root is no end of the chain, and a
// loop is named as one even though the resolver SERVFAILs every other
// question about it (as recursive resolvers do: they chase the loop).
func TestFollowFindings(t *testing.T) {
	const start = "_acme-challenge.example.com"
	tests := []struct {
		name     string
		setup    func(d *checkDNS)
		wantCode string
		wantIs   error
	}{
		{"CNAME to the root", func(d *checkDNS) { d.rec.cname(start, ".") }, CodeBadTarget, ErrRootTarget},
		{"loop behind SERVFAIL", func(d *checkDNS) {
			d.rec.chain(start, "a.hop.example", start)
			d.servfailExceptCNAME = true
		}, CodeLoop, ErrLoop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, res := newCheckDNS(t)
			tt.setup(d)
			for _, rule := range []*Rule{followRule(t), staticRule(t)} {
				c := &Checker{Mapper: &Mapper{Resolver: res, Default: rule}}
				target, rep := c.Verify(context.Background(), "example.com", CheckChain|CheckNameservers)
				err := rep.Err()
				var de *DelegationError
				if target.Name != "" || !errors.As(err, &de) || de.Code() != tt.wantCode || !errors.Is(err, tt.wantIs) {
					t.Errorf("Verify = %+v, %v; want %s (%v)", target, err, tt.wantCode, tt.wantIs)
				}
				if rep.Verdict != VerdictBroken {
					t.Errorf("verdict %q, want broken", rep.Verdict)
				}
			}
		})
	}
}
