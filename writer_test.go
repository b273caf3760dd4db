package alias

import (
	"fmt"
	"slices"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestProvisionWiresWriter: a provisioned alias provider's writer comes
// wired to its app (the journal, the metrics as its observer, and its
// resolver's queries, an isolated view's included, counted in the
// metrics) before the app registers the provider. register used to wire
// the writer it was given, setting its journal before a guard against a
// nil writer. Without storage (the check command) the journal is a nil
// interface, not a nil *storageJournal inside one, which the writer would
// call.
func TestProvisionWiresWriter(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{Name: "example.com", Records: "_acme-challenge.shop CNAME _acme-challenge.shop.example.com.validation.example.org."})
	cfg := fmt.Sprintf(`{"alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"],"resolvers":[%q],
		"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":%[1]q}}`, srv.Addr())
	for _, tc := range []struct {
		name    string
		journal *storageJournal
	}{
		{"with storage", &storageJournal{storage: &certmagic.FileStorage{Path: t.TempDir()}}},
		{"without storage (the check command)", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, app := standalone(t)
			app.journal = tc.journal
			mod, err := ctx.LoadModuleByID("dns.providers.alias", []byte(cfg))
			if err != nil {
				t.Fatalf("provisioning dns.providers.alias: %v", err)
			}
			p := mod.(*Provider)
			w := p.writer
			var want solver.Journal
			if tc.journal != nil {
				want = tc.journal
			}
			if w.Journal != want {
				t.Errorf("writer's journal = %#v, want %#v", w.Journal, want)
			}
			if w.Observer != solver.Observer(app.metrics) {
				t.Errorf("writer's observer = %#v, want the app's metrics", w.Observer)
			}
			if !slices.Contains(app.modules.providers(), p) {
				t.Errorf("the provider is not registered with its app")
			}
			recursive := app.metrics.dnsQueries.WithLabelValues("recursive")
			for i, r := range []*solver.Resolver{w.Mapper.Resolver, w.Mapper.Resolver.Isolated()} {
				if _, err := r.Query(ctx, fmt.Sprintf("_acme-challenge.n%d.example.com", i), dns.TypeCNAME); err != nil {
					t.Fatal(err)
				}
				if n := testutil.ToFloat64(recursive); n != float64(i+1) {
					t.Errorf("%d recursive queries counted after %d sent", int(n), i+1)
				}
			}
		})
	}
}
