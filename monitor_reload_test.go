package alias

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestMonitorSharedAcrossReloads: the apps of successive configs on one
// storage share one monitor and its counters, as Caddy shares listeners
// across reloads; once no config uses it, it is let go.
func TestMonitorSharedAcrossReloads(t *testing.T) {
	storage := t.TempDir()
	config := func(subject string) []byte {
		provider := map[string]any{"name": "alias", "alias": "_acme-challenge.{domain}.validation.example.org", "zones": []string{"validation.example.org"},
			"resolvers": []string{"127.0.0.1:1"},
			"provider":  map[string]any{"name": "rfc2136", "key_name": "k", "key": "c2VjcmV0", "key_alg": "hmac-sha256", "server": "127.0.0.1:1"}}
		cfg, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true},
			"storage": map[string]any{"module": "file_system", "root": storage},
			"apps": map[string]any{
				"dns_alias": map[string]any{"check_interval": -1},
				"tls": map[string]any{"automation": map[string]any{"policies": []any{map[string]any{"subjects": []string{subject},
					"issuers": []any{map[string]any{"module": "acme", "ca": "https://127.0.0.1:1/dir", "challenges": map[string]any{"dns": map[string]any{"provider": provider}}}}}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Cleanup(func() { caddy.Stop() })
	if err := caddy.Load(config("shop.example.com"), true); err != nil {
		t.Fatal(err)
	}
	first := runningAppOf(t)
	first.watch.syncTracked(first.watch.trackedNames(context.Background()))
	for range 2 {
		if err := caddy.Load(config(fmt.Sprintf("shop%d.example.com", time.Now().UnixNano())), true); err != nil {
			t.Fatal(err)
		}
	}
	next := runningAppOf(t)
	if next == first || next.watch.state != first.watch.state {
		t.Fatal("the reloaded config's app has a monitor of its own")
	}
	if next.metrics.counters != first.metrics.counters {
		t.Error("the reloaded config's app counts on counters of its own: a reload resets them")
	}
	if n, _ := monitors.References(next.monitorKey); n != 1 {
		t.Errorf("%d references to the monitor after two reloads, want 1", n)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := monitors.References(next.monitorKey); ok {
		t.Error("the monitor outlives the last config that used it")
	}
}

// TestMonitorFirstRunAfterReload: the first run of a fresh monitor comes
// seconds after the start; after a reload, it comes when the last run's
// interval ends, not again at once.
func TestMonitorFirstRunAfterReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := func(m *monitor) (*App, func()) {
			a := newApp()
			a.logger, a.watch.state, a.CheckInterval = zap.NewNop(), m, caddy.Duration(time.Hour)
			a.setPolicies(nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { a.watch.loop(ctx); close(done) }()
			return a, func() { cancel(); <-done }
		}
		lastRun := func(m *monitor) time.Time {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.lastRun
		}

		fresh := &monitor{}
		_, stop := start(fresh)
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if lastRun(fresh).IsZero() {
			t.Error("a fresh monitor did not run within 6 s of the start")
		}
		stop()

		ran := time.Now().Add(-10 * time.Minute)
		reloaded := &monitor{lastRun: ran}
		_, stop = start(reloaded)
		defer stop()
		time.Sleep(49 * time.Minute)
		synctest.Wait()
		if !lastRun(reloaded).Equal(ran) {
			t.Fatalf("the reloaded app ran %s after the last run, want none before the 1h interval ends", lastRun(reloaded).Sub(ran))
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if lastRun(reloaded).Equal(ran) {
			t.Error("no run when the interval ended")
		}
	})
}

// monitorLab is the gate lab with its app's broken-delegation warnings and
// events observed, tracking shop.example.com (delegated) and
// missing.example.com (not).
type monitorLab struct {
	*gateLab
	logs   *observer.ObservedLogs
	events *eventLog
}

func startMonitorLab(t *testing.T) *monitorLab {
	l := startGateLab(t, nil)
	core, logs := observer.New(zap.InfoLevel)
	l.app.logger, l.app.ctx = zap.New(core), l.ctx
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
	l.app.events = events
	p := l.app.policies[1].provider
	l.app.setPolicies([]policy{{index: 0, subjects: []string{"shop.example.com", "missing.example.com"}, provider: p}})
	return &monitorLab{gateLab: l, logs: logs, events: got}
}

// reloaded is the app of the next config, as Provision makes it: the same
// monitor, the same events and logger.
func (l *monitorLab) reloaded() *App {
	a := newApp()
	a.logger, a.ctx, a.events, a.watch.state = l.app.logger, l.app.ctx, l.app.events, l.app.watch.state
	a.setPolicies(l.app.policies)
	return a
}

// TestMonitorNoRepeatAfterReload: a delegation that broke is announced
// once (warning and event), and the runs of reloaded configs' apps do not
// announce it again.
func TestMonitorNoRepeatAfterReload(t *testing.T) {
	l := startMonitorLab(t)
	l.app.watch.checkTracked(context.Background())
	for range 5 {
		l.reloaded().watch.checkTracked(context.Background())
	}
	if n := l.logs.FilterMessageSnippet("missing.example.com cannot be obtained").Len(); n != 1 {
		t.Errorf("%d broken-delegation warnings over 6 runs in 6 configs, want 1", n)
	}
	if got := l.events.names(); strings.Join(got, ",") != "dns_alias_delegation_broken missing.example.com" {
		t.Errorf("events %v, want one dns_alias_delegation_broken", got)
	}
}

// TestMonitorDropsUntrackedNames: a name no longer tracked leaves the
// status and its series leave the metrics; a name that recovers leaves
// the broken series; healthy names add no series.
func TestMonitorDropsUntrackedNames(t *testing.T) {
	l := startMonitorLab(t)
	a := l.app
	p := a.policies[0].provider
	a.watch.checkTracked(context.Background())
	checkMetrics(t, a, `caddy_dns_alias_delegation_broken{domain="missing.example.com",finding="no_delegation",policy="0"} 1`,
		`caddy_dns_alias_delegations{policy="0",state="no_delegation"} 1`, `caddy_dns_alias_delegations{policy="0",state="ok"} 1`)

	var subjects []string
	for i := range 200 {
		n := fmt.Sprintf("n%03d.example.com", i)
		subjects = append(subjects, n)
		l.srv.Add(fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", n, n))
	}
	a.setPolicies([]policy{{index: 0, subjects: subjects, provider: p}})
	checkTrackedFrozen(t, a)
	checkMetrics(t, a, `caddy_dns_alias_delegations{policy="0",state="ok"} 200`)
	if st := a.watch.status("", "", "", 0); st.Total != 200 || a.watch.status("missing.example.com", "", "", 0).Total != 0 {
		t.Errorf("status after the names changed: %d names, want the 200 tracked", st.Total)
	}
}

// TestRecheckTracksOnlyTrackedNames: under a catch-all policy, a recheck of
// made-up names answers but records nothing (no state, no event, no
// series); a name with a certificate in storage is tracked.
func TestRecheckTracksOnlyTrackedNames(t *testing.T) {
	l := startMonitorLab(t)
	a := l.app
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	a.watch.storage = storage
	pol := policy{index: 0, provider: a.policies[0].provider, issuer: &caddytls.ACMEIssuer{CA: "https://ca.example/dir"}}
	a.setPolicies([]policy{pol})
	storeCert(t, storage, pol.issuerKey(), "shop.example.com", time.Now().Add(-24*time.Hour), time.Now().Add(89*24*time.Hour), nil)

	for i := range 50 {
		if h := a.watch.recheck(context.Background(), fmt.Sprintf("made-up%d.example.com", i), &a.policies[0], cacheRefresh); h.State != solver.CodeNoDelegation {
			t.Fatalf("recheck of a made-up name: %+v", h)
		}
	}
	if st := a.watch.status("", "", "", 0); st.Total != 0 || len(l.events.names()) != 0 || len(delegationMetrics(t, a)) != 0 {
		t.Fatalf("50 rechecks of made-up names left %d tracked names, events %v, metrics %v", st.Total, l.events.names(), delegationMetrics(t, a))
	}
	a.watch.recheck(context.Background(), "shop.example.com", &a.policies[0], cacheRefresh)
	if st := a.watch.status("", "", "", 0); st.Total != 1 || st.Names[0].Domain != "shop.example.com" {
		t.Errorf("a recheck of an issued name: status %+v, want it tracked", st)
	}
}

// TestMonitorRenewalDueFromARI: the renewal due time is the one certmagic
// selected from the CA's renewal information when the certificate's
// metadata has it, else a third of the lifetime before expiry.
func TestMonitorRenewalDueFromARI(t *testing.T) {
	l := startMonitorLab(t)
	a := l.app
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	a.watch.storage = storage
	pol := &policy{index: 0, provider: a.policies[0].provider, issuer: &caddytls.ACMEIssuer{CA: "https://ca.example/dir"}}
	notBefore := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	selected := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	storeCert(t, storage, pol.issuerKey(), "shop.example.com", notBefore, notAfter,
		[]byte(`{"sans":["shop.example.com"],"issuer_data":{"url":"https://ca.example/cert/1","renewal_info":{"suggestedWindow":{"start":"2026-11-19T00:00:00Z","end":"2026-11-21T00:00:00Z"},"_selectedTime":"`+selected.Format(time.RFC3339)+`"}}}`))
	storeCert(t, storage, pol.issuerKey(), "blog.example.com", notBefore, notAfter, []byte(`{"sans":["blog.example.com"],"issuer_data":{"url":"https://ca.example/cert/2"}}`))
	for name, want := range map[string]time.Time{"shop.example.com": selected, "blog.example.com": notAfter.Add(-30 * 24 * time.Hour)} {
		if exp, due := a.watch.certificateTimes(context.Background(), name, pol); !due.Equal(want) || !exp.Equal(notAfter) {
			t.Errorf("%s: renewal due %s, expires %s; want %s, %s", name, due, exp, want, notAfter)
		}
	}
}

// storeCert stores a self-signed certificate for name where certmagic keeps
// the issuer's certificates, and its metadata if meta is set.
func storeCert(t *testing.T, s certmagic.Storage, issuerKey, name string, notBefore, notAfter time.Time, meta []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Store(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		t.Fatal(err)
	}
	if meta != nil {
		if err := s.Store(ctx, certmagic.StorageKeys.SiteMeta(issuerKey, name), meta); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStatusRequests: /dns-alias/status refuses a state that is none, a
// bad limit or a parameter given twice (400, naming the values it takes),
// before it looks for the running config.
func TestStatusRequests(t *testing.T) {
	for _, tt := range []struct{ query, want string }{
		{"state=bogus", `state "bogus": want one of pending, ok, unknown, broken, no_delegation`},
		{"state=OK", `state "OK"`},
		{"limit=0", `limit "0": want a number from 1 to 10000`},
		{"limit=10001", `limit "10001"`},
		{"state=ok&state=broken", "state: give it at most once"},
		{"after=1.2.3.4", "an IP address has no DNS challenge"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/dns-alias/status?"+tt.query, nil)
		err := AdminAPI{}.handleStatus(httptest.NewRecorder(), r)
		var apiErr caddy.APIError
		if !asAPIError(err, &apiErr) || apiErr.HTTPStatus != http.StatusBadRequest || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("?%s: %v, want 400 containing %q", tt.query, err, tt.want)
		}
	}
}

// TestStatusPages: status pages through the names in order, limit at a
// time, with the total and the next page's after.
func TestStatusPages(t *testing.T) {
	a := newApp()
	var names []trackedName
	pol := &policy{index: 0}
	for i := range 25 {
		names = append(names, trackedName{fmt.Sprintf("n%02d.example.com", i), pol})
	}
	a.watch.syncTracked(names)
	var seen []string
	after := ""
	for pages := 0; ; pages++ {
		p := a.watch.status("", "pending", after, 10)
		if p.Total != 25 || pages > 3 {
			t.Fatalf("page %d: %+v", pages, p)
		}
		for _, h := range p.Names {
			seen = append(seen, h.Domain)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(seen) != 25 || seen[0] != "n00.example.com" || seen[24] != "n24.example.com" {
		t.Errorf("pages gave %d names: %v", len(seen), seen)
	}
}

func asAPIError(err error, target *caddy.APIError) bool {
	e, ok := err.(caddy.APIError)
	if ok {
		*target = e
	}
	return ok
}
