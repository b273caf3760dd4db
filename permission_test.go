package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/internal/configwalk"
	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// onDemandPermission returns tls.automation.on_demand.permission of an
// adapted config, or nil.
func onDemandPermission(t *testing.T, adapted []byte) map[string]any {
	t.Helper()
	var cfg struct {
		Apps struct {
			TLS struct {
				Automation struct {
					OnDemand struct {
						Permission map[string]any `json:"permission"`
					} `json:"on_demand"`
				} `json:"automation"`
			} `json:"tls"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatalf("adapted config: %v\n%s", err, adapted)
	}
	return cfg.Apps.TLS.Automation.OnDemand.Permission
}

func TestPermissionCaddyfileAdapt(t *testing.T) {
	site := `
https:// {
	tls {
		on_demand
		dns alias {
			` + rfc2136Block + `
			zone validation.example.org
			alias _acme-challenge.{domain}.validation.example.org
		}
	}
	respond "ok"
}`
	tests := []struct {
		name       string
		permission string // the on_demand_tls block's body
		want       string // tls.automation.on_demand.permission
	}{
		{
			name:       "bare",
			permission: "permission alias",
			want:       `{"module":"alias"}`,
		},
		{
			name:       "empty block",
			permission: "permission alias {\n\t\t}",
			want:       `{"module":"alias"}`,
		},
		{
			name: "every option",
			permission: `permission alias {
			negative_ttl 30s
			max_ttl 2m
			min_ttl 10s
			cache_size 500
			max_checks 16
			max_checks_per_address 2
			max_checks_per_network 8
			domain_rate 120
			ask http://localhost:9123/customers
		}`,
			want: `{"module":"alias","negative_ttl":30000000000,"max_ttl":120000000000,"min_ttl":10000000000,"cache_size":500,"max_checks":16,"max_checks_per_address":2,"max_checks_per_network":8,"domain_rate":120,"permission":{"module":"http","endpoint":"http://localhost:9123/customers"}}`,
		},
		{
			name:       "per-client bounds off",
			permission: "permission alias {\n\t\t\tmax_checks_per_address -1\n\t\t\tmax_checks_per_network -1\n\t\t}",
			want:       `{"module":"alias","max_checks_per_address":-1,"max_checks_per_network":-1}`,
		},
		{
			name:       "domain_rate off",
			permission: "permission alias {\n\t\t\tdomain_rate -1\n\t\t}",
			want:       `{"module":"alias","domain_rate":-1}`,
		},
		{
			name:       "day durations and placeholders",
			permission: "permission alias {\n\t\t\tmax_ttl 1d\n\t\t\task {env.ASK_URL}\n\t\t}",
			want:       `{"module":"alias","max_ttl":86400000000000,"permission":{"module":"http","endpoint":"{env.ASK_URL}"}}`,
		},
		{
			name:       "a nested permission module",
			permission: "permission alias {\n\t\t\tpermission http http://localhost:9123/customers\n\t\t}",
			want:       `{"module":"alias","permission":{"module":"http","endpoint":"http://localhost:9123/customers"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := adapt(t, "{\n\ton_demand_tls {\n\t\t"+tt.permission+"\n\t}\n}\n"+site)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			if got := onDemandPermission(t, out); !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(got)
				t.Errorf("on_demand.permission:\n got %s\nwant %s\nadapted: %s", g, tt.want, out)
			}
			// The site's policy is on-demand and solves with the alias
			// provider.
			if !strings.Contains(string(out), `"on_demand":true`) {
				t.Errorf("no on-demand automation policy in %s", out)
			}
			var cfg any
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if n := len(configwalk.AliasProviders(cfg)); n != 1 {
				t.Errorf("%d alias providers in the adapted config, want 1: %s", n, out)
			}
		})
	}
}

func TestPermissionCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"argument after the module name", "permission alias yes", "wrong argument count"},
		{"unknown subdirective", "permission alias {\n bogus 1\n }", "unrecognized subdirective 'bogus'"},
		{"unknown subdirective without argument", "permission alias {\n bogus\n }", "unrecognized subdirective 'bogus'"},
		{"negative_ttl without value", "permission alias {\n negative_ttl\n }", "wrong argument count"},
		{"max_ttl with two values", "permission alias {\n max_ttl 1m 2m\n }", "wrong argument count"},
		{"negative_ttl not a duration", "permission alias {\n negative_ttl soon\n }", "negative_ttl"},
		{"max_ttl not a duration", "permission alias {\n max_ttl 5\n }", "max_ttl"},
		{"cache_size not a number", "permission alias {\n cache_size lots\n }", "cache_size"},
		{"max_checks not a number", "permission alias {\n max_checks many\n }", "max_checks"},
		{"domain_rate not a number", "permission alias {\n domain_rate fast\n }", "domain_rate"},
		{"max_checks_per_address not a number", "permission alias {\n max_checks_per_address few\n }", "max_checks_per_address"},
		{"max_checks_per_network without value", "permission alias {\n max_checks_per_network\n }", "wrong argument count"},
		{"min_ttl not a duration", "permission alias {\n min_ttl 5\n }", "min_ttl"},
		{"ask without url", "permission alias {\n ask\n }", "wrong argument count"},
		{"with on_demand_tls ask", "ask http://localhost/\n permission alias", "already specified"},
		{"ask and permission", "permission alias {\n ask http://a/\n permission http http://b/\n }", "only one nested permission module"},
		{"unknown nested module", "permission alias {\n permission nosuch\n }", "nosuch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adapt(t, "{\n\ton_demand_tls {\n"+tt.body+"\n\t}\n}\nexample.com\n")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestPermissionValidate provisions the permission module the way `caddy
// validate` does: negative values fail with the field named.
func TestPermissionValidate(t *testing.T) {
	tests := []struct {
		name       string
		permission string // the permission object's fields after "module"
		wantErr    string // "" for a valid config
	}{
		{"defaults", ``, ""},
		{"every option", `,"negative_ttl":"30s","max_ttl":"2m","cache_size":500,"permission":{"module":"http","endpoint":"http://localhost:9123/customers"}`, ""},
		{"nested in itself", `,"permission":{"module":"alias"}`, "permission: tls.permission.alias inside tls.permission.alias"},
		{"ask is no field", `,"ask":"http://localhost:9123/customers"`, "unknown field"},
		{"zero values mean defaults", `,"negative_ttl":0,"max_ttl":0,"cache_size":0`, ""},
		{"negative negative_ttl", `,"negative_ttl":"-1s"`, "negative_ttl: must not be negative"},
		{"negative max_ttl", `,"max_ttl":"-5m"`, "max_ttl: must not be negative"},
		{"negative cache_size", `,"cache_size":-1`, "cache_size: must not be negative"},
		{"negative min_ttl", `,"min_ttl":"-1s"`, "min_ttl: must not be negative"},
		{"min_ttl above max_ttl", `,"min_ttl":"10m","max_ttl":"5m"`, "min_ttl: 10m0s is longer than max_ttl 5m0s"},
		{"negative max_checks", `,"max_checks":-3`, "max_checks: must not be negative"},
		{"domain_rate below -1", `,"domain_rate":-2`, "domain_rate: must be positive, or -1 for no limit"},
		{"domain_rate off", `,"domain_rate":-1,"max_checks":8,"min_ttl":"1m"`, ""},
		{"per-client bounds", `,"max_checks_per_address":2,"max_checks_per_network":-1`, ""},
		{"max_checks_per_address below -1", `,"max_checks_per_address":-2`, "max_checks_per_address: must be positive, or -1 for no limit"},
		{"max_checks_per_network below -1", `,"max_checks_per_network":-5`, "max_checks_per_network: must be positive, or -1 for no limit"},
		{"unparsable duration", `,"max_ttl":"soon"`, `tls.permission.alias: time: invalid duration "soon"`},
		{"unknown field", `,"ttl":"1m"`, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := `{"admin":{"disabled":true},"apps":{"tls":{"automation":{
				"on_demand":{"permission":{"module":"alias"` + tt.permission + `}},
				"policies":[{"on_demand":true,"issuers":[{"module":"acme","challenges":{"dns":{"provider":{"name":"alias",
					"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"},
					"alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"]}}}}]}]}}}}`
			checkErr(t, validate(cfg), tt.wantErr)
		})
	}
}

// permLab is an in-process DNS server with production zones and the alias
// zone, an alias provider (template mode) registered as Caddy registers it,
// and the permission module.
type permLab struct {
	srv  *dnstest.Server
	perm *Permission
}

func startPermLab(t *testing.T, permission string) *permLab {
	t.Helper()
	srv := dnstest.Start(t,
		dnstest.Zone{Name: "validation.example.org", Updatable: true},
		dnstest.Zone{Name: "notours.example"},
		dnstest.Zone{Name: "example.com", Records: `
_acme-challenge.shop 30 CNAME _acme-challenge.shop.example.com.validation.example.org.
_acme-challenge.elsewhere CNAME _acme-challenge.elsewhere.example.com.notours.example.
*.wild CNAME _acme-challenge.x.validation.example.org.
`},
	)
	key := srv.Key()
	provider, err := json.Marshal(map[string]any{
		"provider":           map[string]any{"name": "rfc2136", "key_name": key.Name, "key_alg": key.Algorithm, "key": key.Secret, "server": srv.Addr()},
		"resolvers":          []string{srv.Addr()},
		"zones":              []string{"validation.example.org"},
		"alias":              "_acme-challenge.{domain}.validation.example.org",
		"authoritative_wait": -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, app := standalone(t)
	prov, err := ctx.LoadModuleByID("dns.providers.alias", provider)
	if err != nil {
		t.Fatalf("provisioning dns.providers.alias: %v", err)
	}
	app.setPolicies([]policy{{onDemand: true, provider: prov.(*Provider)}})
	mod, err := ctx.LoadModuleByID("tls.permission.alias", json.RawMessage(permission))
	if err != nil {
		t.Fatalf("provisioning tls.permission.alias: %v", err)
	}
	return &permLab{srv: srv, perm: mod.(*Permission)}
}

// queries counts the queries the server received for name (any type).
func (l *permLab) queries(name string) int {
	n := 0
	for _, q := range l.srv.Queries() {
		if q.Name == name {
			n++
		}
	}
	return n
}

func TestPermissionCertificateAllowed(t *testing.T) {
	l := startPermLab(t, `{"negative_ttl":"1m"}`)
	ctx := context.Background()
	tests := []struct {
		name    string
		wantErr []string // "" for admitted
	}{
		{"shop.example.com", nil},
		{"Shop.Example.COM", nil},
		{"missing.example.com", []string{"_acme-challenge.missing.example.com has no CNAME record",
			"_acme-challenge.missing.example.com. 300 IN CNAME _acme-challenge.missing.example.com.validation.example.org."}},
		{"elsewhere.example.com", []string{"ends at _acme-challenge.elsewhere.example.com.notours.example, not at the alias _acme-challenge.elsewhere.example.com.validation.example.org",
			"_acme-challenge.elsewhere.example.com. 300 IN CNAME _acme-challenge.elsewhere.example.com.validation.example.org."}},
		{"shop.wild.example.com", []string{"wildcard", "_acme-challenge.shop.wild.example.com. 300 IN CNAME _acme-challenge.shop.wild.example.com.validation.example.org."}},
		{"nosuchzone.test", []string{"has no CNAME record"}},
		// shop.example.com is delegated, but that proves control of one
		// name (certmagic refuses * in SNI today; this stays so).
		{"*.shop.example.com", []string{"*.shop.example.com: certificate not allowed by permission module: a wildcard name is never admitted"}},
		{"x.*.example.com", []string{"a wildcard name is never admitted"}},
		// A client's SNI reaches the logs escaped.
		{"\x1b[2Jx.example.com", []string{`\x1b[2Jx.example.com: certificate not allowed`, `is not a domain a certificate can be obtained for`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.perm.CertificateAllowed(ctx, tt.name)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("delegated name refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("admitted")
			}
			if strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("refusal %q carries a raw control character", err)
			}
			if !errors.Is(err, caddytls.ErrPermissionDenied) {
				t.Errorf("refusal %v does not wrap caddytls.ErrPermissionDenied", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q lacks %q", err, want)
				}
			}
		})
	}

	// Every name above was checked once: the second round is answered from
	// the cache, the admission of shop.example.com included (its CNAME's
	// TTL is 30 s).
	before := len(l.srv.Queries())
	for range 20 {
		for _, tt := range tests {
			if err := l.perm.CertificateAllowed(ctx, tt.name); (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("cached answer for %s changed: %v", tt.name, err)
			}
		}
	}
	if n := len(l.srv.Queries()) - before; n != 0 {
		t.Errorf("answering from the cache sent %d DNS queries, want 0", n)
	}
	if n := l.queries("_acme-challenge.missing.example.com"); n != 1 {
		t.Errorf("_acme-challenge.missing.example.com was queried %d times for 21 rounds of handshakes, want 1", n)
	}
}

func TestPermissionFloodSharesChecks(t *testing.T) {
	l := startPermLab(t, `{"domain_rate":-1}`)
	const names, rounds = 50, 4
	errs := make(chan error, names*rounds)
	for range rounds {
		for i := range names {
			go func() {
				errs <- l.perm.CertificateAllowed(context.Background(), fmt.Sprintf("unknown%02d.example.com", i))
			}()
		}
	}
	for range names * rounds {
		if err := <-errs; err == nil {
			t.Fatal("an unknown name was admitted")
		}
	}
	n := 0
	for _, q := range l.srv.Queries() {
		if strings.HasPrefix(q.Name, "_acme-challenge.unknown") {
			n++
		}
	}
	if n != names {
		t.Errorf("%d handshakes for %d unknown names sent %d queries, want %d (one check per name)", names*rounds, names, n, names)
	}
	if got := l.perm.admission.Len(); got != names {
		t.Errorf("cache holds %d refusals, want %d", got, names)
	}
}

func TestPermissionAsk(t *testing.T) {
	var asked atomic.Int32
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Query().Get("domain") != "shop.example.com" {
			http.Error(w, "not a customer", http.StatusNotFound)
		}
	}))
	defer ask.Close()
	l := startPermLab(t, `{"permission":{"module":"http","endpoint":"`+ask.URL+`/customers"}}`)
	l.srv.Add("_acme-challenge.former.example.com. 30 IN CNAME _acme-challenge.former.example.com.validation.example.org.")

	if err := l.perm.CertificateAllowed(context.Background(), "shop.example.com"); err != nil {
		t.Errorf("delegated customer refused: %v", err)
	}
	// Delegated, but no longer a customer: the ask endpoint says no.
	err := l.perm.CertificateAllowed(context.Background(), "former.example.com")
	if err == nil || !errors.Is(err, caddytls.ErrPermissionDenied) {
		t.Errorf("delegated non-customer: %v, want a refusal by the ask endpoint", err)
	}
	// Not delegated: refused before the endpoint is asked.
	before := asked.Load()
	if err := l.perm.CertificateAllowed(context.Background(), "missing.example.com"); err == nil {
		t.Error("undelegated name admitted")
	}
	if asked.Load() != before {
		t.Error("the ask endpoint was asked about a name whose delegation is missing")
	}
}

func TestPermissionCacheExpiry(t *testing.T) {
	l := startPermLab(t, `{"negative_ttl":"1s","max_ttl":"1m","min_ttl":"1s"}`)
	// The admission cache and the resolver's cache expire on the bubble's
	// clock, so the CNAME's TTL passes at once. The lab, started outside
	// the bubble, answers over the network as ever.
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		// Revocation: the customer removes the CNAME (TTL 1 s). The admission
		// is remembered for the CNAME's TTL (max_ttl is longer), then the name
		// is refused with the record to publish.
		const cname = "_acme-challenge.late.example.com. 1 IN CNAME _acme-challenge.late.example.com.validation.example.org."
		l.srv.Add(cname)
		if err := l.perm.CertificateAllowed(ctx, "late.example.com"); err != nil {
			t.Fatal(err)
		}
		l.srv.Remove(cname)
		if err := l.perm.CertificateAllowed(ctx, "late.example.com"); err != nil {
			t.Fatalf("within the CNAME's TTL: %v, want the cached admission", err)
		}
		time.Sleep(1100 * time.Millisecond) // the bubble's clock: past the CNAME's 1 s TTL
		err := l.perm.CertificateAllowed(ctx, "late.example.com")
		if err == nil || !strings.Contains(err.Error(), "has no CNAME record") || !strings.Contains(err.Error(), cname[:len(cname)-len("1 IN CNAME _acme-challenge.late.example.com.validation.example.org.")]) {
			t.Fatalf("after the CNAME's TTL: %v, want a refusal naming the missing record", err)
		}
	})
}

// TestPermissionZeroTTL: a CNAME with TTL 0 does not turn the cache off:
// the admission is remembered for min_ttl (default 30 s), and 20
// handshakes cost one check.
func TestPermissionZeroTTL(t *testing.T) {
	l := startPermLab(t, `{}`)
	l.srv.Add("_acme-challenge.zero.example.com. 0 IN CNAME _acme-challenge.zero.example.com.validation.example.org.")
	for range 20 {
		if err := l.perm.CertificateAllowed(context.Background(), "zero.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.queries("_acme-challenge.zero.example.com"); n != 1 {
		t.Errorf("20 handshakes for a name whose CNAME has TTL 0 asked for its chain %d times, want 1", n)
	}
}

// TestPermissionAsksNoNameserver: a handshake for a fresh delegated name
// asks the resolvers about its chain and nothing else: no question goes
// directly to a nameserver of the production zone (whose owner picks its
// addresses), and no CAA is looked up. The gate does both before the order.
func TestPermissionAsksNoNameserver(t *testing.T) {
	l := startPermLab(t, `{}`)
	if err := l.perm.CertificateAllowed(context.Background(), "shop.example.com"); err != nil {
		t.Fatal(err)
	}
	for _, q := range l.srv.Queries() {
		if q.Direct || q.Type == "CAA" || q.Type == "NS" {
			t.Errorf("the permission check asked %s %s (direct: %v)", q.Type, q.Name, q.Direct)
		}
	}
}

// TestPermissionOverload: with every check slot taken, handshakes for other
// names are refused at once with ErrPermissionDenied, counted, and logged
// once per refusallog.Tick with the count of the lines held back; the
// refusal is not remembered, so the next handshake after the load passed is
// checked and admitted.
func TestPermissionOverload(t *testing.T) {
	l := startPermLab(t, `{"max_checks":1}`)
	core, logs := observer.New(zap.WarnLevel)
	l.perm.refusals = refusallog.New(zap.New(core))
	release := make(chan struct{})
	check := l.perm.admission.Check
	l.perm.admission.Check = func(ctx context.Context, name string) (time.Duration, error) {
		if name == "stuck.example.com" {
			<-release
		}
		return check(ctx, name)
	}
	stuck := make(chan error)
	go func() { stuck <- l.perm.CertificateAllowed(context.Background(), "stuck.example.com") }()
	for l.perm.admission.Checking() == 0 {
		runtime.Gosched()
	}
	before := testutil.ToFloat64(l.perm.app.metrics.permissionOverload)
	for range 100 {
		err := l.perm.CertificateAllowed(context.Background(), "shop.example.com")
		if !errors.Is(err, caddytls.ErrPermissionDenied) || !errors.Is(err, solver.ErrOverload) {
			t.Fatalf("handshake with every slot taken: %v, want a refusal for load", err)
		}
	}
	if n := testutil.ToFloat64(l.perm.app.metrics.permissionOverload) - before; n != 100 {
		t.Errorf("permission_overload_total grew by %v, want 100", n)
	}
	if n := logs.FilterMessageSnippet("refused for load").Len(); n != 1 {
		t.Errorf("%d log lines for 100 refusals within %s, want 1", n, refusallog.Tick)
	}
	close(release)
	<-stuck
	if err := l.perm.CertificateAllowed(context.Background(), "shop.example.com"); err != nil {
		t.Errorf("after the load passed: %v, want the name checked and admitted", err)
	}
}

// TestPermissionReadmeOnboarding: the onboarding section's Caddyfile adapts
// to the permission module and alias provider of its JSON, and the JSON
// provisions.
func TestPermissionReadmeOnboarding(t *testing.T) {
	caddyfile, jsonText := readmeBlocks(t, "# On-demand TLS")
	// reverse_proxy is not linked into this package's tests; the TLS part
	// is what is compared.
	caddyfile = regexp.MustCompile(`(?m)^\s*reverse_proxy .*$`).ReplaceAllString(caddyfile, "\trespond \"ok\"")
	out, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapting README's onboarding Caddyfile: %v", err)
	}
	var readme struct {
		Automation struct {
			OnDemand struct {
				Permission json.RawMessage `json:"permission"`
			} `json:"on_demand"`
			Policies []struct {
				OnDemand bool `json:"on_demand"`
			} `json:"policies"`
		} `json:"automation"`
	}
	if err := json.Unmarshal([]byte(jsonText), &readme); err != nil {
		t.Fatalf("README's onboarding JSON: %v\n%s", err, jsonText)
	}

	// The permission module: compare as the module reads it (durations are
	// nanoseconds in adapted JSON and strings in README's).
	permission := func(raw []byte) Permission {
		t.Helper()
		var p Permission
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("permission %s: %v", raw, err)
		}
		return p
	}
	adaptedPerm, _ := json.Marshal(onDemandPermission(t, out))
	if got, want := permission(adaptedPerm), permission(readme.Automation.OnDemand.Permission); !reflect.DeepEqual(got, want) {
		t.Errorf("permission: the Caddyfile makes %+v, README's JSON says %+v", got, want)
	}
	if !strings.Contains(string(adaptedPerm), `"module":"alias"`) {
		t.Errorf("adapted permission is not the alias module: %s", adaptedPerm)
	}
	if len(readme.Automation.Policies) != 1 || !readme.Automation.Policies[0].OnDemand || !strings.Contains(string(out), `"on_demand":true`) {
		t.Errorf("README's JSON or the adapted Caddyfile lacks an on-demand policy:\n%s", out)
	}

	// The alias provider: every one in the adapted config (one per default
	// issuer) is README's.
	var adaptedCfg, readmeCfg any
	if err := json.Unmarshal(out, &adaptedCfg); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(jsonText), &readmeCfg); err != nil {
		t.Fatal(err)
	}
	want := configwalk.AliasProviders(readmeCfg)
	got := configwalk.AliasProviders(adaptedCfg)
	if len(got) == 0 || len(got) != len(want) {
		t.Fatalf("the adapted onboarding Caddyfile has %d alias providers, README's JSON %d:\n%s", len(got), len(want), out)
	}
	for i, g := range got {
		if !reflect.DeepEqual(g, want[i]) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(want[i])
			t.Errorf("alias provider: the Caddyfile makes %s, README's JSON says %s", gj, wj)
		}
	}

	// Both provision.
	t.Setenv("TSIG_SECRET", "ZHVtbXktdHNpZy1zZWNyZXQtZm9yLXZhbGlkYXRl")
	for _, cfg := range []string{`{"apps":{"tls":` + jsonText + `}}`, string(out)} {
		if err := validate(cfg); err != nil {
			t.Errorf("README's onboarding config does not provision: %v", err)
		}
	}
}
