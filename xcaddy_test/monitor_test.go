package xcaddy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// waitEvent waits for the events app's debug line of event for domain.
func waitEvent(t *testing.T, c *caddyProc, event, domain string, timeout time.Duration) logLine {
	t.Helper()
	return c.waitMatch(fmt.Sprintf("for event %s of %s", event, domain), timeout, func(l logLine) bool {
		return l.Msg == "event" && l.str("name") == event && strings.Contains(l.raw, `"identifier":"`+domain+`"`)
	})
}

// waitMetric waits until Caddy's /metrics has the line want.
func waitMetric(t *testing.T, c *caddyProc, want string, timeout time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		_, body := c.adminGet("/metrics")
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %q within %s:\n%s", want, timeout, body)
		}
	}
}

// brokenSeries is the metric line of a tracked name whose delegation is
// broken by finding.
func brokenSeries(domain, finding string) string {
	return fmt.Sprintf(`caddy_dns_alias_delegation_broken{domain=%q,finding=%q,policy="0"} 1`, domain, finding)
}

// waitState waits until /dns-alias/status gives domain the state.
func waitState(t *testing.T, c *caddyProc, domain, state string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		_, body := c.adminGet("/dns-alias/status?domain=" + domain)
		var st struct{ Names []struct{ State string } }
		if json.Unmarshal([]byte(body), &st) == nil && len(st.Names) == 1 && st.Names[0].State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/dns-alias/status does not give %s the state %s within %s: %s", domain, state, timeout, body)
		}
	}
}

// TestMonitorDelegation: with a 2 s check interval, a name whose CNAME is
// deleted after issuance (and one whose drift.example record is removed
// from one of the two primaries) flips its metric, logs when its renewal
// will fail and what to publish, and fires dns_alias_delegation_broken;
// restoring the record flips it back and fires
// dns_alias_delegation_restored. /dns-alias/status lists both, and
// /metrics carries every documented metric.
func TestMonitorDelegation(t *testing.T) {
	l := requireLab(t)
	label := randomLabel(t, "m1-")
	missing := label + "-miss.example.com"
	drifted := label + "-drift.drift.example"
	publish(t, delegation(missing), delegation(drifted))
	c := startCaddyfile(t, "debug\n\tdns_alias {\n\t\tcheck_interval 2s\n\t}", gateSite([]string{missing, drifted}, ""))
	for _, n := range []string{missing, drifted} {
		c.waitCert(n, 60*time.Second)
	}
	c.waitAdmin(20 * time.Second)
	waitState(t, c, missing, "ok", 15*time.Second)
	waitState(t, c, drifted, "ok", 15*time.Second)

	ctx := testCtx(t, time.Minute)
	if err := l.RemoveRRset(ctx, "example.com", "_acme-challenge."+missing+".", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveRRsetAt(ctx, l.AuthB, "drift.example", "_acme-challenge."+drifted+".", dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{missing, drifted} {
		if err := l.FlushResolver(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ domain, finding string }{{missing, solver.CodeNoDelegation}, {drifted, solver.CodeDrift}} {
		waitMetric(t, c, brokenSeries(tc.domain, tc.finding), 15*time.Second)
		warn := c.waitMatch("warning of "+tc.domain, 5*time.Second, func(l logLine) bool {
			return l.Level == "warn" && l.str("domain") == tc.domain && l.str("finding") == tc.finding
		})
		if !strings.HasPrefix(warn.Msg, "renewal of "+tc.domain+" due in ") || !strings.Contains(warn.Msg, " will fail: ") {
			t.Errorf("%s: warning %q does not say when the renewal fails", tc.domain, warn.Msg)
		}
		if !strings.Contains(warn.str("publish"), "_acme-challenge."+tc.domain+". 300 IN CNAME "+aliasOf(tc.domain)+".") {
			t.Errorf("%s: warning does not name the record to publish: %s", tc.domain, warn.raw)
		}
		ev := waitEvent(t, c, "dns_alias_delegation_broken", tc.domain, 5*time.Second)
		if !strings.Contains(ev.raw, `"state":"`+tc.finding+`"`) || !strings.Contains(ev.raw, `"renewal_due"`) {
			t.Errorf("%s: event lacks its state or renewal time: %s", tc.domain, ev.raw)
		}
	}
	if !strings.Contains(waitEvent(t, c, "dns_alias_delegation_broken", drifted, time.Second).raw, "no CNAME") {
		t.Errorf("the drift event does not name the server without the record")
	}
	code, body := c.adminGet("/dns-alias/status?state=broken")
	var st struct {
		Total int
		Names []struct{ Domain, State, Publish string }
	}
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.Total != 2 || len(st.Names) != 2 {
		t.Fatalf("/dns-alias/status?state=broken: %d %s (%v)", code, body, err)
	}
	for _, bad := range []string{"x%20y", "bogus"} {
		if code, _ := c.adminGet("/dns-alias/status?state=" + bad); code != 400 {
			t.Errorf("the state filter %q got %d, want 400", bad, code)
		}
	}

	// Restore both: the metric flips back and the restored event fires.
	publish(t, delegation(missing))
	if err := l.PublishAt(ctx, l.AuthB, "drift.example", delegation(drifted)); err != nil {
		t.Fatal(err)
	}
	if err := l.FlushResolver(ctx, drifted); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{missing, drifted} {
		waitState(t, c, n, "ok", 15*time.Second)
		waitEvent(t, c, "dns_alias_delegation_restored", n, 5*time.Second)
	}
	metrics := waitMetric(t, c, "caddy_dns_alias_records_presented 0", 5*time.Second)
	if strings.Contains(metrics, "caddy_dns_alias_delegation_broken{") {
		t.Errorf("a restored name keeps its broken series:\n%s", metrics)
	}
	for _, want := range []string{
		`caddy_dns_alias_delegations{policy="0",state="ok"} 2`,
		`caddy_dns_alias_monitor_last_run_timestamp_seconds `,
		`caddy_dns_alias_record_writes_total{result="ok"} 2`,
		`caddy_dns_alias_record_deletes_total{result="ok"} 2`,
		`caddy_dns_alias_write_served_seconds_count 2`,
		`caddy_dns_alias_sweep_removed_total 0`,
		`# TYPE caddy_dns_alias_records_presented gauge`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	c.stop()
	assertNoChallengeLeft(t)
}

// TestMonitorRecheckAdmits: an on-demand name refused because its CNAME was
// missing stays refused for negative_ttl; POST /dns-alias/recheck after the
// customer publishes it lets the next handshake through at once.
func TestMonitorRecheckAdmits(t *testing.T) {
	requireLab(t)
	name := randomLabel(t, "m2-") + ".example.com"
	c := startOnDemandCaddy(t)
	c.waitAdmin(20 * time.Second)
	if _, err := c.handshake(name, 20*time.Second); err == nil {
		t.Fatal("an undelegated name got a certificate")
	}
	publish(t, delegation(name))
	if _, err := c.handshake(name, 20*time.Second); err == nil {
		t.Fatal("the cached refusal did not hold (negative_ttl is 1m)")
	}
	code, body := c.adminCall("POST", "/dns-alias/recheck?domain="+name, "", nil)
	if code != 200 || !strings.Contains(body, `"state":"ok"`) {
		t.Fatalf("/dns-alias/recheck: %d %s", code, body)
	}
	chain, err := c.handshake(name, 60*time.Second)
	if err != nil {
		t.Fatalf("handshake after the recheck: %v; log:\n%s", err, c.log.String())
	}
	assertPebbleCert(t, chain, name)
	if code, _ := c.adminCall("GET", "/dns-alias/recheck?domain="+name, "", nil); code != 405 {
		t.Errorf("GET /dns-alias/recheck got %d, want 405", code)
	}
	if code, _ := c.adminCall("POST", "/dns-alias/recheck?domain=127.0.0.1", "", nil); code != 400 {
		t.Errorf("recheck of an IP address got %d, want 400", code)
	}
	c.stop()
	assertNoChallengeLeft(t)
}
