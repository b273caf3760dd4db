package xcaddy_test

// On-demand TLS for customer domains (issue 5): Caddy obtains certificates at
// the first TLS handshake through DNS-01 on the alias zone, and the
// tls.permission.alias module admits only names that delegated their
// _acme-challenge to it. Orders are counted in Pebble's log, DNS queries in
// Unbound's.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// odZones are the production zones the customers' names are spread over.
var odZones = []string{"example.com", "example.net", "example.org", "hop.example"}

// odRun returns a fresh label for this run's names: records and
// certificates of earlier runs never match.
func odRun(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// odDelegation is the record a customer publishes for name under the
// template _acme-challenge.{domain}.validation.example.org.
func odDelegation(name string) string {
	return fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.validation.example.org.", name, name)
}

// odPublish publishes records in the production zones and removes them
// when the test ends.
func odPublish(t *testing.T, records ...string) {
	t.Helper()
	publish(t, records...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, rr := range records {
			name := strings.Fields(rr)[0]
			if err := theLab.Remove(ctx, zoneOf(t, name), rr); err != nil {
				t.Logf("removing %s: %v", rr, err)
			}
		}
	})
}

// odStartCaddy starts Caddy as a platform runs it: on-demand TLS for every
// name that reaches it, gated by the alias permission module, solved by the
// alias provider's template in validation.example.org. The provider is the
// global acme_dns: a hostless site's automation policy is the catch-all
// one, which must not get issuers of its own when global options (email,
// acme_ca) exist, so `tls { dns ... }` cannot stand in such a site.
func odStartCaddy(t *testing.T) *caddyProc {
	t.Helper()
	l := requireLab(t)
	c := startCaddyfile(t, fmt.Sprintf(`acme_dns alias {
		%s
		zone validation.example.org
		alias _acme-challenge.{domain}.validation.example.org
		resolvers %s
	}
	tls_resolvers %s
	on_demand_tls {
		permission alias
	}`, rfc2136(), l.Resolver, l.Resolver), `https:// {
	tls {
		on_demand
	}
	respond "ok"
}`)
	addr := fmt.Sprintf("127.0.0.1:%d", c.httpsPort)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy does not listen on %s; log:\n%s", addr, c.log.String())
		}
		select {
		case <-c.done:
			t.Fatalf("caddy exited; log:\n%s", c.log.String())
		default:
		}
	}
}

// odHandshake does a TLS handshake with Caddy for sni and returns the chain
// it presents. timeout covers connecting and the handshake, during which
// Caddy may obtain the certificate.
func odHandshake(c *caddyProc, sni string, timeout time.Duration) ([]*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp",
		fmt.Sprintf("127.0.0.1:%d", c.httpsPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

// odVerify checks that chain is one Pebble issued for name alone.
func odVerify(t *testing.T, chain []*x509.Certificate, name string) {
	t.Helper()
	if err := theLab.VerifyPebbleChain(testCtx(t, 30*time.Second), chain, name); err != nil {
		t.Errorf("the certificate served for %s is not one Pebble issued for it: %v", name, err)
		return
	}
	if got := chain[0].DNSNames; len(got) != 1 || got[0] != name {
		t.Errorf("the certificate served for %s names %v", name, got)
	}
}

// odPebble is what Pebble's log shows since a mark: orders created,
// certificates issued, and the identifiers whose challenges it validated.
type odPebble struct {
	orders    int
	issued    int
	validated map[string]int
}

var odTaskIdentifier = regexp.MustCompile(`Pulled a task from the Tasks queue: .*Identifier:acme\.Identifier\{Type:"dns", Value:"([^"]+)"`)

// odPebbleMark returns the end of Pebble's log. The lab is held by this
// process (lab.Hold), so whatever Pebble logs after it is this test's.
func odPebbleMark(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(theLab.PebbleLog)
	if err != nil {
		t.Fatalf("pebble log: %v", err)
	}
	return fi.Size()
}

func odPebbleSince(t *testing.T, mark int64) odPebble {
	t.Helper()
	f, err := os.Open(theLab.PebbleLog)
	if err != nil {
		t.Fatalf("pebble log: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < mark {
		t.Fatalf("pebble's log shrank (pebble restarted during the test)")
	}
	if _, err := f.Seek(mark, 0); err != nil {
		t.Fatal(err)
	}
	p := odPebble{validated: map[string]int{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Added order "):
			p.orders++
		case strings.Contains(line, "Issued certificate serial "):
			p.issued++
		default:
			if m := odTaskIdentifier.FindStringSubmatch(line); m != nil {
				p.validated[m[1]]++
			}
		}
	}
	return p
}

// odLogged returns Caddy's JSON log entries with message msg.
func odLogged(c *caddyProc, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(c.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// odCountBy counts entries by the string value of field.
func odCountBy(entries []map[string]any, field string) map[string]int {
	n := map[string]int{}
	for _, e := range entries {
		if v, ok := e[field].(string); ok {
			n[v]++
		}
	}
	return n
}

// TestOnDemandCustomers: 30 customers across four production zones, each
// with its CNAME published. A handshake with each name gets a certificate
// from Pebble through DNS-01 on the alias zone; later handshakes reuse it.
func TestOnDemandCustomers(t *testing.T) {
	requireLab(t)
	run := odRun(t, "od")
	var names, records []string
	for i := range 30 {
		name := fmt.Sprintf("shop%02d-%s.%s", i, run, odZones[i%len(odZones)])
		names = append(names, name)
		records = append(records, odDelegation(name))
	}
	odPublish(t, records...)
	before := productionSerials(t)
	c := odStartCaddy(t)

	mark := odPebbleMark(t)
	start := time.Now()
	chains := make([][]*x509.Certificate, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chains[i], errs[i] = odHandshake(c, name, 170*time.Second)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, name := range names {
		if errs[i] != nil {
			t.Errorf("first handshake with %s: %v", name, errs[i])
			continue
		}
		odVerify(t, chains[i], name)
	}
	if t.Failed() {
		t.FailNow()
	}
	first := odPebbleSince(t, mark)
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
	presented := odLogged(c, "presented challenge on alias")
	if len(presented) != len(names) {
		t.Errorf("%d challenges presented on the alias for %d names", len(presented), len(names))
	}
	for _, e := range presented {
		domain, alias, zone := fmt.Sprint(e["domain"]), fmt.Sprint(e["alias"]), fmt.Sprint(e["zone"])
		if want := "_acme-challenge." + domain + ".validation.example.org"; alias != want || zone != "validation.example.org" {
			t.Errorf("challenge of %s presented at %s in %s, want %s in validation.example.org", domain, alias, zone, want)
		}
	}

	// Later handshakes reuse the certificates: same serial, no new order.
	mark = odPebbleMark(t)
	for round := range 2 {
		for i, name := range names {
			chain, err := odHandshake(c, name, 10*time.Second)
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
	if again := odPebbleSince(t, mark); again.orders != 0 || again.issued != 0 {
		t.Errorf("60 more handshakes made %d orders and %d certificates, want none", again.orders, again.issued)
	}
	obtained := odCountBy(odLogged(c, "certificate obtained successfully"), "identifier")
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
	run := odRun(t, "odr")
	control := "ok-" + run + ".example.net"
	missing := "missing-" + run + ".example.com"
	elsewhere := "elsewhere-" + run + ".example.org"
	wild := "shop.w-" + run + ".example.com"
	odPublish(t,
		odDelegation(control),
		fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.notours.example.", elsewhere, elsewhere),
		fmt.Sprintf("*.w-%s.example.com. 60 IN CNAME _acme-challenge.x.validation.example.org.", run))
	before := productionSerials(t)
	c := odStartCaddy(t)

	// The same Caddy admits a delegated name.
	chain, err := odHandshake(c, control, 120*time.Second)
	if err != nil {
		t.Fatalf("handshake with the delegated %s: %v", control, err)
	}
	odVerify(t, chain, control)

	mark := odPebbleMark(t)
	refused := []struct{ name, reason string }{
		{missing, "_acme-challenge." + missing + " has no CNAME record"},
		{elsewhere, "ends at _acme-challenge." + elsewhere + ".notours.example, not at the alias _acme-challenge." + elsewhere + ".validation.example.org"},
		{wild, "CNAME synthesised by a wildcard record"},
	}
	for _, r := range refused {
		for attempt := range 3 {
			if chain, err := odHandshake(c, r.name, 30*time.Second); err == nil {
				t.Errorf("handshake %d with %s succeeded with a certificate for %v", attempt+1, r.name, chain[0].DNSNames)
			}
		}
	}
	time.Sleep(time.Second)
	p := odPebbleSince(t, mark)
	if p.orders != 0 || p.issued != 0 || len(p.validated) != 0 {
		t.Errorf("pebble got %d orders, issued %d, validated %v after the refused handshakes; want nothing", p.orders, p.issued, p.validated)
	}

	refusals := odLogged(c, "on-demand certificate refused")
	for _, r := range refused {
		var errs []string
		for _, e := range refusals {
			if e["name"] == r.name {
				errs = append(errs, fmt.Sprint(e["error"]))
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
	for _, e := range odLogged(c, "obtaining new certificate") {
		if n := fmt.Sprint(e["server_name"]); n != control {
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
	run := odRun(t, "odf")
	delegated := []string{"a-" + run + ".example.com", "b-" + run + ".hop.example"}
	odPublish(t, odDelegation(delegated[0]), odDelegation(delegated[1]))
	before := productionSerials(t)
	c := odStartCaddy(t)
	serials := map[string]string{}
	for _, name := range delegated {
		chain, err := odHandshake(c, name, 120*time.Second)
		if err != nil {
			t.Fatalf("handshake with the delegated %s: %v", name, err)
		}
		odVerify(t, chain, name)
		serials[name] = chain[0].SerialNumber.String()
	}

	const unknownNames, waves = 50, 4
	var unknown []string
	for i := range unknownNames {
		unknown = append(unknown, fmt.Sprintf("u%02d-%s.%s", i, run, odZones[i%len(odZones)]))
	}
	rmark, err := l.ResolverLogMark()
	if err != nil {
		t.Fatal(err)
	}
	pmark := odPebbleMark(t)

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
				chain, err := odHandshake(c, name, 5*time.Second)
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
				if _, err := odHandshake(c, name, 30*time.Second); err == nil {
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
	refusals := odCountBy(odLogged(c, "on-demand certificate refused"), "name")
	for _, name := range unknown {
		if refusals[name] != 1 {
			t.Errorf("%s was checked %d times (refusals logged) in %d waves, want 1", name, refusals[name], waves)
		}
	}
	if p := odPebbleSince(t, pmark); p.orders != 0 || p.issued != 0 {
		t.Errorf("the flood made %d orders and %d certificates, want none", p.orders, p.issued)
	}
	if s.n < 10 || s.failed > 0 {
		t.Errorf("delegated names during the flood: %d handshakes, %d failed: %s", s.n, s.failed, strings.Join(s.errs[:min(len(s.errs), 5)], "; "))
	}
	for _, e := range odLogged(c, "obtaining new certificate") {
		if n := fmt.Sprint(e["server_name"]); !slices.Contains(delegated, n) {
			t.Errorf("caddy started obtaining a certificate for the unknown %s", n)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}
