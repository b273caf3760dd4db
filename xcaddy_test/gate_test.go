package xcaddy_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/solver"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// gateRefused is the line the dns_alias app logs when its gate aborts an
// obtain before the ACME order.
const gateRefused = "certificate not ordered: the delegation is broken"

// gateCase is one way a delegation breaks, for the follow-mode site of
// these tests (alias zone validation.example.org).
type gateCase struct {
	kind    string // the finding the gate must name
	name    string
	records []string // published to break it (production zone)
	// driftAt, if set, is the one authoritative server of drift.example
	// that gets records (the other stays without).
	driftAt string
}

// gateCases returns one name per broken delegation; drifts is how many
// drifted names (each refused on its own obtain).
func gateCases(t *testing.T, prefix string, drifts int) []gateCase {
	l := requireLab(t)
	label := randomLabel(t, prefix)
	n := func(s string) string { return label + "-" + s + ".example.com" }
	cases := []gateCase{
		{kind: solver.CodeNoDelegation, name: n("miss")},
		{kind: solver.CodeLoop, name: n("loop"), records: []string{
			fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME a.%s.", n("loop"), n("loop")),
			fmt.Sprintf("a.%s. 60 IN CNAME _acme-challenge.%s.", n("loop"), n("loop")),
		}},
		{kind: solver.CodeOutsideZones, name: n("out"), records: []string{
			fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.notours.example.", n("out"), n("out")),
		}},
		{kind: solver.CodeWildcard, name: "x." + n("wild"), records: []string{
			fmt.Sprintf("*.%s. 60 IN CNAME %s.", n("wild"), aliasOf("x."+n("wild"))),
		}},
		{kind: solver.CodeCAAForbids, name: n("caa"), records: []string{
			delegation(n("caa")),
			fmt.Sprintf(`%s. 60 IN CAA 0 issue "other-ca.example"`, n("caa")),
		}},
	}
	for i := range drifts {
		name := fmt.Sprintf("%s-drift%d.drift.example", label, i)
		cases = append(cases, gateCase{kind: solver.CodeDrift, name: name, records: []string{delegation(name)}, driftAt: l.AuthA})
	}
	return cases
}

// breakDelegation publishes c's records (removing the good delegation
// first, if it was published) and flushes the resolver.
func breakDelegation(t *testing.T, c gateCase, wasDelegated bool) {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	if wasDelegated {
		zone := zoneOf(t, c.name)
		server := ""
		if c.driftAt != "" {
			server = l.AuthB // keep it at AuthA, remove it from the other
		}
		var err error
		if server != "" {
			err = l.RemoveRRsetAt(ctx, server, zone, "_acme-challenge."+c.name+".", dns.TypeCNAME)
		} else {
			err = l.RemoveRRset(ctx, zone, "_acme-challenge."+c.name+".", dns.TypeCNAME)
		}
		if err != nil {
			t.Fatalf("removing the delegation of %s: %v", c.name, err)
		}
	}
	for _, rr := range c.records {
		if wasDelegated && rr == delegation(c.name) {
			if c.driftAt != "" {
				continue // already served by driftAt alone
			}
		}
		if c.driftAt != "" {
			if err := l.PublishAt(ctx, c.driftAt, "drift.example", rr); err != nil {
				t.Fatalf("publishing %s at %s: %v", rr, c.driftAt, err)
			}
			continue
		}
		publish(t, rr)
	}
	if err := l.FlushResolver(ctx, c.name); err != nil {
		t.Fatal(err)
	}
}

// gateSite is one follow-mode site for names. CAA is judged against the
// identity Pebble's directory lists (pebble.letsencrypt.org), ahead of the
// caa_identities given here.
func gateSite(names []string, tlsExtra string) string {
	return fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			zone validation.example.org
			follow
			resolvers %s
			private_nameservers
			caa_identities pebble.example
		}
		resolvers %s
		%s
	}
	respond "gate"
}
`, strings.Join(names, ", "), rfc2136(), theLab.Resolver, theLab.Resolver, tlsExtra)
}

// assertRefused waits for the gate's refusal of each case and checks the
// finding it names and the record it prints.
func assertRefused(t *testing.T, c *caddyProc, cases []gateCase, renewal bool, timeout time.Duration) {
	t.Helper()
	for _, gc := range cases {
		line := c.waitLine(gateRefused, "identifier", gc.name, timeout)
		if got := line.str("finding"); got != gc.kind {
			t.Errorf("%s: the gate names finding %q, want %q: %s", gc.name, got, gc.kind, line.raw)
		}
		if r, _ := line.Fields["renewal"].(bool); r != renewal {
			t.Errorf("%s: refusal logged with renewal=%v, want %v", gc.name, r, renewal)
		}
		if gc.kind != solver.CodeCAAForbids && !strings.Contains(line.str("publish"), "IN CNAME") {
			t.Errorf("%s: the refusal prints no record to publish: %s", gc.name, line.raw)
		}
		if gc.kind == solver.CodeDrift && !strings.Contains(line.str("error"), "no CNAME") {
			t.Errorf("%s: the drift refusal does not name the server without the record: %s", gc.name, line.raw)
		}
	}
}

// assertNothingWritten checks that no challenge of cases was presented or
// left in the alias zone or in notours.example.
func assertNothingWritten(t *testing.T, c *caddyProc, cases []gateCase, since time.Time) {
	t.Helper()
	l := requireLab(t)
	for _, gc := range cases {
		for _, e := range c.logLines() {
			if e.Msg == "presented challenge on alias" && e.str("domain") == gc.name && e.TS.After(since) {
				t.Errorf("%s: a challenge was presented although the gate refused it: %s", gc.name, e.raw)
			}
		}
		if v := aliasTXT(t, aliasOf(gc.name)); len(v) > 0 {
			t.Errorf("%s: TXT %q left at %s", gc.name, v, aliasOf(gc.name))
		}
	}
	if txts := zoneTXT(t, l.AuthA, "notours.example"); len(txts) > 0 {
		t.Errorf("TXT records written in notours.example: %v", txts)
	}
}

// TestGateFirstObtain: a site whose names are each broken in another way
// (missing CNAME, loop, chain outside the alias zones, wildcard, CAA, and
// ten drifted between drift.example's two primaries) is refused before any
// ACME order: the right finding and the record to publish are logged, the
// CA receives no order, and nothing is written.
func TestGateFirstObtain(t *testing.T) {
	requireLab(t)
	cases := gateCases(t, "g1-", 10)
	var names []string
	for _, gc := range cases {
		breakDelegation(t, gc, false)
		names = append(names, gc.name)
	}
	mark := pebbleMark(t)
	start := time.Now()
	c := startCaddyfile(t, "", gateSite(names, ""))
	assertRefused(t, c, cases, false, 60*time.Second)
	// certmagic retries a failed obtain later; every retry meets the gate
	// too, so the CA's count stays at zero however long this runs.
	time.Sleep(2 * time.Second)
	if p := pebbleSince(t, mark); p.orders != 0 {
		t.Errorf("Pebble received %d orders for %d refused names, want 0", p.orders, len(cases))
	}
	assertNothingWritten(t, c, cases, start)
}

// TestGateRenewal: the same broken delegations, each made after a good
// delegation got its (40 s) certificate, are refused at renewal, with no
// order reaching the CA after the delegation broke.
//
// Pebble's ARI window spans the whole validity and certmagic renews at a
// random time in it, possibly within a second of issuance: a renewal that
// started before the break would place an order the gate rightly let
// through. So the Caddy that obtained stops first, the delegations break,
// and a second Caddy on the same storage does the renewals.
func TestGateRenewal(t *testing.T) {
	requireLab(t)
	cases := gateCases(t, "g2-", 1)
	var names []string
	for _, gc := range cases {
		publish(t, delegation(gc.name)) // on both servers of drift.example
		names = append(names, gc.name)
	}
	p := startPebble(t, 40*time.Second)
	config := func(c *caddyProc) string {
		return c.globalOptions(&p.lab, "renew_interval 2s") + gateSite(names, "")
	}
	first := startCaddy(t, "", "caddyfile", config)
	for _, gc := range cases {
		first.waitCertFrom(gc.name, 90*time.Second, p.lab.VerifyPebbleChain)
	}
	first.stop()
	for _, gc := range cases {
		breakDelegation(t, gc, true)
	}
	broke := time.Now()
	ordersBefore := strings.Count(p.log.String(), "Added order ")
	c := startCaddy(t, first.storage, "caddyfile", config)
	// Renewal is due within the 40 s validity.
	assertRefused(t, c, cases, true, 60*time.Second)
	if n := strings.Count(p.log.String(), "Added order ") - ordersBefore; n != 0 {
		t.Errorf("Pebble received %d orders after the delegations broke, want 0", n)
	}
	c.stop()
	assertNothingWritten(t, c, cases, broke)
}

// TestGateOnDemandTwoProviders: a follow-mode site policy and an on-demand
// template policy in one config. A name whose CNAME satisfies only the
// site's provider is refused for on-demand and places no order; the check
// command, the admin API and the permission module agree on every name.
func TestGateOnDemandTwoProviders(t *testing.T) {
	l := requireLab(t)
	label := randomLabel(t, "g3-")
	site := label + "-site.example.com"
	followOnly := label + "-follow.example.com"
	template := label + "-tmpl.example.com"
	missing := label + "-miss.example.com"
	publish(t,
		delegation(site),
		// inside the alias zone, but not where the template puts it
		fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME other.%s.validation.example.org.", followOnly, followOnly),
		fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.alias2.example.", template, template),
	)
	// The catch-all on-demand policy takes the global acme_dns provider
	// (template mode, in alias2.example); the site its own (follow mode).
	global := fmt.Sprintf(`acme_dns alias _acme-challenge.{domain}.alias2.example {
		%s
		zone alias2.example
		resolvers %s
		private_nameservers
	}
	tls_resolvers %s
	on_demand_tls {
		permission alias
	}`, lab.RFC2136Block(l.CaddyKey2.Name, "{env.TSIG_SECRET_2}", l.AuthB), l.Resolver, l.Resolver)
	sites := gateSite([]string{site}, "") + `
https:// {
	tls {
		on_demand
	}
	respond "on demand"
}
`
	c := startCaddyfile(t, global, sites)
	c.waitCert(site, 60*time.Second)
	c.waitAdmin(20 * time.Second)
	path := filepath.Join(c.dir, "Caddyfile")

	want := map[string]bool{site: true, followOnly: false, template: true, missing: false}
	names := []string{site, followOnly, template, missing}
	mark := pebbleMark(t)

	// The admin API.
	q := ""
	for _, n := range names {
		q += "&domain=" + n
	}
	code, body := c.adminGet("/dns-alias/check?" + q[1:])
	if code != 200 {
		t.Fatalf("/dns-alias/check: %d %s", code, body)
	}
	var reports []solver.Report
	if err := json.Unmarshal([]byte(body), &reports); err != nil {
		t.Fatal(err)
	}
	// The check command, on the same config.
	out, errOut, _ := runCheckCmd(t, append([]string{"--config", path, "--json"}, names...)...)
	var cliReports []solver.Report
	if err := json.Unmarshal([]byte(out), &cliReports); err != nil {
		t.Fatalf("check --json: %v\n%s\n%s", err, out, errOut)
	}
	for i, n := range names {
		adminOK := reports[i].Verdict != solver.VerdictBroken
		cliOK := cliReports[i].Verdict != solver.VerdictBroken
		// The permission module, through a handshake (the site's name is
		// served from its managed certificate).
		_, hsErr := c.handshake(n, 60*time.Second)
		if adminOK != want[n] || cliOK != want[n] || (hsErr == nil) != want[n] {
			t.Errorf("%s: admin %s, check command %s, handshake %v; want admitted=%v", n, reports[i].Verdict, cliReports[i].Verdict, hsErr, want[n])
		}
	}
	pb := pebbleSince(t, mark)
	if pb.orders != 1 {
		t.Errorf("Pebble received %d orders, want 1 (for %s alone)", pb.orders, template)
	}
	if _, ok := c.find("on-demand certificate refused", "name", followOnly); !ok {
		t.Errorf("no refusal logged for %s", followOnly)
	}
	c.stop()
	assertNoChallengeLeft(t)
}

// TestGateReloadInFlight: a config reload while a challenge is presented.
// The old config's challenge is cleaned up, the new config obtains the
// certificate, and the alias zone and the journal are empty afterwards.
func TestGateReloadInFlight(t *testing.T) {
	requireLab(t)
	name := randomLabel(t, "g4-") + ".example.com"
	publish(t, delegation(name))
	c := startCaddyfile(t, "", gateSite([]string{name}, "propagation_delay 8s"))
	c.waitAdmin(20 * time.Second)
	waitAliasTXT(t, aliasOf(name), 30*time.Second, c)

	// The same site with another response: a new config, its own app.
	cfg := c.globalOptions(theLab, "") + "\n" + strings.Replace(gateSite([]string{name}, ""), `respond "gate"`, `respond "reloaded"`, 1)
	status, body := c.adminCall("POST", "/load", "text/caddyfile", []byte(cfg))
	if status != 200 {
		t.Fatalf("reloading: %d %s", status, body)
	}
	c.waitCert(name, 60*time.Second)
	for deadline := time.Now().Add(30 * time.Second); len(aliasTXT(t, aliasOf(name))) > 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("TXT left at %s after the reload; log:\n%s", aliasOf(name), c.log.String())
		}
	}
	waitJournalEmpty(t, c.storage, 30*time.Second)
	c.stop()
	assertNoChallengeLeft(t)
}
