package alias

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
)

// TestCheckTable reads a config as `caddy dns-alias check` does: the
// domains of its alias policy from the site addresses, a row for every
// domain given, one no alias policy obtains included (marked, not an abort),
// the resolver that answered, and a hint when it resolved nothing.
func TestCheckTable(t *testing.T) {
	srv := dnstest.Start(t,
		dnstest.Zone{Name: "validation.example.org", Updatable: true},
		dnstest.Zone{Name: "example.com", Records: `
_acme-challenge.shop CNAME _acme-challenge.shop.example.com.validation.example.org.
`})
	cfg, err := adapt(t, fmt.Sprintf(`{
	admin off
}
shop.example.com, missing.example.com, x.nosuch.test {
	tls {
		dns alias _acme-challenge.{domain}.validation.example.org {
			%s
			zone validation.example.org
			resolvers %s
		}
	}
	respond "alias"
}
other.example.net {
	respond "plain"
}
`, rfc2136Block, srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, app := standalone(t)
	pols, hosts, err := configPolicies(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	app.setPolicies(pols)
	if got := configDomains(pols, hosts); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"missing.example.com", "shop.example.com", "x.nosuch.test"}) {
		t.Errorf("the config's alias domains: %v (hosts %v)", got, hosts)
	}

	var out strings.Builder
	failed, err := checkAll(ctx, app, &out, []string{"shop.example.com", "missing.example.com", "other.example.net", "x.nosuch.test"}, false)
	if err != nil {
		t.Fatal(err)
	}
	table := out.String()
	t.Logf("\n%s", table)
	// shop.example.com's verdict is unknown: the test's nameserver has no
	// address on port 53 to ask.
	if !slices.Equal(failed, []string{"shop.example.com", "missing.example.com", "other.example.net", "x.nosuch.test"}) {
		t.Errorf("failed %v", failed)
	}
	for _, want := range []string{
		"DOMAIN               MODE      RESULT   RESOLVER",
		"shop.example.com     template  UNKNOWN  " + srv.Addr(),
		"missing.example.com  template  FAIL",
		"  no_delegation: _acme-challenge.missing.example.com has no CNAME record",
		"  fix: _acme-challenge.missing.example.com. 300 IN CNAME _acme-challenge.missing.example.com.validation.example.org.",
		"other.example.net    -         FAIL     -                _acme-challenge.other.example.net (not checked)",
		"  no_alias_policy: other.example.net falls to Caddy's default automation policy, which uses no dns.providers.alias",
		"  hint: the resolver " + srv.Addr() + " answered nothing for these zones",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}
