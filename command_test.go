package alias

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/solver"
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

	proposed, err := solver.ParseTemplate("_acme-challenge.{domain}.other.example.org")
	if err != nil {
		t.Fatal(err)
	}
	app.proposed = &proposed // check --alias
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
		// What it would need, were it added to the alias policy.
		"  no_alias_policy (note): added to TLS automation policy 0, other.example.net would need: _acme-challenge.other.example.net. 300 IN CNAME _acme-challenge.other.example.net.validation.example.org.",
		"  no_alias_policy (note): under the alias _acme-challenge.{domain}.other.example.org, other.example.net would need: _acme-challenge.other.example.net. 300 IN CNAME _acme-challenge.other.example.net.other.example.org.",
		"  hint: the resolver " + srv.Addr() + " answered nothing for these zones",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

// TestCheckTableEscapes: whatever a report carries from DNS reaches the
// terminal with its control bytes escaped, line by line.
func TestCheckTableEscapes(t *testing.T) {
	r := &solver.Report{Domain: "example.com", ChallengeName: "_acme-challenge.example.com", Mode: "static", Verdict: solver.VerdictBroken,
		Chain:    solver.Chain{Start: "_acme-challenge.example.com", Hops: []solver.Hop{{Target: "x\x1b]0;title\x07.example.org"}}, End: "x.example.org"},
		Findings: []solver.Finding{{Code: solver.CodeCAAForbids, Message: "CAA allows only \x1b[2J\u202e", Fatal: true}}}
	var out strings.Builder
	if err := writeTable(&out, []*solver.Report{r}); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	if strings.ContainsFunc(table, func(r rune) bool { return r != '\n' && (r < ' ' || r == 0x7f || r == '\u202e') }) {
		t.Errorf("the table carries raw control characters: %q", table)
	}
	for _, want := range []string{`x\x1b]0;title\a.example.org`, `CAA allows only \x1b[2J\u202e`} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
}

// TestCheckCommandRefusals: the check command refuses, before reading any
// config, an argument that is no domain, with the admin API's message (one
// sanitiser), and explains a missing config instead of a JSON error.
func TestCheckCommandRefusals(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./Caddyfile
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"1.2.3.4"}, `domain "1.2.3.4": an IP address has no DNS challenge`},
		{[]string{"example.com", "a b.com"}, `domain "a b.com": name "a b.com" contains ' '`},
		{[]string{"example.com:443"}, `domain "example.com:443"`},
		{nil, "no config to read: give --config with a Caddyfile or a JSON config, or run the command where ./Caddyfile is"},
		{[]string{"example.com"}, "no config to read"},
		{[]string{"--alias", "_acme-challenge.{nope}.example.org", "example.com"}, "--alias: "},
	} {
		fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
		fs.String("config", "", "")
		fs.String("adapter", "", "")
		fs.Bool("json", false, "")
		fs.String("alias", "", "")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		code, err := cmdCheck(caddycmd.Flags{FlagSet: fs})
		if code != caddy.ExitCodeFailedStartup {
			t.Errorf("%v: exit code %d", tt.args, code)
		}
		checkErr(t, err, tt.wantErr)
	}
}
