package xcaddy_test

// Delegation checks (issue 4) against the lab's real servers: the solver's
// Checker on BIND and Unbound, the `caddy dns-alias check` subcommand and
// the admin API of an xcaddy-built Caddy, and how fast a broken delegation
// fails a real challenge.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

const (
	staticAlias   = "_acme-challenge.validation.example.org"
	templateAlias = "_acme-challenge.{domain}.validation.example.org"
)

// noWriter is the inner provider of the lab checkers: a check writes
// nothing, ever.
type noWriter struct{ t *testing.T }

func (w noWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.t.Errorf("the check wrote %v in %s", recs, zone)
	return nil, errors.New("no writes")
}

func (w noWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.t.Errorf("the check deleted %v in %s", recs, zone)
	return nil, errors.New("no writes")
}

// labChecker builds the checker the plugin builds for one alias provider:
// a static alias, a template or follow mode in the lab's alias zone,
// resolving through Unbound, judging CAA for Let's Encrypt.
func labChecker(t *testing.T, mode string, maxHops int) *solver.Checker {
	t.Helper()
	l := requireLab(t)
	res, err := solver.NewResolver([]string{l.Resolver}, 0)
	if err != nil {
		t.Fatal(err)
	}
	res.PrivateNameservers = true // every lab server is on loopback
	rule := &solver.Rule{Zones: []string{aliasZone}, Writer: noWriter{t}, WriterName: "none"}
	switch mode {
	case "static", "template":
		alias := staticAlias
		if mode == "template" {
			alias = templateAlias
		}
		if rule.Alias, err = solver.ParseTemplate(alias); err != nil {
			t.Fatal(err)
		}
	case "follow":
		rule.Follow = true
	}
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	return &solver.Checker{
		Mapper: &solver.Mapper{Resolver: res, Default: rule, MaxHops: maxHops},
		Issuer: func(context.Context) solver.Issuer { return solver.Issuer{CAIdentities: []string{"letsencrypt.org"}} },
	}
}

func fatalCodes(r *solver.Report) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Fatal {
			out = append(out, f.Code)
		}
	}
	return out
}

func findingsText(r *solver.Report) string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Code+": "+f.Message)
	}
	return strings.Join(out, "\n")
}

// TestCheckLab runs the delegation check against BIND and Unbound for every
// way a delegation goes wrong, asserting the verdict, the finding, the
// cause it names and the record it suggests.
func TestCheckLab(t *testing.T) {
	l := requireLab(t)
	type scenario struct {
		name    string
		mode    string
		maxHops int
		// setup publishes what the scenario needs for the fresh label
		// and returns the domain to check.
		setup func(t *testing.T, label string) string
		fatal []string // fatal finding codes (any order); nil: passes
		// cause and fix get the checked domain and the label.
		cause func(domain, label string) []string
		fix   func(domain, label string) string
		check func(t *testing.T, rep *solver.Report, label string)
	}
	templateFix := func(d, _ string) string {
		return fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", d, d)
	}
	staticFix := func(d, _ string) string {
		return fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.validation.example.org.", d)
	}
	for _, sc := range []scenario{
		{
			name: "correct delegation", mode: "template",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t, delegation(d))
				return d
			},
			check: func(t *testing.T, rep *solver.Report, label string) {
				d := label + ".example.com"
				if want := "_acme-challenge." + d + ".validation.example.org"; rep.Chain.End != want || rep.Expected != want || len(rep.Chain.Hops) != 1 {
					t.Errorf("chain %+v, expected %q; want one hop to %s", rep.Chain, rep.Expected, want)
				}
				if rep.Zone != "example.com" {
					t.Errorf("production zone %q, want example.com", rep.Zone)
				}
				want := []solver.NameserverAnswer{{Name: "ns1.example.com", Address: l.AuthA, Target: "_acme-challenge." + d + ".validation.example.org"}}
				if !slices.Equal(rep.Nameservers, want) {
					t.Errorf("nameservers %+v, want %+v", rep.Nameservers, want)
				}
				if rep.Fix != "" || rep.Err() != nil {
					t.Errorf("a passing report has fix %q, error %v", rep.Fix, rep.Err())
				}
			},
		},
		{
			name: "missing CNAME", mode: "template",
			setup: func(t *testing.T, label string) string { return label + ".example.com" },
			fatal: []string{solver.CodeNoDelegation},
			cause: func(d, _ string) []string { return []string{"_acme-challenge." + d + " has no CNAME record"} },
			fix:   templateFix,
		},
		{
			name: "CNAME to the wrong target", mode: "template",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.validation.example.org.", d))
				return d
			},
			fatal: []string{solver.CodeWrongTarget},
			cause: func(d, _ string) []string {
				return []string{"the CNAME chain of _acme-challenge." + d + " ends at _acme-challenge.validation.example.org, not at the alias _acme-challenge." + d + ".validation.example.org"}
			},
			fix: templateFix,
		},
		{
			name: "CNAME into a zone that is no alias zone", mode: "follow",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.notours.example.", d, d))
				return d
			},
			fatal: []string{solver.CodeOutsideZones},
			cause: func(d, _ string) []string {
				return []string{"ends at _acme-challenge." + d + ".notours.example, outside the alias zones [validation.example.org]"}
			},
			fix: templateFix, // follow mode suggests the name in the first alias zone
		},
		{
			name: "wildcard synthesis", mode: "follow",
			setup: func(t *testing.T, label string) string {
				publish(t, fmt.Sprintf("*.%s.example.com. 60 IN CNAME cdn.notours.example.", label))
				return "x." + label + ".example.com"
			},
			fatal: []string{solver.CodeWildcard},
			cause: func(d, _ string) []string {
				return []string{"CNAME synthesised by a wildcard record: _acme-challenge." + d + " CNAME cdn.notours.example", "an explicit CNAME is needed"}
			},
			fix: templateFix,
		},
		{
			name: "CNAME loop", mode: "static",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t,
					fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME a.%s.hop.example.", d, label),
					fmt.Sprintf("a.%s.hop.example. 60 IN CNAME b.%s.hop.example.", label, label),
					fmt.Sprintf("b.%s.hop.example. 60 IN CNAME a.%s.hop.example.", label, label))
				return d
			},
			fatal: []string{solver.CodeLoop},
			cause: func(_, label string) []string {
				return []string{fmt.Sprintf("CNAME loop: b.%s.hop.example points back to a.%s.hop.example", label, label)}
			},
			fix: staticFix,
		},
		{
			name: "chain at the cap", mode: "static", maxHops: 3,
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t,
					fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME 1.%s.hop.example.", d, label),
					fmt.Sprintf("1.%s.hop.example. 60 IN CNAME 2.%s.hop.example.", label, label),
					fmt.Sprintf("2.%s.hop.example. 60 IN CNAME _acme-challenge.validation.example.org.", label))
				return d
			},
			check: func(t *testing.T, rep *solver.Report, _ string) {
				if len(rep.Chain.Hops) != 3 || rep.Chain.End != staticAlias {
					t.Errorf("chain %+v, want 3 hops to %s", rep.Chain, staticAlias)
				}
			},
		},
		{
			name: "chain one hop over the cap", mode: "static", maxHops: 3,
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t,
					fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME 1.%s.hop.example.", d, label),
					fmt.Sprintf("1.%s.hop.example. 60 IN CNAME 2.%s.hop.example.", label, label),
					fmt.Sprintf("2.%s.hop.example. 60 IN CNAME 3.%s.hop.example.", label, label),
					fmt.Sprintf("3.%s.hop.example. 60 IN CNAME _acme-challenge.validation.example.org.", label))
				return d
			},
			fatal: []string{solver.CodeTooManyHops},
			cause: func(d, _ string) []string {
				return []string{"CNAME chain too long: more than 3 hops from _acme-challenge." + d}
			},
			fix: staticFix,
		},
		{
			name: "CAA forbids the CA", mode: "template",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t,
					delegation(d),
					fmt.Sprintf(`%s. 60 IN CAA 0 issue "sectigo.com"`, d))
				return d
			},
			fatal: []string{solver.CodeCAAForbids},
			cause: func(d, _ string) []string {
				return []string{"CAA issue at " + d + " allows only sectigo.com, none of letsencrypt.org"}
			},
			fix: func(d, _ string) string { return d + `. 300 IN CAA 0 issue "letsencrypt.org"` },
			check: func(t *testing.T, rep *solver.Report, label string) {
				want := []solver.CAARecord{{Owner: label + ".example.com", Tag: "issue", Value: "sectigo.com"}}
				if !slices.Equal(rep.CAA, want) {
					t.Errorf("CAA %+v, want %+v", rep.CAA, want)
				}
			},
		},
		{
			name: "CAA validationmethods without dns-01", mode: "template",
			setup: func(t *testing.T, label string) string {
				d := label + ".example.com"
				publish(t,
					delegation(d),
					fmt.Sprintf(`%s. 60 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01"`, d))
				return d
			},
			fatal: []string{solver.CodeCAAMethods},
			cause: func(d, _ string) []string {
				return []string{"at " + d + " allows letsencrypt.org only with validationmethods=http-01, which excludes dns-01"}
			},
			fix: func(d, _ string) string {
				return d + `. 300 IN CAA 0 issue "letsencrypt.org; validationmethods=http-01,dns-01"`
			},
		},
		{
			// The sub-zone <label>.example.com is delegated to a server
			// nobody runs (127.0.0.9): Unbound answers SERVFAIL for every
			// name in it, and the check reads the delegation from
			// example.com's server to name the server that fails.
			name: "unreachable nameserver", mode: "template",
			setup: func(t *testing.T, label string) string {
				publish(t,
					fmt.Sprintf("%s.example.com. 60 IN NS ns1.%s.example.com.", label, label),
					fmt.Sprintf("ns1.%s.example.com. 60 IN A 127.0.0.9", label))
				return "x." + label + ".example.com"
			},
			fatal: []string{solver.CodeLookup, solver.CodeNSUnreachable, solver.CodeLookup},
			cause: func(d, label string) []string {
				return []string{
					"DNS lookup failed: CNAME _acme-challenge." + d + ".",
					fmt.Sprintf("nameserver ns1.%s.example.com (127.0.0.9:53) of %s.example.com did not answer for _acme-challenge.%s", label, label, d),
				}
			},
			check: func(t *testing.T, rep *solver.Report, label string) {
				if rep.Zone != label+".example.com" {
					t.Errorf("production zone %q, want the delegated %s.example.com", rep.Zone, label)
				}
			},
		},
	} {
		t.Run(sc.name, func(t *testing.T) {
			label := randomLabel(t, "c4-")
			domain := sc.setup(t, label)
			start := time.Now()
			_, rep := labChecker(t, sc.mode, sc.maxHops).Check(testCtx(t, time.Minute), domain)
			dump, _ := json.MarshalIndent(rep, "", "  ")
			t.Logf("check of %s took %s", domain, time.Since(start).Round(time.Millisecond))
			assertNoSecret(t, "the report", string(dump))
			got, want := fatalCodes(rep), sc.fatal
			slices.Sort(got)
			want = slices.Sorted(slices.Values(want))
			if !slices.Equal(got, want) {
				t.Errorf("fatal findings %v, want %v\n%s", got, want, dump)
			}
			if rep.OK != (sc.fatal == nil) {
				t.Errorf("verdict OK=%v, want %v\n%s", rep.OK, sc.fatal == nil, dump)
			}
			if len(sc.fatal) > 0 && rep.Findings[0].Code != sc.fatal[0] {
				t.Errorf("first finding %s, want %s (the cause)", rep.Findings[0].Code, sc.fatal[0])
			}
			if sc.cause != nil {
				for _, c := range sc.cause(domain, label) {
					if !strings.Contains(findingsText(rep), c) {
						t.Errorf("no finding names the cause %q:\n%s", c, findingsText(rep))
					}
				}
			}
			wantFix := ""
			if sc.fix != nil {
				wantFix = sc.fix(domain, label)
			}
			if rep.Fix != wantFix {
				t.Errorf("suggested record %q, want %q", rep.Fix, wantFix)
			}
			if err := rep.Err(); sc.fatal != nil {
				if err == nil || !strings.Contains(err.Error(), domain) || !strings.Contains(err.Error(), rep.Findings[0].Message) ||
					(wantFix != "" && !strings.HasSuffix(err.Error(), "publish in the production zone: "+wantFix)) {
					t.Errorf("error %v does not name the domain, the cause and the fix", err)
				}
			}
			if sc.check != nil {
				sc.check(t, rep, label)
			}
			if t.Failed() || os.Getenv("CHECK_DUMP") != "" {
				t.Logf("report:\n%s", dump)
			}
		})
	}
}

// TestCheckDrift stages multi-master drift: drift.example is served by both
// BIND servers, and the challenge CNAME is published on one of them only.
// The check must fail naming both servers and what each serves, whichever
// of them Unbound happened to ask.
func TestCheckDrift(t *testing.T) {
	l := requireLab(t)
	ctx := testCtx(t, time.Minute)
	label := randomLabel(t, "c4-")
	domain := label + ".drift.example"
	alias := "_acme-challenge." + domain + ".validation.example.org"
	rr := fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.", domain, alias)
	if err := l.PublishAt(ctx, l.AuthA, "drift.example", rr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.RemoveAt(ctx, l.AuthA, "drift.example", rr); err != nil {
			t.Errorf("removing the drift: %v", err)
		}
		// The zone is back in step: neither server has the record.
		for _, s := range []string{l.AuthA, l.AuthB} {
			m, err := l.Query(ctx, s, "_acme-challenge."+domain, dns.TypeCNAME)
			if err != nil || len(m.Answer) != 0 {
				t.Errorf("after cleanup %s answers %v (%v)", s, m, err)
			}
		}
	})
	if err := l.FlushResolver(ctx, "drift.example"); err != nil {
		t.Fatal(err)
	}

	_, rep := labChecker(t, "template", 0).Check(ctx, domain)
	dump, _ := json.MarshalIndent(rep, "", "  ")
	if rep.OK {
		t.Fatalf("drift passed the check:\n%s", dump)
	}
	var drift *solver.Finding
	for i, f := range rep.Findings {
		if f.Code == solver.CodeDrift {
			drift = &rep.Findings[i]
		}
	}
	if drift == nil || !drift.Fatal {
		t.Fatalf("no fatal drift finding:\n%s", dump)
	}
	for _, want := range []string{
		"the nameservers of drift.example disagree about _acme-challenge." + domain,
		"ns1.drift.example (" + l.AuthA + "): CNAME " + alias,
		"ns2.drift.example (" + l.AuthB + "): no CNAME",
	} {
		if !strings.Contains(drift.Message, want) {
			t.Errorf("drift finding does not say %q: %s", want, drift.Message)
		}
	}
	// Unbound asks either server: the chain it saw passed or had no CNAME.
	codes := fatalCodes(rep)
	if !slices.Equal(codes, []string{solver.CodeDrift}) && !slices.Equal(codes, []string{solver.CodeNoDelegation, solver.CodeDrift}) {
		t.Errorf("fatal findings %v, want [drift] or [no_delegation drift]", codes)
	}
	if want := fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME %s.", domain, alias); rep.Fix != want {
		t.Errorf("suggested record %q, want %q", rep.Fix, want)
	}
	want := []solver.NameserverAnswer{
		{Name: "ns1.drift.example", Address: l.AuthA, Target: alias},
		{Name: "ns2.drift.example", Address: l.AuthB},
	}
	if !slices.Equal(rep.Nameservers, want) {
		t.Errorf("nameservers %+v, want %+v", rep.Nameservers, want)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), drift.Message) {
		t.Errorf("error %v does not carry the drift", err)
	}
}

// labSecrets are the lab's credentials: none may appear in any output.
func labSecrets() []string {
	return []string{theLab.CaddyKey.Secret, theLab.CaddyKey2.Secret, theLab.AdminKey.Secret}
}

func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range labSecrets() {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s contains a TSIG secret", what)
		}
	}
}

// checkSite is a site whose certificate comes through the alias provider
// with a template alias in the lab's alias zone.
func checkSite(domains ...string) string {
	return fmt.Sprintf(`%s {
	tls {
		dns alias %s {
			%s
			zone %s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "check"
}
`, strings.Join(domains, ", "), templateAlias, rfc2136(), aliasZone, theLab.Resolver, theLab.Resolver)
}

// runCheckCmd runs `caddy dns-alias check` with the lab's secrets in the
// environment, as `caddy run` would have them.
func runCheckCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(testCtx(t, 2*time.Minute), caddyBin, append([]string{"dns-alias", "check"}, args...)...)
	cmd.Dir = dir
	cmd.Env = theLab.CaddyEnv(dir)
	var out, errOut logBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running caddy dns-alias check: %v", err)
	}
	assertNoSecret(t, "the check's output", out.String()+errOut.String())
	return out.String(), errOut.String(), code
}

// TestCheckCommand runs the subcommand of the xcaddy-built Caddy on
// Caddyfiles: exit 0 when every domain passes, 1 with a FAIL row, the
// finding and the fix when one does not, and JSON that says the same.
func TestCheckCommand(t *testing.T) {
	requireLab(t)
	good := randomLabel(t, "c4-") + ".example.com"
	bad := randomLabel(t, "c4-") + ".example.com"
	publish(t, delegation(good))
	dir := t.TempDir()
	goodCfg := filepath.Join(dir, "good.Caddyfile")
	badCfg := filepath.Join(dir, "bad.Caddyfile")
	other := randomLabel(t, "c4-") + ".example.com" // another policy: not checked
	if err := os.WriteFile(goodCfg, []byte(checkSite(good)+other+" {\n\ttls internal\n\trespond \"x\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badCfg, []byte(checkSite(good, bad)), 0o600); err != nil {
		t.Fatal(err)
	}
	badFix := fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", bad, bad)

	t.Run("good config", func(t *testing.T) {
		out, errOut, code := runCheckCmd(t, "--config", goodCfg, "--adapter", "caddyfile")
		if code != 0 {
			t.Errorf("exit %d, want 0\n%s\n%s", code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "DOMAIN") {
			t.Fatalf("no table:\n%s", out)
		}
		row := strings.Fields(lines[1])
		if len(row) < 4 || row[0] != good || row[1] != "template" || row[2] != "ok" || !strings.Contains(lines[1], "_acme-challenge."+good+" -> _acme-challenge."+good+".validation.example.org") {
			t.Errorf("row %q, want %s template ok and the chain", lines[1], good)
		}
		if strings.Contains(out, other) || strings.Contains(out, "fix:") {
			t.Errorf("the table checks more than the alias policy's domain, or suggests a fix:\n%s", out)
		}
		// The lab serves the TLDs above its zones, as the internet does:
		// a delegation that is fine gets a row and nothing under it (no
		// "lookup_failed (note): ... CAA com" that reads like an error).
		for _, line := range lines[2:] {
			t.Errorf("unexpected line under the row: %q", line)
		}
	})

	t.Run("bad domain", func(t *testing.T) {
		out, errOut, code := runCheckCmd(t, "--config", badCfg)
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		var badRow string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, bad+" ") {
				badRow = line
			}
		}
		if f := strings.Fields(badRow); len(f) < 3 || f[1] != "template" || f[2] != "FAIL" {
			t.Errorf("row of %s is %q, want FAIL:\n%s", bad, badRow, out)
		}
		for _, want := range []string{
			"\n  no_delegation: _acme-challenge." + bad + " has no CNAME record\n",
			"\n  fix: " + badFix + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "delegation check failed for 1 of 2 domains: "+bad) {
			t.Errorf("stderr does not name the failing domain:\n%s", errOut)
		}
	})

	t.Run("json", func(t *testing.T) {
		out, errOut, code := runCheckCmd(t, "--config", badCfg, "--json")
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s", code, errOut)
		}
		var reports []solver.Report
		if err := json.Unmarshal([]byte(out), &reports); err != nil {
			t.Fatalf("--json output does not parse: %v\n%s", err, out)
		}
		// One report per domain, in the order of the adapted config.
		byDomain := map[string]solver.Report{}
		for _, r := range reports {
			byDomain[r.Domain] = r
		}
		if len(reports) != 2 || len(byDomain) != 2 {
			t.Fatalf("reports for %v, want %s and %s", reportDomains(reports), good, bad)
		}
		if r := byDomain[good]; !r.OK || r.Mode != "template" || len(r.Chain.Hops) != 1 || r.Chain.End != "_acme-challenge."+good+".validation.example.org" {
			t.Errorf("good report: %+v", r)
		}
		r := byDomain[bad]
		if r.OK || r.Fix != badFix || len(r.Findings) == 0 || r.Findings[0].Code != solver.CodeNoDelegation || !r.Findings[0].Fatal {
			t.Errorf("bad report: %+v", r)
		}
	})

	t.Run("a name no alias policy obtains", func(t *testing.T) {
		// README's --alias example, with the lab's config and names.
		out, errOut, code := runCheckCmd(t, "--config", goodCfg, "--alias", "_acme-challenge.{domain}.validation.example.org", other)
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		need := fmt.Sprintf("would need: _acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.\n", other, other)
		for _, want := range []string{
			"  no_alias_policy: " + other + " is obtained by TLS automation policy",
			"  no_alias_policy (note): added to TLS automation policy ",
			"  no_alias_policy (note): under the alias _acme-challenge.{domain}.validation.example.org, " + other + " " + need,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(out, need) != 2 {
			t.Errorf("want the record under the config's alias policy and under --alias:\n%s", out)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			// Caddy logs the error as JSON: quotes come escaped.
			{[]string{"--config", goodCfg, "1.2.3.4"}, `1.2.3.4\": an IP address has no DNS challenge`},
			{[]string{"--config", goodCfg, "a b.example.com"}, `contains ' ', which is not allowed in a challenge name`},
			{nil, "no config to read: give --config with a Caddyfile or a JSON config, or run the command where ./Caddyfile is"},
		} {
			out, errOut, code := runCheckCmd(t, tc.args...)
			if code != 1 || !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errOut, tc.want)
			}
		}
	})

	t.Run("domains as arguments", func(t *testing.T) {
		out, errOut, code := runCheckCmd(t, "--config", badCfg, "--json", good)
		if code != 0 {
			t.Errorf("exit %d, want 0\n%s", code, errOut)
		}
		var reports []solver.Report
		if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 1 || reports[0].Domain != good || !reports[0].OK {
			t.Errorf("reports %s (%v), want one passing report for %s", out, err, good)
		}
	})
}

func reportDomains(rs []solver.Report) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Domain)
	}
	return out
}

// TestCheckAdminAPI asks a running Caddy for reports and for the challenge
// records it presents while it obtains a certificate.
func TestCheckAdminAPI(t *testing.T) {
	l := requireLab(t)
	good := randomLabel(t, "c4-") + ".example.com"
	bad := randomLabel(t, "c4-") + ".example.com"
	publish(t, delegation(good))
	c := startCaddyfile(t, "", checkSite(good, bad))
	c.waitAdmin(20 * time.Second)

	// While Caddy obtains good's certificate, its challenge record is
	// listed: where and since when, not its value.
	var presented, txtValues []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && len(presented) == 0; time.Sleep(50 * time.Millisecond) {
		status, body := c.adminGet("/dns-alias/presented")
		if status != http.StatusOK {
			t.Fatalf("GET /dns-alias/presented: %d %s", status, body)
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("/dns-alias/presented is no JSON list: %v: %s", err, body)
		}
		if len(list) == 0 {
			continue
		}
		presented = append(presented, body)
		for _, rr := range zoneTXT(t, l.AuthA, aliasZone) {
			txtValues = append(txtValues, strings.Join(rr.Txt, ""))
		}
		for _, e := range list {
			keys := slices.Sorted(maps.Keys(e))
			if !slices.Equal(keys, []string{"age_seconds", "domain", "name", "since", "zone"}) {
				t.Errorf("presented entry has fields %v: %v", keys, e)
			}
			if e["domain"] != good || e["name"] != "_acme-challenge."+good+".validation.example.org" || e["zone"] != aliasZone {
				t.Errorf("presented entry %v, want %s at its alias in %s", e, good, aliasZone)
			}
		}
	}
	if len(presented) == 0 {
		t.Errorf("/dns-alias/presented never listed the challenge of %s", good)
	}
	for _, v := range txtValues {
		for _, p := range presented {
			if v != "" && strings.Contains(p, v) {
				t.Errorf("/dns-alias/presented shows the record value %q", v)
			}
		}
	}

	status, body := c.adminGet("/dns-alias/check?domain=" + good + "&domain=" + bad)
	if status != http.StatusOK {
		t.Fatalf("GET /dns-alias/check: %d %s", status, body)
	}
	assertNoSecret(t, "/dns-alias/check", body)
	var reports []solver.Report
	if err := json.Unmarshal([]byte(body), &reports); err != nil {
		t.Fatalf("check answer is no list of reports: %v: %s", err, body)
	}
	if len(reports) != 2 || reports[0].Domain != good || reports[1].Domain != bad {
		t.Fatalf("reports for %v, want [%s %s]", reportDomains(reports), good, bad)
	}
	if !reports[0].OK || reports[0].Chain.End != "_acme-challenge."+good+".validation.example.org" {
		t.Errorf("report of %s: %+v", good, reports[0])
	}
	badFix := fmt.Sprintf("_acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", bad, bad)
	if r := reports[1]; r.OK || r.Fix != badFix || r.Findings[0].Code != solver.CodeNoDelegation {
		t.Errorf("report of %s: %+v", bad, r)
	}

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/dns-alias/check", http.StatusBadRequest},
		{"/dns-alias/check?domain=" + bad, http.StatusOK},
	} {
		if status, body := c.adminGet(tc.path); status != tc.status {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, status, tc.status, body)
		} else {
			assertNoSecret(t, "GET "+tc.path, body)
		}
	}
	c.waitCert(good, 90*time.Second)
	_, body = c.adminGet("/dns-alias/presented")
	assertNoSecret(t, "/dns-alias/presented", body)
	assertNoSecret(t, "caddy's log", c.log.String())
	assertNoChallengeLeft(t)
}

// TestCheckFailsFast: a misconfigured domain in an end-to-end run is
// refused by the gate within a second of certmagic's "obtaining
// certificate", before any challenge, with the record to publish; nothing
// is written.
func TestCheckFailsFast(t *testing.T) {
	requireLab(t)
	domain := randomLabel(t, "c4-") + ".example.com"
	// A CNAME to the wrong target: the chain check, not an SOA lookup of a
	// missing name, is what fails it.
	publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.validation.example.org.", domain))
	before := productionSerials(t)
	c := startCaddyfile(t, "", checkSite(domain))
	fix := fmt.Sprintf("publish in the production zone: _acme-challenge.%s. 300 IN CNAME _acme-challenge.%s.validation.example.org.", domain, domain)
	if !c.waitLog(fix, 30*time.Second) {
		t.Fatalf("no error with the fix %q in caddy's log; log:\n%s", fix, c.log.String())
	}
	var started, failed *logLine
	lines := c.logLines()
	for i, e := range lines {
		if started == nil && e.Msg == "obtaining certificate" && e.Identifier == domain {
			started = &lines[i]
		}
		if failed == nil && started != nil && e.Msg == gateRefused && e.Identifier == domain {
			failed = &lines[i]
		}
		if e.Msg == "trying to solve challenge" && e.Identifier == domain {
			t.Errorf("a challenge was started despite the broken delegation")
		}
	}
	if started == nil || failed == nil {
		t.Fatalf("no \"obtaining certificate\" for %s followed by the gate's refusal; log:\n%s", domain, c.log.String())
	}
	took := failed.TS.Sub(started.TS)
	t.Logf("obtain started, refused by the gate %s later: %s", took.Round(time.Millisecond), failed.Error)
	if took < 0 || took >= time.Second {
		t.Errorf("the broken delegation was refused %s after the obtain started, want < 1 s", took)
	}
	for _, want := range []string{"_acme-challenge." + domain, "not at the alias _acme-challenge." + domain + ".validation.example.org", fix} {
		if !strings.Contains(failed.Error, want) {
			t.Errorf("the error does not say %q: %s", want, failed.Error)
		}
	}
	for _, e := range lines {
		if e.Msg == "presented challenge on alias" {
			t.Errorf("a challenge was presented despite the broken delegation")
		}
	}
	for _, rr := range challengeTXT(t) {
		if strings.Contains(rr, domain) {
			t.Errorf("a challenge record was written: %s", rr)
		}
	}
	assertNoSecret(t, "caddy's log", c.log.String())
	assertProductionUnchanged(t, before)
}
