package alias

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// eventLog is an events handler that keeps what it is handed.
type eventLog struct {
	mu     sync.Mutex
	events []caddy.Event
}

func (l *eventLog) Handle(_ context.Context, e caddy.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return nil
}

func (l *eventLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, e.Name()+" "+e.Data["identifier"].(string))
	}
	return out
}

// TestMonitor: the periodic check of the tracked names sets their state
// and metrics, logs and emits dns_alias_delegation_broken once when a
// delegation breaks and dns_alias_delegation_restored when it passes
// again, and a recheck drops the permission module's cached refusal.
func TestMonitor(t *testing.T) {
	l := startGateLab(t, nil)
	a := l.app
	core, logs := observer.New(zap.InfoLevel)
	a.logger, a.ctx = zap.New(core), l.ctx
	events := new(caddyevents.App)
	if err := events.Provision(l.ctx); err != nil {
		t.Fatal(err)
	}
	got := &eventLog{}
	for _, name := range []string{"dns_alias_delegation_broken", "dns_alias_delegation_restored"} {
		if err := events.On(name, got); err != nil {
			t.Fatal(err)
		}
	}
	a.events = events
	p := a.policies[1].provider
	a.setPolicies([]policy{{index: 0, subjects: []string{"shop.example.com", "missing.example.com", "192.0.2.1"}, provider: p}})
	perm, err := l.ctx.LoadModuleByID("tls.permission.alias", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	a.watch.syncTracked(a.watch.trackedNames(ctx))
	if st := a.watch.status("", "", "", 0); st.Total != 2 || st.Names[0].State != statePending || st.Names[1].State != statePending {
		t.Fatalf("status before the first run: %+v, want both names pending", st)
	}
	for range 2 {
		a.watch.checkTracked(ctx)
	}
	st := a.watch.status("", "", "", 0).Names
	if len(st) != 2 || st[0].Domain != "missing.example.com" || st[0].State != solver.CodeNoDelegation || st[1].State != "ok" {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(st[0].Publish, "_acme-challenge.missing.example.com. 300 IN CNAME _acme-challenge.missing.example.com.validation.example.org.") {
		t.Errorf("no record to publish: %+v", st[0])
	}
	checkMetrics(t, a, `caddy_dns_alias_delegation_broken{domain="missing.example.com",finding="no_delegation",policy="0"} 1`,
		`caddy_dns_alias_delegations{policy="0",state="no_delegation"} 1`, `caddy_dns_alias_delegations{policy="0",state="ok"} 1`)
	if got := a.watch.status("", "broken", "", 0).Names; len(got) != 1 || got[0].Domain != "missing.example.com" {
		t.Errorf("status?state=broken = %+v", got)
	}
	if n := logs.FilterMessageSnippet("the certificate of missing.example.com cannot be obtained").Len(); n != 1 {
		t.Errorf("%d broken-delegation warnings for two checks, want 1", n)
	}
	if perm.(*Permission).CertificateAllowed(ctx, "missing.example.com") == nil {
		t.Fatal("an undelegated name was admitted")
	}

	// The customer publishes the record; a recheck on request, which reads
	// no cached answer, restores the delegation, and the permission module
	// (whose cached refusal it drops) admits the name at once.
	l.srv.Add("_acme-challenge.missing.example.com. 30 IN CNAME _acme-challenge.missing.example.com.validation.example.org.")
	a.modules.forgetAdmission("missing.example.com")
	if h := a.watch.recheck(ctx, "missing.example.com", &a.policies[0], cacheRefresh); h.State != "ok" || h.LastOK.IsZero() {
		t.Fatalf("recheck %+v", h)
	}
	if err := perm.(*Permission).CertificateAllowed(ctx, "missing.example.com"); err != nil {
		t.Errorf("admission after the recheck: %v", err)
	}
	checkMetrics(t, a, `caddy_dns_alias_delegations{policy="0",state="ok"} 2`)
	if logs.FilterMessage("delegation restored").Len() != 1 {
		t.Errorf("no restored line logged")
	}
	want := []string{"dns_alias_delegation_broken missing.example.com", "dns_alias_delegation_restored missing.example.com"}
	if names := got.names(); strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("events %v, want %v", names, want)
	}
}

// TestMonitorQueryBound measures what one periodic run costs for 100
// tracked names of one zone, delegated in template mode: every query the
// DNS server (resolver and authoritative at once here) receives. README's
// Monitoring section quotes the per-name figure; the bound keeps it true.
// The names are checked one at a time: checks that run at once can each
// miss the cache for an answer the names share, a few dozen queries per
// run whatever its size (2504-2528 for 500 names), which would blur the
// per-name figure of a run small enough to be quick.
func TestMonitorQueryBound(t *testing.T) {
	const names = 100
	l := startGateLab(t, nil)
	l.app.CheckConcurrency = 1
	p := l.app.policies[1].provider
	var subjects, records []string
	for i := range names {
		n := fmt.Sprintf("n%03d.example.com", i)
		subjects = append(subjects, n)
		records = append(records, fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", n, n))
	}
	l.srv.Add(records...)
	l.app.setPolicies([]policy{{index: 0, subjects: subjects, provider: p}})
	before := len(l.srv.Queries())
	// Outside a bubble, a run slower than the shared answers' 1 s TTL
	// asked them again (5.2 queries per name).
	checkTrackedFrozen(t, l.app)
	queries := 0
	for _, q := range l.srv.Queries()[before:] {
		// This server serves no "com" and refuses it, so the CAA of com is
		// asked again for each name; a real TLD answers NODATA, which is
		// cached.
		if q.Name != "com" {
			queries++
		}
	}
	perName := float64(queries) / names
	t.Logf("one periodic run: %d queries for %d names, %.1f per name", queries, names, perName)
	if ok := l.app.watch.status("", "ok", "", 0); ok.Total != names {
		t.Fatalf("%d of %d names ok", ok.Total, names)
	}
	// The chain (CNAME, wildcard probe, the alias), the direct question
	// to the zone's one server and CAA of the name: 5. The zone comes from
	// the probe's negative answer, not an SOA query per name.
	if perName > 5.1 {
		t.Errorf("%.1f queries per name, more than README states (5)", perName)
	}
}

// checkTrackedFrozen runs one periodic check of a's tracked names in a
// synctest bubble, whose clock stands still while the test's DNS server
// answers: no context timeout passes however late a busy machine makes an
// answer (a nameserver silent for 2 s is "unknown": 1 run in 50 under
// -race found a name of 200 so), and the answers the names share (the
// test zones' negative TTL is 1 s) stay cached for the whole run. The UDP
// socket's own read deadline (miekg/dns: 2 s) still runs on the wall
// clock. A run that emits events cannot run in one: the event's context,
// made in the bubble, is cancelled from outside.
func checkTrackedFrozen(t *testing.T, a *App) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { a.watch.checkTracked(context.Background()) })
}

// checkMetrics fails t unless the app's delegation metrics are exactly
// want (exposition lines, in any order).
func checkMetrics(t *testing.T, a *App, want ...string) {
	t.Helper()
	got := delegationMetrics(t, a)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("delegation metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// delegationMetrics gathers the app's per-name and per-state delegation
// series, as /metrics shows them.
func delegationMetrics(t *testing.T, a *App) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(a.metrics.delegations); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "caddy_dns_alias_monitor_") {
			continue // the runs, not the names
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out = append(out, fmt.Sprintf("%s{%s} %g", f.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue()))
		}
	}
	return out
}
