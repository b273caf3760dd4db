package alias

// These tests drive certmagic's own DNS01Solver (Present, Wait, CleanUp) with
// the dns.providers.alias module provisioned as Caddy provisions it, writing
// through RFC 2136 updates (internal/dnsupdate) into an in-process DNS server that also serves
// as the resolver. The server's UPDATE log shows what the inner provider was
// asked to do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	_ "github.com/acme-alias/caddy-dns-alias/internal/dnsupdate"
)

const (
	cmAliasZone    = "validation.example.org"
	cmPropagation  = 20 * time.Second
	cmWaitDeadline = cmPropagation + 10*time.Second
)

// cmProductionZones are the zones the tests must never see written.
var cmProductionZones = []string{"example.com", "example.net", "hop.example"}

// cmLab is one scenario's DNS server, alias provider and certmagic solver.
type cmLab struct {
	srv      *dnstest.Server
	provider *Provider
	solver   *certmagic.DNS01Solver
	// production holds the production zones' records at the start.
	production map[string][]string
}

// cmStart starts a DNS server with the production zones (records as given,
// in zone-file syntax relative to each zone), the updatable alias zone and an
// updatable zone outside the alias zones, then provisions the alias module
// from config (its provider and resolvers are filled in) and a certmagic
// DNS01Solver around it, pointed at the server as its resolver.
func cmStart(t *testing.T, production map[string]string, config map[string]any) *cmLab {
	t.Helper()
	zones := []dnstest.Zone{
		{Name: cmAliasZone, Updatable: true},
		{Name: "elsewhere.example", Updatable: true},
	}
	for _, z := range cmProductionZones {
		zones = append(zones, dnstest.Zone{Name: z, Records: production[z]})
	}
	srv := dnstest.Start(t, zones...)

	key := srv.Key()
	config["provider"] = map[string]any{
		"name":     "rfc2136",
		"key_name": key.Name,
		"key_alg":  key.Algorithm,
		"key":      key.Secret,
		"server":   srv.Addr(),
	}
	config["resolvers"] = []string{srv.Addr()}
	// These tests prove certmagic's own propagation check against the
	// returned alias name; the provider's authoritative wait asks port 53,
	// which the lab's tests cover.
	config["authoritative_wait"] = -1
	raw, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := standalone(t)
	mod, err := ctx.LoadModuleByID("dns.providers.alias", raw)
	if err != nil {
		t.Fatalf("provisioning dns.providers.alias: %v", err)
	}
	p, ok := mod.(*Provider)
	if !ok {
		t.Fatalf("dns.providers.alias loaded as %T", mod)
	}
	// Log to the test, and keep every entry to look for the secret in.
	logCore, logs := observer.New(zap.DebugLevel)
	logger := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), logCore))
	p.writer.Logger = logger.Named("alias")
	t.Cleanup(func() {
		for _, e := range logs.All() {
			if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, key.Secret) {
				t.Errorf("the TSIG secret was logged: %s", line)
			}
		}
	})

	lab := &cmLab{
		srv:      srv,
		provider: p,
		solver: &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        p,
			Resolvers:          []string{srv.Addr()},
			PropagationTimeout: cmPropagation,
			Logger:             logger.Named("certmagic"),
		}},
		production: map[string][]string{},
	}
	for _, z := range cmProductionZones {
		lab.production[z] = srv.Records(z)
	}
	return lab
}

func cmChallenge(domain, token string) acme.Challenge {
	return acme.Challenge{
		Type:             "dns-01",
		Identifier:       acme.Identifier{Type: "dns", Value: domain},
		Token:            token,
		KeyAuthorization: token + ".account-thumbprint",
	}
}

// cmUpdates renders the UPDATEs received since the first n as
// "op zone name value", sorted, failing on any that was not accepted.
func (l *cmLab) cmUpdates(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for _, u := range l.srv.Updates()[n:] {
		if !u.Accepted() {
			t.Errorf("UPDATE not accepted: %v", u)
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", u.Op, u.Zone, u.Name, u.Value))
	}
	slices.Sort(out)
	return out
}

func cmExpectUpdates(t *testing.T, phase string, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: UPDATEs\n got %q\nwant %q", phase, got, want)
	}
}

// cmCheckProductionUntouched asserts that no UPDATE went to a production
// zone or named anything in one, and that their records are unchanged.
func (l *cmLab) cmCheckProductionUntouched(t *testing.T) {
	t.Helper()
	for _, u := range l.srv.Updates() {
		for _, z := range cmProductionZones {
			if u.Zone == z || strings.HasSuffix(u.Zone, "."+z) || u.Name == z || strings.HasSuffix(u.Name, "."+z) {
				t.Errorf("production zone %s got an UPDATE: %v", z, u)
			}
		}
	}
	for z, want := range l.production {
		if got := l.srv.Records(z); !slices.Equal(got, want) {
			t.Errorf("production zone %s changed:\n got %q\nwant %q", z, got, want)
		}
	}
}

// cmCheckClean asserts that no zone holds a TXT record and that the
// provider remembers nothing presented.
func (l *cmLab) cmCheckClean(t *testing.T) {
	t.Helper()
	for _, z := range append([]string{cmAliasZone, "elsewhere.example"}, cmProductionZones...) {
		if txt := l.srv.TXT(z); len(txt) != 0 {
			t.Errorf("zone %s still holds TXT %+v", z, txt)
		}
	}
	if pr := l.provider.writer.Presented(); len(pr) != 0 {
		t.Errorf("provider still lists presented records %+v", pr)
	}
}

// cmResolveTXT asks the server, as the CA's resolver would, for the TXT
// values at name, following CNAMEs.
func (l *cmLab) cmResolveTXT(t *testing.T, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, l.srv.Addr())
	if err != nil {
		t.Fatalf("TXT %s: %v", name, err)
	}
	var out []string
	for _, rr := range resp.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

// cmInParallel runs f for each challenge in its own goroutine and returns
// the errors in challenge order.
func cmInParallel(chals []acme.Challenge, f func(acme.Challenge) error) []error {
	errs := make([]error, len(chals))
	var wg sync.WaitGroup
	for i, ch := range chals {
		wg.Go(func() { errs[i] = f(ch) })
	}
	wg.Wait()
	return errs
}

func cmSorted(ss ...string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// TestCertmagicSharedAlias presents two challenges whose records land at one
// alias name, concurrently, as certmagic does for an apex and its wildcard
// (whose authorizations both carry the identifier example.com) or for
// several domains on one static alias; cleaning one up must leave the other
// served.
func TestCertmagicSharedAlias(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		production map[string]string
		config     map[string]any
		challenges [2]acme.Challenge
		alias      string
	}{
		{
			name: "apex and wildcard on a template alias",
			production: map[string]string{
				"example.com": "_acme-challenge CNAME _acme-challenge.example.com.validation.example.org.",
			},
			config: map[string]any{
				"alias": "_acme-challenge.{domain}.validation.example.org",
				"zones": []string{cmAliasZone},
			},
			challenges: [2]acme.Challenge{cmChallenge("example.com", "token-apex"), cmChallenge("example.com", "token-wildcard")},
			alias:      "_acme-challenge.example.com.validation.example.org",
		},
		{
			name: "two domains on one static alias",
			production: map[string]string{
				"example.com": "_acme-challenge CNAME _acme-challenge.validation.example.org.",
				"example.net": "_acme-challenge CNAME _acme-challenge.validation.example.org.",
			},
			config: map[string]any{
				"alias": "_acme-challenge.validation.example.org",
				"zones": []string{cmAliasZone},
			},
			challenges: [2]acme.Challenge{cmChallenge("example.com", "token-com"), cmChallenge("example.net", "token-net")},
			alias:      "_acme-challenge.validation.example.org",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lab := cmStart(t, tc.production, tc.config)
			first, second := tc.challenges[0], tc.challenges[1]
			v1, v2 := first.DNS01KeyAuthorization(), second.DNS01KeyAuthorization()
			if v1 == v2 {
				t.Fatal("test challenges share a value")
			}
			ctx := context.Background()
			chals := tc.challenges[:]

			// Each challenge in its own goroutine, as acmez solves them:
			// all Presents at once, then all Waits at once in a synctest
			// bubble, where certmagic's polling interval passes on the
			// bubble's clock, whatever it is. (Present stays outside: the
			// TSIG signature carries the time, which the server checks.)
			q := len(lab.srv.Queries())
			start := time.Now()
			errs := cmInParallel(chals, func(ch acme.Challenge) error {
				if err := lab.solver.Present(ctx, ch); err != nil {
					return fmt.Errorf("Present: %w", err)
				}
				return nil
			})
			if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
				synctest.Test(t, func(t *testing.T) {
					errs = cmInParallel(chals, func(ch acme.Challenge) error {
						if err := lab.solver.Wait(ctx, ch); err != nil {
							return fmt.Errorf("Wait: %w", err)
						}
						return nil
					})
				})
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s (%s): %v", chals[i].Identifier.Value, chals[i].Token, err)
				}
			}
			if d := time.Since(start); d > cmWaitDeadline {
				t.Errorf("Present and Wait took %v", d)
			}
			// Wait returned after certmagic's propagation check found the
			// value at the alias, not before asking.
			if !slices.Contains(lab.cmTXTQueries(q), tc.alias) {
				t.Errorf("Wait sent no TXT query for %s: %q", tc.alias, lab.cmTXTQueries(q))
			}
			cmExpectUpdates(t, "Present", lab.cmUpdates(t, 0),
				"add "+cmAliasZone+" "+tc.alias+" "+v1,
				"add "+cmAliasZone+" "+tc.alias+" "+v2)
			if got, want := lab.srv.TXTValues(tc.alias), cmSorted(v1, v2); !slices.Equal(got, want) {
				t.Errorf("after Present the alias holds %q, want %q", got, want)
			}
			// The CA, following each production name's CNAME, sees both.
			for _, ch := range chals {
				if got, want := lab.cmResolveTXT(t, ch.DNS01TXTRecordName()), cmSorted(v1, v2); !slices.Equal(got, want) {
					t.Errorf("resolving %s: %q, want %q", ch.DNS01TXTRecordName(), got, want)
				}
			}

			n := len(lab.srv.Updates())
			if err := lab.solver.CleanUp(ctx, first); err != nil {
				t.Fatalf("CleanUp %s (%s): %v", first.Identifier.Value, first.Token, err)
			}
			cmExpectUpdates(t, "first CleanUp", lab.cmUpdates(t, n), "delete "+cmAliasZone+" "+tc.alias+" "+v1)
			if got := lab.srv.TXTValues(tc.alias); !slices.Equal(got, []string{v2}) {
				t.Errorf("after the first CleanUp the alias holds %q, want only the second value %q", got, v2)
			}
			if got := lab.cmResolveTXT(t, second.DNS01TXTRecordName()); !slices.Equal(got, []string{v2}) {
				t.Errorf("after the first CleanUp %s resolves to %q, want %q", second.DNS01TXTRecordName(), got, v2)
			}

			n = len(lab.srv.Updates())
			if err := lab.solver.CleanUp(ctx, second); err != nil {
				t.Fatalf("CleanUp %s (%s): %v", second.Identifier.Value, second.Token, err)
			}
			cmExpectUpdates(t, "second CleanUp", lab.cmUpdates(t, n), "delete "+cmAliasZone+" "+tc.alias+" "+v2)
			lab.cmCheckClean(t)
			lab.cmCheckProductionUntouched(t)
		})
	}
}

// cmTXTQueries returns the names of the TXT queries the server answered
// after its first from queries.
func (lab *cmLab) cmTXTQueries(from int) []string {
	var names []string
	for _, query := range lab.srv.Queries()[from:] {
		if query.Type == "TXT" {
			names = append(names, query.Name)
		}
	}
	return names
}

// TestCertmagicFollowTwoHops: in follow mode the record is written where a
// two-hop chain ends, and certmagic's default propagation check (resolvers
// set, nothing else tuned) succeeds because the record handed back carries
// the absolute alias name: certmagic checks the end of the chain directly.
func TestCertmagicFollowTwoHops(t *testing.T) {
	t.Parallel()
	const end = "_acme-challenge.example.net.validation.example.org"
	lab := cmStart(t, map[string]string{
		"example.net": "_acme-challenge CNAME x.hop.example.",
		"hop.example": "x CNAME _acme-challenge.example.net.validation.example.org.",
	}, map[string]any{"follow": true, "zones": []string{cmAliasZone}})
	ch := cmChallenge("example.net", "token-follow")
	value := ch.DNS01KeyAuthorization()
	ctx := context.Background()

	if err := lab.solver.Present(ctx, ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	cmExpectUpdates(t, "Present", lab.cmUpdates(t, 0), "add "+cmAliasZone+" "+end+" "+value)
	if got := lab.srv.TXTValues(end); !slices.Equal(got, []string{value}) {
		t.Errorf("end of the chain holds %q, want %q", got, value)
	}

	q := len(lab.srv.Queries())
	start := time.Now()
	// In a synctest bubble, certmagic's polling interval passes on the
	// bubble's clock, whatever it is.
	var err error
	synctest.Test(t, func(t *testing.T) { err = lab.solver.Wait(ctx, ch) })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if d := time.Since(start); d > cmWaitDeadline {
		t.Errorf("Wait took %v", d)
	}
	// certmagic's propagation check asked for the TXT at the end of the
	// chain, never at the production name or the intermediate hop.
	txtQueries := lab.cmTXTQueries(q)
	if len(txtQueries) == 0 {
		t.Error("Wait sent no TXT query")
	}
	for _, name := range txtQueries {
		if name != end {
			t.Errorf("Wait asked for TXT %s, want only %s", name, end)
		}
	}
	if got := lab.cmResolveTXT(t, ch.DNS01TXTRecordName()); !slices.Equal(got, []string{value}) {
		t.Errorf("the CA would resolve %s to %q, want %q", ch.DNS01TXTRecordName(), got, value)
	}

	n := len(lab.srv.Updates())
	if err := lab.solver.CleanUp(ctx, ch); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	cmExpectUpdates(t, "CleanUp", lab.cmUpdates(t, n), "delete "+cmAliasZone+" "+end+" "+value)
	lab.cmCheckClean(t)
	lab.cmCheckProductionUntouched(t)
}

// TestCertmagicCleanUpAfterCancel: a challenge whose context is cancelled
// while waiting (the order was abandoned) is still cleaned up, since
// certmagic cleans up on a context of its own.
func TestCertmagicCleanUpAfterCancel(t *testing.T) {
	t.Parallel()
	const aliasName = "_acme-challenge.example.com.validation.example.org"
	lab := cmStart(t, map[string]string{
		"example.com": "_acme-challenge CNAME _acme-challenge.example.com.validation.example.org.",
	}, map[string]any{"alias": "_acme-challenge.{domain}.validation.example.org", "zones": []string{cmAliasZone}})
	ch := cmChallenge("example.com", "token-cancel")
	value := ch.DNS01KeyAuthorization()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := lab.solver.Present(ctx, ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if got := lab.srv.TXTValues(aliasName); !slices.Equal(got, []string{value}) {
		t.Errorf("after Present the alias holds %q, want %q", got, value)
	}
	cancel()
	// On the bubble's clock a Wait that returns on the cancellation takes
	// no time, however slow the machine; one that slept or polled first
	// would take its sleep's length (the wall clock's 1 s bound could not
	// tell that from a busy machine).
	var err error
	var took time.Duration
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		err = lab.solver.Wait(ctx, ch)
		took = time.Since(start)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context: %v, want %v", err, context.Canceled)
	}
	if took != 0 {
		t.Errorf("Wait on a cancelled context took %v on the bubble's clock, want no time", took)
	}
	if err := lab.solver.CleanUp(ctx, ch); err != nil {
		t.Fatalf("CleanUp after cancellation: %v", err)
	}
	cmExpectUpdates(t, "Present and CleanUp", lab.cmUpdates(t, 0),
		"add "+cmAliasZone+" "+aliasName+" "+value,
		"delete "+cmAliasZone+" "+aliasName+" "+value)
	lab.cmCheckClean(t)
	lab.cmCheckProductionUntouched(t)
}

// TestCertmagicFollowRefused: in follow mode a chain that ends outside the
// alias zones, a missing CNAME, and a CNAME synthesised by a wildcard all
// fail Present with an error naming the challenge record, and nothing is
// written anywhere, not even in the writable zone the chain points into.
func TestCertmagicFollowRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		production map[string]string
		domain     string
		wantErr    []string
	}{
		{
			name:       "chain ends outside the alias zones",
			production: map[string]string{"example.com": "_acme-challenge CNAME _acme-challenge.example.com.elsewhere.example."},
			domain:     "example.com",
			wantErr:    []string{"_acme-challenge.example.com", "_acme-challenge.example.com.elsewhere.example", "outside"},
		},
		{
			name:       "no CNAME",
			production: map[string]string{"example.net": "www A 192.0.2.1"},
			domain:     "example.net",
			wantErr:    []string{"_acme-challenge.example.net", "_acme-challenge.example.net. 300 IN CNAME _acme-challenge.example.net.validation.example.org."},
		},
		{
			name:       "wildcard-synthesised CNAME into the alias zone",
			production: map[string]string{"example.com": "* CNAME _acme-challenge.example.com.validation.example.org."},
			domain:     "example.com",
			wantErr:    []string{"_acme-challenge.example.com", "wildcard"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lab := cmStart(t, tc.production, map[string]any{"follow": true, "zones": []string{cmAliasZone}})
			ch := cmChallenge(tc.domain, "token-refused")
			err := lab.solver.Present(context.Background(), ch)
			if err == nil {
				t.Fatal("Present succeeded")
			}
			if strings.Contains(err.Error(), lab.srv.Key().Secret) {
				t.Errorf("Present error carries the TSIG secret: %v", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Present error %q does not mention %q", err, want)
				}
			}
			if u := lab.srv.Updates(); len(u) != 0 {
				t.Errorf("UPDATEs sent: %v", u)
			}
			lab.cmCheckClean(t)
			lab.cmCheckProductionUntouched(t)
		})
	}
}
