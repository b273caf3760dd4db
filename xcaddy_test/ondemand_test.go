package xcaddy_test

// On-demand TLS for customer domains (issue 5): Caddy obtains certificates at
// the first TLS handshake through DNS-01 on the alias zone, and the
// tls.permission.alias module admits only names that delegated their
// _acme-challenge to it. Orders are counted in Pebble's log, DNS queries in
// Unbound's.

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// customerZones are the production zones the customers' names are spread over.
var customerZones = []string{"example.com", "example.net", "example.org", "hop.example"}

// startOnDemandCaddy starts Caddy as a platform runs it: on-demand TLS for every
// name that reaches it, gated by the alias permission module, solved by the
// alias provider's template in validation.example.org. The provider is the
// global acme_dns: a hostless site's automation policy is the catch-all
// one, which must not get issuers of its own when global options (email,
// acme_ca) exist, so `tls { dns ... }` cannot stand in such a site.
func startOnDemandCaddy(t *testing.T) *caddyProc {
	t.Helper()
	requireLab(t)
	c := startCaddyfile(t, onDemandGlobals(), onDemandSite)
	c.waitListening(20 * time.Second)
	return c
}

// onDemandGlobals are the global options of startOnDemandCaddy: the alias
// provider as acme_dns and the permission module.
func onDemandGlobals() string {
	return fmt.Sprintf(`acme_dns alias {
		%s
		zone validation.example.org
		alias _acme-challenge.{domain}.validation.example.org
		resolvers %s
		private_nameservers
	}
	tls_resolvers %s
	on_demand_tls {
		permission alias
	}`, rfc2136(), theLab.Resolver, theLab.Resolver)
}

// onDemandSite is the site of startOnDemandCaddy: every name that reaches
// it, on demand.
const onDemandSite = `https:// {
	tls {
		on_demand
	}
	respond "ok"
}`

// waitListening waits until Caddy accepts TCP connections on its HTTPS
// port.
func (c *caddyProc) waitListening(timeout time.Duration) {
	c.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", c.httpsPort)
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("caddy does not listen on %s; log:\n%s", addr, c.log.String())
		}
		select {
		case <-c.done:
			c.t.Fatalf("caddy exited; log:\n%s", c.log.String())
		default:
		}
	}
}

// TestOnDemandCustomers: 30 customers across four production zones, each
// with its CNAME published. A handshake with each name gets a certificate
// from Pebble through DNS-01 on the alias zone; later handshakes reuse it.
func TestOnDemandCustomers(t *testing.T) {
	requireLab(t)
	run := randomLabel(t, "od")
	var names, records []string
	for i := range 30 {
		name := fmt.Sprintf("shop%02d-%s.%s", i, run, customerZones[i%len(customerZones)])
		names = append(names, name)
		records = append(records, delegation(name))
	}
	publish(t, records...)
	before := productionSerials(t)
	c := startOnDemandCaddy(t)

	mark := pebbleMark(t)
	start := time.Now()
	chains := make([][]*x509.Certificate, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chains[i], errs[i] = c.handshake(name, 170*time.Second)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, name := range names {
		if errs[i] != nil {
			t.Errorf("first handshake with %s: %v", name, errs[i])
			continue
		}
		assertPebbleCert(t, chains[i], name)
	}
	if t.Failed() {
		t.FailNow()
	}
	first := pebbleSince(t, mark)
	t.Logf("30 customers: 30 certificates at the first handshakes after %s; pebble: %d orders, %d issued, %d validations",
		took.Round(time.Millisecond), first.orders, first.issued, len(first.validated))
	if first.orders != len(names) || first.issued != len(names) {
		t.Errorf("pebble saw %d orders and issued %d certificates for %d names, want one each", first.orders, first.issued, len(names))
	}
	for _, name := range names {
		if first.validated[name] != 1 {
			t.Errorf("pebble validated %d challenges for %s, want 1", first.validated[name], name)
		}
	}
	presented := c.linesWith("presented challenge on alias", "", "")
	if len(presented) != len(names) {
		t.Errorf("%d challenges presented on the alias for %d names", len(presented), len(names))
	}
	for _, e := range presented {
		domain, alias, zone := e.Domain, e.Alias, e.Zone
		if want := "_acme-challenge." + domain + ".validation.example.org"; alias != want || zone != "validation.example.org" {
			t.Errorf("challenge of %s presented at %s in %s, want %s in validation.example.org", domain, alias, zone, want)
		}
	}

	// Later handshakes reuse the certificates: same serial, no new order.
	mark = pebbleMark(t)
	for round := range 2 {
		for i, name := range names {
			chain, err := c.handshake(name, 10*time.Second)
			if err != nil {
				t.Errorf("handshake %d with %s: %v", round+2, name, err)
				continue
			}
			if chain[0].SerialNumber.Cmp(chains[i][0].SerialNumber) != 0 {
				t.Errorf("handshake %d with %s presented serial %x, the first %x", round+2, name, chain[0].SerialNumber, chains[i][0].SerialNumber)
			}
		}
	}
	time.Sleep(time.Second)
	if again := pebbleSince(t, mark); again.orders != 0 || again.issued != 0 {
		t.Errorf("60 more handshakes made %d orders and %d certificates, want none", again.orders, again.issued)
	}
	obtained := countBy("identifier", "certificate obtained successfully", c)
	for _, name := range names {
		if obtained[name] != 1 {
			t.Errorf("caddy obtained %d certificates for %s, want 1", obtained[name], name)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestOnDemandRefused: a name without CNAME, a name whose CNAME points into a
// zone that is not ours, and a name whose _acme-challenge a wildcard
// synthesises. Their handshakes fail, Pebble gets no order for them, and the
// log says why, with the record to publish.
func TestOnDemandRefused(t *testing.T) {
	requireLab(t)
	run := randomLabel(t, "odr")
	control := "ok-" + run + ".example.net"
	missing := "missing-" + run + ".example.com"
	elsewhere := "elsewhere-" + run + ".example.org"
	wild := "shop.w-" + run + ".example.com"
	publish(t,
		delegation(control),
		fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.notours.example.", elsewhere, elsewhere),
		fmt.Sprintf("*.w-%s.example.com. 60 IN CNAME _acme-challenge.x.validation.example.org.", run))
	before := productionSerials(t)
	c := startOnDemandCaddy(t)

	// The same Caddy admits a delegated name.
	chain, err := c.handshake(control, 120*time.Second)
	if err != nil {
		t.Fatalf("handshake with the delegated %s: %v", control, err)
	}
	assertPebbleCert(t, chain, control)

	mark := pebbleMark(t)
	refused := []struct{ name, reason string }{
		{missing, "_acme-challenge." + missing + " has no CNAME record"},
		{elsewhere, "ends at _acme-challenge." + elsewhere + ".notours.example, not at the alias _acme-challenge." + elsewhere + ".validation.example.org"},
		{wild, "CNAME synthesised by a wildcard record"},
	}
	for _, r := range refused {
		for attempt := range 3 {
			if chain, err := c.handshake(r.name, 30*time.Second); err == nil {
				t.Errorf("handshake %d with %s succeeded with a certificate for %v", attempt+1, r.name, chain[0].DNSNames)
			}
		}
	}
	time.Sleep(time.Second)
	p := pebbleSince(t, mark)
	if p.orders != 0 || p.issued != 0 || len(p.validated) != 0 {
		t.Errorf("pebble got %d orders, issued %d, validated %v after the refused handshakes; want nothing", p.orders, p.issued, p.validated)
	}

	refusals := c.linesWith("on-demand certificate refused", "", "")
	for _, r := range refused {
		var errs []string
		for _, e := range refusals {
			if e.str("name") == r.name {
				errs = append(errs, e.Error)
			}
		}
		// Three handshakes, one check: the refusal is cached.
		if len(errs) != 1 {
			t.Errorf("%s: %d refusals logged for 3 handshakes, want 1 (one check, then the cache): %q", r.name, len(errs), errs)
			continue
		}
		fix := "publish in the production zone: _acme-challenge." + r.name + ". 300 IN CNAME _acme-challenge." + r.name + ".validation.example.org."
		if !strings.Contains(errs[0], r.reason) || !strings.Contains(errs[0], fix) {
			t.Errorf("%s refused with %q; want the reason %q and %q", r.name, errs[0], r.reason, fix)
		}
	}
	for _, e := range c.linesWith("obtaining new certificate", "", "") {
		if n := e.str("server_name"); n != control {
			t.Errorf("caddy started obtaining a certificate for the refused %s", n)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestOnDemandFlood: 200 handshakes for 50 unknown names in four waves over
// about four seconds, longer than any DNS cache in the way keeps a negative
// answer (Unbound's and the provider's: 1 s in the lab), so that only the
// permission module's cache keeps the queries to about one per name. No
// order is placed, and delegated names keep being served meanwhile.
func TestOnDemandFlood(t *testing.T) {
	l := requireLab(t)
	run := randomLabel(t, "odf")
	delegated := []string{"a-" + run + ".example.com", "b-" + run + ".hop.example"}
	publish(t, delegation(delegated[0]), delegation(delegated[1]))
	before := productionSerials(t)
	c := startOnDemandCaddy(t)
	serials := map[string]string{}
	for _, name := range delegated {
		chain, err := c.handshake(name, 120*time.Second)
		if err != nil {
			t.Fatalf("handshake with the delegated %s: %v", name, err)
		}
		assertPebbleCert(t, chain, name)
		serials[name] = chain[0].SerialNumber.String()
	}

	const unknownNames, waves = 50, 4
	var unknown []string
	for i := range unknownNames {
		unknown = append(unknown, fmt.Sprintf("u%02d-%s.%s", i, run, customerZones[i%len(customerZones)]))
	}
	rmark, err := l.ResolverLogMark()
	if err != nil {
		t.Fatal(err)
	}
	pmark := pebbleMark(t)

	// Delegated names are served throughout the flood.
	stop := make(chan struct{})
	type served struct {
		n, failed int
		slowest   time.Duration
		errs      []string
	}
	servedCh := make(chan served)
	go func() {
		var s served
		defer func() { servedCh <- s }()
		for {
			for _, name := range delegated {
				select {
				case <-stop:
					return
				default:
				}
				begin := time.Now()
				chain, err := c.handshake(name, 5*time.Second)
				s.n++
				s.slowest = max(s.slowest, time.Since(begin))
				switch {
				case err != nil:
					s.failed++
					s.errs = append(s.errs, fmt.Sprintf("%s: %v", name, err))
				case chain[0].SerialNumber.String() != serials[name]:
					s.failed++
					s.errs = append(s.errs, fmt.Sprintf("%s: another certificate (serial %s)", name, chain[0].SerialNumber))
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	start := time.Now()
	var admitted []string
	var mu sync.Mutex
	for wave := range waves {
		time.Sleep(time.Until(start.Add(time.Duration(wave) * 1100 * time.Millisecond)))
		var wg sync.WaitGroup
		for _, name := range unknown {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.handshake(name, 30*time.Second); err == nil {
					mu.Lock()
					admitted = append(admitted, name)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	flood := time.Since(start)
	time.Sleep(500 * time.Millisecond) // delegated handshakes after the flood, too
	close(stop)
	s := <-servedCh
	if len(admitted) > 0 {
		t.Errorf("handshakes for unknown names succeeded: %v", admitted)
	}

	time.Sleep(time.Second) // let Unbound's log and Pebble settle
	qs, err := l.ResolverQueriesSince(rmark)
	if err != nil {
		t.Fatal(err)
	}
	perName := map[string]int{}
	floodQueries := 0
	for _, q := range qs {
		if strings.Contains(q.Name, run) {
			floodQueries++
			perName[q.Name]++
		}
	}
	t.Logf("flood: %d handshakes for %d unknown names in %s; %d queries to unbound in all, %d for the flood's names (%d names asked); delegated names served %d times meanwhile, %d failed, slowest %s",
		unknownNames*waves, unknownNames, flood.Round(time.Millisecond), len(qs), floodQueries, len(perName), s.n, s.failed, s.slowest.Round(time.Millisecond))
	// One CNAME query per name is what one check costs; allow a retry.
	if floodQueries > 2*unknownNames {
		t.Errorf("%d handshakes for %d unknown names made %d DNS queries, want at most %d: the permission cache does not hold", unknownNames*waves, unknownNames, floodQueries, 2*unknownNames)
	}
	if floodQueries < unknownNames {
		t.Errorf("only %d DNS queries for %d unknown names: were they checked at all?", floodQueries, unknownNames)
	}
	for name, n := range perName {
		if n > 2 {
			t.Errorf("%s was asked %d times in %d waves", name, n, waves)
		}
	}
	if len(qs) > 2*unknownNames+10 {
		t.Errorf("%d queries to unbound during the flood in all", len(qs))
	}
	refusals := countBy("name", "on-demand certificate refused", c)
	for _, name := range unknown {
		if refusals[name] != 1 {
			t.Errorf("%s was checked %d times (refusals logged) in %d waves, want 1", name, refusals[name], waves)
		}
	}
	if p := pebbleSince(t, pmark); p.orders != 0 || p.issued != 0 {
		t.Errorf("the flood made %d orders and %d certificates, want none", p.orders, p.issued)
	}
	if s.n < 10 || s.failed > 0 {
		t.Errorf("delegated names during the flood: %d handshakes, %d failed: %s", s.n, s.failed, strings.Join(s.errs[:min(len(s.errs), 5)], "; "))
	}
	for _, e := range c.linesWith("obtaining new certificate", "", "") {
		if n := e.str("server_name"); !slices.Contains(delegated, n) {
			t.Errorf("caddy started obtaining a certificate for the unknown %s", n)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}
