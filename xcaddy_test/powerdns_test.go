package xcaddy_test

// PowerDNS end to end (issue 22): the alias provider over caddy-dns/powerdns,
// an HTTP API provider, writing into pdns.example, which the lab's own
// pdns_server serves on 127.0.0.5:53 (delegated from "example", resolved by
// Unbound and so by Pebble). What the zone holds is read through the
// PowerDNS API, the path the provider writes by.

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/solver"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// requirePowerDNS returns the lab's PowerDNS and puts its API key where
// the provider block's placeholder reads it (Caddy inherits this
// process's environment).
func requirePowerDNS(t *testing.T) lab.PowerDNS {
	t.Helper()
	p, err := requireLab(t).PowerDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(lab.PowerDNSKeyEnv, p.APIKey)
	return p
}

// pdnsAliasOf is the template alias of name in the PowerDNS zone.
func pdnsAliasOf(p lab.PowerDNS, name string) string {
	return "_acme-challenge." + name + "." + p.Zone
}

// pdnsSite is a site block for names whose challenges go through the
// PowerDNS API: with the template alias in p.Zone, or with follow if
// follow is set; tlsExtra goes into the tls block.
func pdnsSite(p lab.PowerDNS, names string, follow bool, tlsExtra string) string {
	mode := "alias _acme-challenge.{domain}." + p.Zone
	if follow {
		mode = "follow"
	}
	return fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			zone %s
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
		%s
	}
	respond "ok"
}
`, names, p.ProviderBlock(), p.Zone, mode, theLab.Resolver, theLab.Resolver, tlsExtra)
}

// pdnsTXT returns the zone's TXT values by name, through the API.
func pdnsTXT(t *testing.T, p lab.PowerDNS) map[string][]string {
	t.Helper()
	txt, err := p.TXT(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return txt
}

// waitPDNSTXT waits until name holds a TXT value in the PowerDNS zone and
// returns the values.
func waitPDNSTXT(t *testing.T, p lab.PowerDNS, name string, timeout time.Duration, c *caddyProc) []string {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if v := pdnsTXT(t, p)[name]; len(v) > 0 {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TXT at %s in PowerDNS within %s; log:\n%s", name, timeout, c.log.String())
		}
	}
}

// assertPDNSEmpty waits briefly for cleanups, then fails if the PowerDNS
// zone holds any TXT record other than keep's values at keep's names.
func assertPDNSEmpty(t *testing.T, p lab.PowerDNS, keep map[string][]string) {
	t.Helper()
	var left map[string][]string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		left = pdnsTXT(t, p)
		for name, vs := range keep {
			left[name] = slices.DeleteFunc(left[name], func(v string) bool { return slices.Contains(vs, v) })
			if len(left[name]) == 0 {
				delete(left, name)
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("TXT records left in %s: %v", p.Zone, left)
}

// TestPowerDNSIssue: one Caddy, two sites through PowerDNS: a template
// alias, and follow mode through a two-hop chain (via hop.example on BIND)
// that ends in pdns.example. Both certificates are issued, each challenge
// is written at its exact name through the powerdns provider, nothing is
// left in the zone and nothing changed in production.
func TestPowerDNSIssue(t *testing.T) {
	p := requirePowerDNS(t)
	tmpl := randomLabel(t, "pt-") + ".example.com"
	follow := randomLabel(t, "pf-") + ".example.net"
	end := pdnsAliasOf(p, follow)
	publish(t, lab.Delegation(tmpl, p.Zone),
		fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.hop.example.", follow, follow),
		fmt.Sprintf("%s.hop.example. 60 IN CNAME %s.", follow, end))
	before := productionSerials(t)
	c := startCaddyfile(t, "", pdnsSite(p, tmpl, false, "")+pdnsSite(p, follow, true, ""))
	took := c.waitCerts([]string{tmpl, follow}, 90*time.Second)
	t.Logf("template and follow through PowerDNS: certificates after %s", took.Round(time.Millisecond))
	for domain, alias := range map[string]string{tmpl: pdnsAliasOf(p, tmpl), follow: end} {
		if e := c.presentedFor(domain); e.Alias != alias || e.Zone != p.Zone || e.Provider != "powerdns" {
			t.Errorf("challenge of %s presented at %s in zone %s through %s; want %s in %s through powerdns",
				domain, e.Alias, e.Zone, e.Provider, alias, p.Zone)
		}
	}
	assertPDNSEmpty(t, p, nil)
	assertProductionUnchanged(t, before)
}

// TestPowerDNSApexAndWildcard: apex and wildcard of one domain share one
// alias name; with certmagic's propagation check kept, both challenge
// values are in the zone at once, beside a value of another party that
// was there first. Both certificates are issued, and afterwards only the
// other party's value is left: the provider appends to and deletes from
// the TXT set, it never replaces it.
func TestPowerDNSApexAndWildcard(t *testing.T) {
	p := requirePowerDNS(t)
	apex := randomLabel(t, "pw-") + ".example.com"
	alias := pdnsAliasOf(p, apex)
	publish(t, lab.Delegation(apex, p.Zone))
	const other = "another-party-keeps-this"
	ctx := testCtx(t, 3*time.Minute)
	if err := p.SetTXT(ctx, alias, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.SetTXT(ctx, alias) })
	before := productionSerials(t)

	// Watch the name through the API while the certificates are obtained.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var most int
	var lostOther bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			vs, err := p.TXT(ctx)
			if err != nil {
				continue
			}
			if !slices.Contains(vs[alias], other) {
				lostOther = true
			}
			most = max(most, len(slices.DeleteFunc(vs[alias], func(v string) bool { return v == other })))
		}
	}()
	c := startCaddyfile(t, "", pdnsSite(p, apex+", *."+apex, false, "propagation_timeout 2m"))
	took := c.waitCerts([]string{apex, "*." + apex}, 90*time.Second)
	close(stop)
	wg.Wait()
	t.Logf("apex + wildcard through PowerDNS: certificates after %s; at most %d challenge values at %s at once", took.Round(time.Millisecond), most, alias)
	if most < 2 {
		t.Errorf("at most %d challenge values at %s at once, want the apex's and the wildcard's together", most, alias)
	}
	if lostOther {
		t.Errorf("the other party's value %q at %s disappeared while the challenges were written", other, alias)
	}
	for _, e := range c.presented() {
		if e.Alias != alias || e.Provider != "powerdns" {
			t.Errorf("challenge of %s presented at %s through %s, want %s through powerdns", e.Domain, e.Alias, e.Provider, alias)
		}
	}
	c.stop()
	assertPDNSEmpty(t, p, map[string][]string{alias: {other}})
	if vs := pdnsTXT(t, p)[alias]; !slices.Equal(vs, []string{other}) {
		t.Errorf("%s holds %q afterwards, want only the other party's %q", alias, vs, other)
	}
	assertProductionUnchanged(t, before)
}

// TestPowerDNSGateRefusal: a delegation that points outside the alias
// zones and one that is missing are refused by the gate before any ACME
// order: Pebble sees no order, and nothing is written through PowerDNS.
func TestPowerDNSGateRefusal(t *testing.T) {
	p := requirePowerDNS(t)
	label := randomLabel(t, "pg-")
	out, missing := label+"-out.example.com", label+"-miss.example.com"
	publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.notours.example.", out, out))
	mark := pebbleMark(t)
	c := startCaddyfile(t, "", pdnsSite(p, out+", "+missing, true, ""))
	for name, finding := range map[string]string{out: solver.CodeOutsideZones, missing: solver.CodeNoDelegation} {
		line := c.waitLine(gateRefused, "identifier", name, 60*time.Second)
		if got := line.str("finding"); got != finding {
			t.Errorf("%s: the gate names finding %q, want %q: %s", name, got, finding, line.raw)
		}
	}
	time.Sleep(2 * time.Second) // a retry would meet the gate too
	if seen := pebbleSince(t, mark); seen.orders != 0 {
		t.Errorf("Pebble received %d orders for 2 refused names, want 0", seen.orders)
	}
	if pr := c.presented(); len(pr) > 0 {
		t.Errorf("a challenge was presented although the gate refused it: %s", pr[0].raw)
	}
	assertPDNSEmpty(t, p, nil)
}

// TestPowerDNSCrashSweep: Caddy is killed (SIGKILL) while its challenge is
// presented through PowerDNS. The TXT record stays in the zone and its
// journal entry in storage; a Caddy restarted on the same storage sweeps
// the orphan through the PowerDNS API, obtains the certificate, and the
// zone and the journal end empty.
func TestPowerDNSCrashSweep(t *testing.T) {
	p := requirePowerDNS(t)
	name := randomLabel(t, "pk-") + ".example.com"
	alias := pdnsAliasOf(p, name)
	publish(t, lab.Delegation(name, p.Zone))
	before := productionSerials(t)
	storage := filepath.Join(t.TempDir(), "shared")

	// The crashing instance holds its challenge for 30 s and sweeps only
	// at its start (the kill cannot catch it holding the sweep lock).
	k := startCaddyfileOn(t, storage, "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1h\n\t}",
		pdnsSite(p, name, false, "propagation_delay 30s"))
	orphan := waitPDNSTXT(t, p, alias, 30*time.Second, k)
	time.Sleep(time.Until(k.started.Add(sweepStart + time.Second)))
	k.cmd.Process.Signal(syscall.SIGKILL)
	k.waitExit(10 * time.Second)
	killed := time.Now()
	time.Sleep(500 * time.Millisecond)
	if got := pdnsTXT(t, p)[alias]; !slices.Equal(got, orphan) {
		t.Fatalf("after kill -9 PowerDNS holds %q at %s, want the orphan %q", got, alias, orphan)
	}
	if !slices.ContainsFunc(journal(t, storage), func(e solver.JournalEntry) bool {
		return e.Name == alias && e.Value == orphan[0] && e.Zone == p.Zone && e.Writer == "powerdns"
	}) {
		t.Fatalf("no journal entry for the orphan %s %q: %+v", alias, orphan[0], journal(t, storage))
	}

	r := startCaddyfileOn(t, storage, "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1s\n\t}", pdnsSite(p, name, false, ""))
	for deadline := time.Now().Add(sweepStart + 5*time.Second); slices.Contains(pdnsTXT(t, p)[alias], orphan[0]); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan is still in PowerDNS %s after the restart; log:\n%s", time.Since(r.started), r.log.String())
		}
	}
	t.Logf("orphan removed through the PowerDNS API %s after the restart, %s after the kill",
		time.Since(r.started).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if l, ok := r.find("removed orphaned challenge record", "name", alias); !ok {
		t.Errorf("the restarted Caddy does not log the orphan's removal")
	} else if l.str("zone") != p.Zone {
		t.Errorf("orphan removal logged for zone %q, want %s", l.str("zone"), p.Zone)
	}
	cert, took := r.waitCert(name, 60*time.Second)
	assertNames(t, cert, name)
	t.Logf("restarted instance: certificate after %s", took.Round(time.Millisecond))
	assertPDNSEmpty(t, p, nil)
	waitJournalEmpty(t, storage, 5*time.Second)
	assertProductionUnchanged(t, before)
}
