package alias

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// gateLab is an in-process DNS server with production zones in every state
// the gate judges, and a standalone app whose one policy solves with a
// template-mode alias provider.
type gateLab struct {
	srv *dnstest.Server
	ctx caddy.Context
	app *App
}

func startGateLab(t *testing.T, extra map[string]any) *gateLab {
	t.Helper()
	srv := dnstest.Start(t,
		// The zones' nameserver, ns.dnstest, is this server: the
		// resolvers' NameserverPort points direct queries at its port.
		dnstest.Zone{Name: "dnstest", Records: "ns A 127.0.0.1"},
		dnstest.Zone{Name: "validation.example.org", Updatable: true},
		dnstest.Zone{Name: "notours.example"},
		dnstest.Zone{Name: "example.com", Records: `
_acme-challenge.shop CNAME _acme-challenge.shop.example.com.validation.example.org.
_acme-challenge.blog CNAME _acme-challenge.blog.example.com.validation.example.org.
_acme-challenge.elsewhere CNAME _acme-challenge.elsewhere.example.com.notours.example.
_acme-challenge.loop CNAME _acme-challenge.loop2.example.com.
_acme-challenge.loop2 CNAME _acme-challenge.loop.example.com.
*.wild CNAME _acme-challenge.x.validation.example.org.
_acme-challenge.caa CNAME _acme-challenge.caa.example.com.validation.example.org.
caa CAA 0 issue "other-ca.example"
_acme-challenge.bound CNAME _acme-challenge.bound.example.com.validation.example.org.
bound CAA 0 issue "ca.example; accounturi=https://ca.example/acme/acct/other"
_acme-challenge.ours CNAME _acme-challenge.ours.example.com.validation.example.org.
ours CAA 0 issue "ca.example; accounturi=https://ca.example/acme/acct/1"
`},
	)
	key := srv.Key()
	cfg := map[string]any{
		"provider":           map[string]any{"name": "rfc2136", "key_name": key.Name, "key_alg": key.Algorithm, "key": key.Secret, "server": srv.Addr()},
		"resolvers":          []string{srv.Addr()},
		"zones":              []string{"validation.example.org"},
		"alias":              "_acme-challenge.{domain}.validation.example.org",
		"authoritative_wait": -1,
		// The zones' nameserver is on loopback.
		"private_nameservers": true,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, app := standalone(t)
	app.gateRetry = 0
	mod, err := ctx.LoadModuleByID("dns.providers.alias", raw)
	if err != nil {
		t.Fatalf("provisioning dns.providers.alias: %v", err)
	}
	p := mod.(*Provider)
	_, port, _ := net.SplitHostPort(srv.Addr())
	p.writer.Mapper.Resolver.NameserverPort = port
	app.setPolicies([]policy{
		{index: 0, subjects: []string{"*.plain.example.com"}},
		{index: 1, provider: p},
	})
	return &gateLab{srv: srv, ctx: ctx, app: app}
}

func (l *gateLab) obtaining(t *testing.T, name string) error {
	t.Helper()
	e, err := caddy.NewEvent(l.ctx, "cert_obtaining", map[string]any{"identifier": name})
	if err != nil {
		t.Fatal(err)
	}
	return gate{l.app}.Handle(l.ctx, e)
}

func TestGate(t *testing.T) {
	l := startGateLab(t, map[string]any{"caa_identities": []string{"pebble.example"}})
	tests := []struct {
		name    string
		wantErr []string // nil: the obtain goes on
	}{
		{"shop.example.com", nil},
		{"*.shop.example.com", nil},
		// The first policy obtains it without an alias provider.
		{"www.plain.example.com", nil},
		{"missing.example.com", []string{"no CNAME record", "publish in the production zone: _acme-challenge.missing.example.com. 300 IN CNAME _acme-challenge.missing.example.com.validation.example.org."}},
		{"elsewhere.example.com", []string{"not at the alias", "publish in the production zone: _acme-challenge.elsewhere.example.com. 300 IN CNAME"}},
		{"loop.example.com", []string{"CNAME loop", "_acme-challenge.loop2.example.com"}},
		{"shop.wild.example.com", []string{"wildcard"}},
		{"caa.example.com", []string{`CAA issue at caa.example.com allows only other-ca.example, none of pebble.example`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.obtaining(t, tt.name)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("obtain aborted: %v", err)
				}
				return
			}
			if !errors.Is(err, caddy.ErrEventAborted) {
				t.Fatalf("got %v, want an error wrapping caddy.ErrEventAborted", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q lacks %q", err, want)
				}
			}
		})
	}
	if n := len(l.srv.Updates()); n != 0 {
		t.Errorf("the gate sent %d updates, want none", n)
	}
}

// TestOneCheckPerObtain: one obtain checks the delegation once. The gate's
// pass stands in for the write's check, which asks the production zone
// nothing more; the permission module's chain check before an on-demand
// obtain leaves the nameservers and CAA to the gate.
func TestOneCheckPerObtain(t *testing.T) {
	l := startGateLab(t, nil)
	_, p := l.app.policyFor("shop.example.com")
	asked := func() int { // queries about the production zone
		n := 0
		for _, q := range l.srv.Queries() {
			if solver.InZone(q.Name, "example.com") {
				n++
			}
		}
		return n
	}
	write := func(t *testing.T, domain string) {
		t.Helper()
		rec := libdns.TXT{Name: "_acme-challenge", Text: digest(domain)}
		if _, err := p.AppendRecords(context.Background(), domain+".", []libdns.Record{rec}); err != nil {
			t.Fatalf("writing the challenge of %s: %v", domain, err)
		}
		if _, err := p.DeleteRecords(context.Background(), domain+".", []libdns.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		before func(t *testing.T) // what checks before the gate
	}{
		{"on-demand", func(t *testing.T) {
			if _, rep := l.app.Admit(context.Background(), "shop.example.com"); rep.Verdict != solver.VerdictOK {
				t.Fatalf("the permission module's check: %v", rep.Err())
			}
		}},
		{"managed", func(*testing.T) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			domain := map[string]string{"on-demand": "shop.example.com", "managed": "blog.example.com"}[tc.name]
			tc.before(t)
			start := asked()
			if err := l.obtaining(t, domain); err != nil {
				t.Fatal(err)
			}
			gate := asked() - start
			write(t, domain)
			if n := asked() - start - gate; n != 0 {
				t.Errorf("the write asked %d queries about the production zone after the gate's pass, want none", n)
			}
			// The permission module's pass checked the chain only: the
			// gate still asks the nameservers and CAA.
			if gate == 0 {
				t.Errorf("the gate asked nothing on its own")
			}
		})
	}
}

// TestGateLookupFailures: a resolver that fails every lookup makes the gate
// ask gateAttempts times and then let the obtain go on, so that a flaky
// resolver cannot stop renewals.
func TestGateLookupFailures(t *testing.T) {
	failing := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	failing.NotifyStartedFunc = func() { close(started) }
	go failing.ListenAndServe()
	<-started
	t.Cleanup(func() { failing.Shutdown() })
	addr := failing.PacketConn.LocalAddr().String()

	l := startGateLab(t, map[string]any{"resolvers": []string{addr}})
	if err := l.obtaining(t, "shop.example.com"); err != nil {
		t.Fatalf("obtain aborted on lookup failures: %v", err)
	}
	_, rep := l.app.Admit(context.Background(), "shop.example.com")
	var de *solver.DelegationError
	if err := rep.Err(); !errors.As(err, &de) || !de.Transient() || de.Code() != solver.CodeLookup {
		t.Errorf("verdict %v, want a transient lookup failure", err)
	}
}

// TestGateCAAFromDirectory: CAA is judged against the caaIdentities of the
// policy's own ACME directory, ahead of caa_identities.
func TestGateCAAFromDirectory(t *testing.T) {
	dir := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"newNonce":"x","newOrder":"x","meta":{"caaIdentities":["Directory-CA.example"]}}`))
	}))
	t.Cleanup(dir.Close)
	l := startGateLab(t, map[string]any{"caa_identities": []string{"configured.example"}})
	l.app.caa.client = func([]string) (*http.Client, error) { return dir.Client(), nil }
	l.app.policies[1].issuer = &caddytls.ACMEIssuer{CA: dir.URL}

	err := l.obtaining(t, "caa.example.com")
	if err == nil || !strings.Contains(err.Error(), "none of directory-ca.example") || strings.Contains(err.Error(), "configured.example") {
		t.Fatalf("got %v, want a refusal naming the directory's identity only", err)
	}
	if fix := `caa.example.com. 300 IN CAA 0 issue "directory-ca.example"`; !strings.Contains(err.Error(), fix) {
		t.Errorf("refusal %q does not print %s", err, fix)
	}
}

// TestSurfacesAgree: the admin API's and the check command's report, the
// permission module and the gate decide alike for every name, including a
// name no alias policy covers.
func TestSurfacesAgree(t *testing.T) {
	l := startGateLab(t, nil)
	perm, err := l.ctx.LoadModuleByID("tls.permission.alias", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"shop.example.com", "missing.example.com", "elsewhere.example.com", "loop.example.com", "shop.wild.example.com", "www.plain.example.com"}
	reports := l.app.reportDomains(context.Background(), names)
	for i, name := range names {
		permErr := perm.(*Permission).CertificateAllowed(context.Background(), name)
		_, verdict := l.app.Admit(context.Background(), name)
		broken := reports[i].Verdict == solver.VerdictBroken
		if broken != (permErr != nil) || broken != (verdict.Verdict == solver.VerdictBroken) {
			t.Errorf("%s: report %s, permission %v, verify %s", name, reports[i].Verdict, permErr, verdict.Verdict)
		}
		// The gate leaves names of other policies alone.
		ours := name != "www.plain.example.com"
		if gateErr := l.obtaining(t, name); (gateErr != nil) != (broken && ours) {
			t.Errorf("%s: report %s, gate %v", name, reports[i].Verdict, gateErr)
		}
	}
	if reports[5].OK || reports[5].Findings[0].Code != solver.CodeNoPolicy {
		t.Errorf("a name outside every alias policy: %+v", reports[5])
	}
}

// TestCheckDomainsInput: the admin API refuses what is no domain, and more
// domains than a request may check, naming what is wrong.
func TestCheckDomainsInput(t *testing.T) {
	many := make([]string, maxCheckDomains+1)
	for i := range many {
		many[i] = "example.com"
	}
	tests := []struct {
		domains []string
		wantErr string
	}{
		{[]string{"example.com", "*.example.com", "Shop.Example.COM."}, ""},
		{nil, "at least one"},
		{[]string{""}, `domain "": empty name`},
		{[]string{"a\x00b"}, `domain "a\x00b"`},
		{[]string{"a b"}, `domain "a b"`},
		{[]string{"127.0.0.1"}, "IP address"},
		{[]string{"[::1]"}, "IP address"},
		{[]string{"example.com:443"}, `domain "example.com:443"`},
		{[]string{strings.Repeat("a.", 130) + "com"}, "more than DNS allows"},
		{many, "at most 50"},
	}
	for _, tt := range tests {
		_, err := checkDomains(tt.domains)
		checkErr(t, err, tt.wantErr)
	}
}

// TestAppLifecycle runs configs as Caddy does: the app is loaded by the
// first alias provider, maps each policy to the provider of its issuer
// (found through the module lineage, the global dns provider included),
// gates cert_obtaining through the events app, and on a reload the new
// config's app takes over while the old one stops.
func TestAppLifecycle(t *testing.T) {
	srv := dnstest.Start(t,
		dnstest.Zone{Name: "validation.example.org", Updatable: true},
		dnstest.Zone{Name: "example.com", Records: `
_acme-challenge.shop CNAME _acme-challenge.shop.example.com.validation.example.org.
`})
	key := srv.Key()
	provider := func(alias string) map[string]any {
		return map[string]any{"name": "alias", "alias": alias, "zones": []string{"validation.example.org"},
			"resolvers": []string{srv.Addr()}, "authoritative_wait": -1,
			"provider": map[string]any{"name": "rfc2136", "key_name": key.Name, "key_alg": key.Algorithm, "key": key.Secret, "server": srv.Addr()}}
	}
	acme := func(p map[string]any) map[string]any {
		dns := map[string]any{}
		if p != nil {
			dns["provider"] = p
		}
		return map[string]any{"module": "acme", "ca": "https://127.0.0.1:1/dir", "challenges": map[string]any{"dns": dns}}
	}
	config := func(policies []map[string]any, global map[string]any, app string) []byte {
		tls := map[string]any{"automation": map[string]any{"policies": policies,
			"on_demand": map[string]any{"permission": map[string]any{"module": "alias"}}}}
		if global != nil {
			tls["dns"] = global
		}
		// The internal issuer's CA does not try to install its root in
		// the system's trust store (a second, and sudo, on every load).
		apps := map[string]any{"tls": tls, "pki": map[string]any{"certificate_authorities": map[string]any{
			"local": map[string]any{"install_trust": false}}}}
		if app != "" {
			apps["dns_alias"] = json.RawMessage(app)
		}
		cfg, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true},
			"storage": map[string]any{"module": "file_system", "root": t.TempDir()}, "apps": apps})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Cleanup(func() { caddy.Stop() })

	first := config([]map[string]any{
		{"subjects": []string{"shop.example.com"}, "issuers": []any{acme(provider("_acme-challenge.{domain}.validation.example.org"))}},
		{"subjects": []string{"*.internal.example.com"}, "issuers": []any{map[string]any{"module": "internal"}}},
		{"on_demand": true, "issuers": []any{acme(provider("_acme-challenge.validation.example.org"))}},
	}, nil, `{"sweep_after":"1m","sweep_interval":"1h"}`)
	if err := caddy.Load(first, true); err != nil {
		t.Fatalf("loading: %v", err)
	}
	app := runningAppOf(t)
	if app.SweepAfter != caddy.Duration(time.Minute) {
		t.Errorf("sweep_after = %v, want the configured 1m", app.SweepAfter)
	}
	pols := app.policyMap()
	if len(pols) != 3 || pols[0].provider == nil || pols[1].provider != nil || pols[2].provider == nil || !pols[2].onDemand || pols[0].provider == pols[2].provider {
		t.Fatalf("policy map %+v", pols)
	}
	for name, want := range map[string]int{"shop.example.com": 0, "x.internal.example.com": 1, "other.example.net": 2} {
		if pol, _ := app.policyFor(name); pol == nil || pol.index != want {
			t.Errorf("policyFor(%s) = %+v, want policy %d", name, pol, want)
		}
	}
	if got := pols[0].provider.writer.Mapper.Default.Alias.String(); got != "_acme-challenge.{domain}.validation.example.org" {
		t.Errorf("policy 0 has the provider with alias %s", got)
	}

	// cert_obtaining, as the tls app emits it, reaches the gate.
	events, err := caddy.ActiveContext().App("events")
	if err != nil {
		t.Fatal(err)
	}
	emit := func(name string) error {
		return events.(*caddyevents.App).Emit(caddy.ActiveContext(), "cert_obtaining", map[string]any{"identifier": name}).Aborted
	}
	if err := emit("missing.example.com"); !errors.Is(err, caddy.ErrEventAborted) || !strings.Contains(err.Error(), "no CNAME record") {
		t.Errorf("cert_obtaining for a name without delegation: %v, want aborted", err)
	}
	if err := emit("x.internal.example.com"); err != nil {
		t.Errorf("cert_obtaining for a name of a policy without alias provider: %v", err)
	}

	// A reload: the global dns provider serves the policy whose ACME issuer
	// has a DNS challenge without a provider of its own.
	second := config([]map[string]any{
		{"subjects": []string{"shop.example.com"}, "issuers": []any{acme(nil)}},
	}, provider("_acme-challenge.{domain}.validation.example.org"), "")
	if err := caddy.Load(second, true); err != nil {
		t.Fatalf("reloading: %v", err)
	}
	select {
	case <-app.stopped:
	default:
		t.Error("the old config's app did not stop its journal loop")
	}
	next := runningAppOf(t)
	if next == app {
		t.Fatal("the reloaded config kept the old app")
	}
	if pols := next.policyMap(); len(pols) != 1 || pols[0].provider == nil || next.SweepAfter != caddy.Duration(defaultSweepAfter) {
		t.Errorf("after the reload: policy map %+v, sweep_after %v", pols, next.SweepAfter)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next.stopped:
	default:
		t.Error("Stop did not stop the app's journal loop")
	}
}

// TestFastPath: an alias provider inside an ACME issuer with its
// authoritative wait on switches certmagic's redundant propagation check
// off and takes over its wait at shared alias names, unless the issuer sets
// propagation_timeout or propagation_delay or resolvers other than the
// provider's (certmagic's check finds the authoritative servers through
// them), or the wait is off. An explicit
// -1 gets the shared-name wait too. The global dns provider, set up apart
// from the issuers, leaves their settings alone.
func TestFastPath(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{Name: "validation.example.org", Updatable: true})
	key := srv.Key()
	aliasProvider := func(wait any) map[string]any {
		p := map[string]any{"name": "alias", "alias": "_acme-challenge.{domain}.validation.example.org", "zones": []string{"validation.example.org"},
			"resolvers": []string{srv.Addr()},
			"provider":  map[string]any{"name": "rfc2136", "key_name": key.Name, "key_alg": key.Algorithm, "key": key.Secret, "server": srv.Addr()}}
		if wait != nil {
			p["authoritative_wait"] = wait
		}
		return p
	}
	policy := func(subject string, dns map[string]any) map[string]any {
		return map[string]any{"subjects": []string{subject}, "issuers": []any{map[string]any{"module": "acme", "ca": "https://127.0.0.1:1/dir", "challenges": map[string]any{"dns": dns}}}}
	}
	tests := []struct {
		subject       string
		dns           map[string]any
		wantTimeout   time.Duration
		wantRecursive time.Duration
	}{
		{"default.example.com", map[string]any{"provider": aliasProvider(nil)}, -1, certmagicCheckTimeout},
		{"timeout.example.com", map[string]any{"provider": aliasProvider(nil), "propagation_timeout": "2m"}, 2 * time.Minute, 0},
		{"delay.example.com", map[string]any{"provider": aliasProvider(nil), "propagation_delay": "5s"}, 0, 0},
		{"off.example.com", map[string]any{"provider": aliasProvider(nil), "propagation_timeout": -1}, -1, certmagicCheckTimeout},
		{"nowait.example.com", map[string]any{"provider": aliasProvider(-1)}, 0, 0},
		{"resolvers.example.com", map[string]any{"provider": aliasProvider(nil), "resolvers": []string{"127.0.0.1"}}, 0, 0},
		{"resolvers-off.example.com", map[string]any{"provider": aliasProvider(nil), "resolvers": []string{"127.0.0.1"}, "propagation_timeout": -1}, -1, certmagicCheckTimeout},
		{"same-resolvers.example.com", map[string]any{"provider": aliasProvider(nil), "resolvers": []string{srv.Addr()}}, -1, certmagicCheckTimeout},
		{"global.example.com", map[string]any{}, 0, 0}, // the tls app's dns provider
	}
	var policies []any
	for _, tt := range tests {
		policies = append(policies, policy(tt.subject, tt.dns))
	}
	cfg, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true},
		"storage": map[string]any{"module": "file_system", "root": t.TempDir()},
		"apps":    map[string]any{"tls": map[string]any{"dns": aliasProvider(nil), "automation": map[string]any{"policies": policies}}}})
	if err != nil {
		t.Fatal(err)
	}
	pols := loadConfig(t, cfg).policyMap()
	if len(pols) != len(tests) {
		t.Fatalf("%d policies, want %d", len(pols), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			pol := pols[i]
			if got := time.Duration(pol.issuer.Challenges.DNS.PropagationTimeout); got != tt.wantTimeout {
				t.Errorf("propagation_timeout %v, want %v", got, tt.wantTimeout)
			}
			if pol.provider == nil {
				t.Fatal("no alias provider found for the policy")
			}
			if got := pol.provider.writer.RecursiveWait; got != tt.wantRecursive {
				t.Errorf("the provider's wait at shared names is %v, want %v", got, tt.wantRecursive)
			}
		})
	}
}

// TestPolicyProviders: an ACME issuer that names a DNS provider of its own
// other than the alias provider is solved by that provider, not by a
// global alias provider, so neither the running app's policy map nor the
// check command's gives its names to the alias provider (and the gate
// leaves them alone); an issuer that names none uses the global one.
func TestPolicyProviders(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{Name: "validation.example.org", Updatable: true})
	key := srv.Key()
	rfc2136 := map[string]any{"name": "rfc2136", "key_name": key.Name, "key_alg": key.Algorithm, "key": key.Secret, "server": srv.Addr()}
	aliasProvider := func(alias string) map[string]any {
		return map[string]any{"name": "alias", "alias": alias, "zones": []string{"validation.example.org"}, "resolvers": []string{srv.Addr()}, "provider": rfc2136}
	}
	issuerPolicy := func(subject string, dns map[string]any) map[string]any {
		return map[string]any{"subjects": []string{subject}, "issuers": []any{map[string]any{"module": "acme", "ca": "https://127.0.0.1:1/dir", "challenges": map[string]any{"dns": dns}}}}
	}
	const globalAlias, ownAlias = "_acme-challenge.{domain}.validation.example.org", "_acme-challenge.own.validation.example.org"
	tests := []struct {
		subject   string
		dns       map[string]any
		wantAlias string // "": no alias provider obtains it
	}{
		{"other.example.com", map[string]any{"provider": rfc2136}, ""},
		{"global.example.com", map[string]any{}, globalAlias},
		{"own.example.com", map[string]any{"provider": aliasProvider(ownAlias)}, ownAlias},
	}
	var policies []any
	for _, tt := range tests {
		policies = append(policies, issuerPolicy(tt.subject, tt.dns))
	}
	cfg, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true},
		"storage": map[string]any{"module": "file_system", "root": t.TempDir()},
		"apps":    map[string]any{"tls": map[string]any{"dns": aliasProvider(globalAlias), "automation": map[string]any{"policies": policies}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := standalone(t)
	cliPols, _, err := configPolicies(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	app := loadConfig(t, cfg)
	for name, pols := range map[string][]policy{"running app": app.policyMap(), "check command": cliPols} {
		if len(pols) != len(tests) {
			t.Fatalf("%s: %d policies, want %d", name, len(pols), len(tests))
		}
		for i, tt := range tests {
			got := ""
			if p := pols[i].provider; p != nil {
				got = p.Alias
			}
			if got != tt.wantAlias {
				t.Errorf("%s: %s is obtained with the alias %q, want %q", name, tt.subject, got, tt.wantAlias)
			}
		}
	}
	e, err := caddy.NewEvent(caddy.ActiveContext(), "cert_obtaining", map[string]any{"identifier": "other.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := (gate{app}).Handle(context.Background(), e); err != nil {
		t.Errorf("the gate judged a name another DNS provider solves: %v", err)
	}
}
