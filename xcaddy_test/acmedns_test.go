package xcaddy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/acmednstest"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// startACMEDNS starts the stand-in acme-dns server for a test: DNS on the
// lab's ACMEDNS_ADDR (127.0.0.4:53, where Unbound's stub zone for
// acme-dns.example points), its API on a free port of 127.0.0.1.
func startACMEDNS(t *testing.T) *acmednstest.Server {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 5*time.Minute)
	if l.Env["ACMEDNS_ADDR"] == "" {
		// A lab started by an older lab.sh: up adds 127.0.0.4 and the stub
		// zone (restarting Unbound alone). This process holds the lab
		// (lab.Hold), so no other test sees the restart.
		t.Log("the running lab has no acme-dns stub zone yet; running lab/lab.sh up")
		nl, err := lab.Up(ctx)
		if err != nil {
			t.Fatalf("lab/lab.sh up: %v", err)
		}
		if nl.Env["ACMEDNS_ADDR"] == "" {
			t.Fatal("lab.env has no ACMEDNS_ADDR after lab/lab.sh up")
		}
		theLab, l = nl, nl
	}
	s, err := acmednstest.Start(acmednstest.Config{
		Zone:    "auth." + l.Env["ACMEDNS_ZONE"],
		DNSAddr: l.Env["ACMEDNS_ADDR"],
	})
	if err != nil {
		t.Fatalf("starting the stand-in acme-dns on %s: %v", l.Env["ACMEDNS_ADDR"], err)
	}
	t.Cleanup(func() { s.Close() })
	// Unbound may remember 127.0.0.4 as unresponsive from before.
	if err := l.FlushResolver(ctx, l.Env["ACMEDNS_ZONE"]); err != nil {
		t.Fatal(err)
	}
	return s
}

// acmeDNSAccount registers an account on s and publishes the CNAME of every
// domain's challenge to its fulldomain, as the domains' owner would (removed
// again when the test ends). The password goes to Caddy through the
// environment variable pwEnv.
func acmeDNSAccount(t *testing.T, s *acmednstest.Server, pwEnv string, domains ...string) acmednstest.Account {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	a, err := s.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(pwEnv, a.Password)
	for _, d := range domains {
		publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.", d, a.FullDomain))
	}
	return a
}

// acmeDNSBlock is the Caddyfile acme_dns block of account a.
func acmeDNSBlock(s *acmednstest.Server, a acmednstest.Account, pwEnv string) string {
	return fmt.Sprintf(`acme_dns {
				server %s
				username %s
				password {env.%s}
				subdomain %s
				fulldomain %s
			}`, s.URL(), a.Username, pwEnv, a.Subdomain, a.FullDomain)
}

// assertACMEDNSUpdates checks that the stand-in received exactly want
// accepted updates for account a, with its credentials, and that it still
// serves the two newest values: acme-dns has no delete.
func assertACMEDNSUpdates(t *testing.T, s *acmednstest.Server, a acmednstest.Account, want int) {
	t.Helper()
	var values []string
	for _, u := range s.Updates() {
		if u.Status != 200 || u.Username != a.Username || u.Subdomain != a.Subdomain || len(u.TXT) != 43 {
			t.Errorf("update %+v: want 200 from user %s for subdomain %s with a 43-character value", u, a.Username, a.Subdomain)
			continue
		}
		values = append(values, u.TXT)
	}
	if len(values) != want {
		t.Errorf("the stand-in acme-dns accepted %d updates, want %d", len(values), want)
	}
	slices.Reverse(values)
	if n := min(2, len(values)); !slices.Equal(s.Values(a.Subdomain), values[:n]) {
		t.Errorf("served values %v, want the two newest updates %v", s.Values(a.Subdomain), values[:n])
	}
}

// assertCaddyQuiet fails if Caddy's log shows a secret or a failed attempt.
func assertCaddyQuiet(t *testing.T, c *caddyProc, secrets ...string) {
	t.Helper()
	log := c.log.String()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("Caddy's log contains the acme-dns password")
		}
	}
	if strings.Contains(log, "could not get certificate from issuer") {
		t.Errorf("an issuance attempt failed (retried later); log:\n%s", log)
	}
}

// assertTwoInFlight reads the acme-dns writer's debug lines from Caddy's
// log: want updates, none of which left more than two values of the account
// in use. It returns how many updates had to wait for a free value.
func assertTwoInFlight(t *testing.T, c *caddyProc, want int) int {
	t.Helper()
	sent, waited := 0, 0
	for _, e := range c.logLines() {
		switch {
		case e.Msg == "acme-dns update sent":
			sent++
			if n, _ := e.Fields["in_flight"].(float64); n > 2 {
				t.Errorf("an update left %v values of the account in use; acme-dns serves two", n)
			}
		case strings.HasPrefix(e.Msg, "acme-dns account busy"):
			waited++
		}
	}
	if sent != want {
		t.Errorf("Caddy's debug log shows %d acme-dns updates, want %d", sent, want)
	}
	return waited
}

// TestACMEDNSSingleName: one name delegated to an acme-dns account.
func TestACMEDNSSingleName(t *testing.T) {
	s := startACMEDNS(t)
	name := "acmedns1.example.com"
	a := acmeDNSAccount(t, s, "ACMEDNS_PASSWORD_1", name)
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "a"
}`, name, acmeDNSBlock(s, a, "ACMEDNS_PASSWORD_1"), theLab.Resolver, theLab.Resolver))
	cert, took := c.waitCert(name, 2*time.Minute)
	t.Logf("acme-dns: certificate for %v after %s", cert.DNSNames, took.Round(time.Millisecond))
	if served := c.served(name); !served[0].Equal(cert) {
		t.Errorf("Caddy serves another certificate for %s than the one it stored", name)
	}
	assertACMEDNSUpdates(t, s, a, 1)
	assertCaddyQuiet(t, c, a.Password)
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestACMEDNSApexAndWildcard: a name and its wildcard share one challenge
// name and one account; both values must be served at once.
func TestACMEDNSApexAndWildcard(t *testing.T) {
	s := startACMEDNS(t)
	name := "acmedns2.example.com"
	a := acmeDNSAccount(t, s, "ACMEDNS_PASSWORD_2", name)
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`%s, *.%s {
	tls {
		dns alias {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "a"
}`, name, name, acmeDNSBlock(s, a, "ACMEDNS_PASSWORD_2"), theLab.Resolver, theLab.Resolver))
	for _, n := range []string{name, "*." + name} {
		cert, took := c.waitCert(n, 2*time.Minute)
		t.Logf("acme-dns: certificate for %v after %s", cert.DNSNames, took.Round(time.Millisecond))
	}
	assertACMEDNSUpdates(t, s, a, 2)
	assertCaddyQuiet(t, c, a.Password)
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestACMEDNSThreeNamesOneAccount: three names delegated to one account,
// configured in two rules. The server serves two values only, so the third
// challenge waits until one of the first two is over; all three must be
// issued at the first attempt.
func TestACMEDNSThreeNamesOneAccount(t *testing.T) {
	s := startACMEDNS(t)
	names := []string{"acmedns3a.example.com", "acmedns3b.example.com", "acmedns3c.example.com"}
	a := acmeDNSAccount(t, s, "ACMEDNS_PASSWORD_3", names...)
	before := productionSerials(t)
	block := acmeDNSBlock(s, a, "ACMEDNS_PASSWORD_3")
	c := startCaddyfile(t, "debug", fmt.Sprintf(`%s {
	tls {
		dns alias {
			resolvers %s
			private_nameservers
			rule %s %s {
				%s
			}
			rule %s {
				%s
			}
		}
		resolvers %s
	}
	respond "a"
}`, strings.Join(names, ", "), theLab.Resolver, names[0], names[1], block, names[2], block, theLab.Resolver))
	for _, n := range names {
		cert, took := c.waitCert(n, 3*time.Minute)
		t.Logf("acme-dns: certificate for %v after %s", cert.DNSNames, took.Round(time.Millisecond))
	}
	waited := assertTwoInFlight(t, c, 3)
	t.Logf("%d of the 3 challenges waited for one of the account's two values to be free", waited)
	assertACMEDNSUpdates(t, s, a, 3)
	assertCaddyQuiet(t, c, a.Password)
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}
