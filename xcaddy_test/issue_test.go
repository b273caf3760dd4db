package xcaddy_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIssueStaticAlias: one domain, static alias.
func TestIssueStaticAlias(t *testing.T) {
	requireLab(t)
	publish(t, "_acme-challenge.a.example.com. 60 IN CNAME _acme-challenge.validation.example.org.")
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`a.example.com {
	tls {
		dns alias _acme-challenge.validation.example.org {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "a"
}`, rfc2136(), theLab.Resolver, theLab.Resolver))
	cert, took := c.waitCert("a.example.com", 90*time.Second)
	t.Logf("static alias: certificate for %v after %s", cert.DNSNames, took.Round(time.Millisecond))
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueApexAndWildcard: b.example.com and *.b.example.com in one site
// block. Caddy manages one certificate per name, so there are two
// certificates; their two challenges share _acme-challenge.b.example.com and
// thus one alias. With certmagic's propagation check kept, each challenge
// stays presented through its 2 s sleep, so both are presented at the same
// time; by default (the check off) they may or may not overlap, and a write
// next to the other's value waits until the resolver answers it.
func TestIssueApexAndWildcard(t *testing.T) {
	requireLab(t)
	for _, tc := range []struct {
		name    string
		tls     string
		overlap bool
	}{
		{"certmagic's check kept", "propagation_timeout 2m", true},
		{"default", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			label := randomLabel(t, "aw-")
			apex := label + ".example.com"
			alias := "_acme-challenge." + apex + ".validation.example.org"
			delegate(t, apex)
			before := productionSerials(t)
			c := startCaddyfile(t, "debug", fmt.Sprintf(`%s, *.%s {
	tls {
		dns alias _acme-challenge.{domain}.validation.example.org {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
		%s
	}
	respond "b"
}`, apex, apex, rfc2136(), theLab.Resolver, theLab.Resolver, tc.tls))
			took := c.waitCerts([]string{apex, "*." + apex}, 90*time.Second)
			t.Logf("apex + wildcard, %s: certificates after %s", tc.name, took.Round(time.Millisecond))

			var presentedAt []int
			firstDelete := -1
			for i, e := range c.logLines() {
				switch e.Msg {
				case "presented challenge on alias":
					if e.Alias != alias {
						t.Errorf("challenge of %s presented at %s, want %s", e.Domain, e.Alias, alias)
					}
					presentedAt = append(presentedAt, i)
				case "deleted challenge from alias":
					if firstDelete < 0 {
						firstDelete = i
					}
				}
			}
			if len(presentedAt) != 2 {
				t.Fatalf("want 2 challenges presented (apex and wildcard), got %d", len(presentedAt))
			}
			if firstDelete < 0 {
				t.Errorf("caddy's debug log has no \"deleted challenge from alias\" line")
			} else if tc.overlap && presentedAt[1] > firstDelete {
				t.Errorf("the two challenges at %s did not overlap: the second was presented after the first was deleted", alias)
			}
			c.stop()
			assertNoChallengeLeft(t)
			assertProductionUnchanged(t, before)
		})
	}
}

// TestIssueTemplateManyDomains: 20 names under two production zones, one
// template, one validation zone, one site block.
func TestIssueTemplateManyDomains(t *testing.T) {
	requireLab(t)
	var names, records []string
	for _, zone := range []string{"example.com", "example.net"} {
		for i := 1; i <= 10; i++ {
			name := fmt.Sprintf("c%02d.%s", i, zone)
			names = append(names, name)
			records = append(records, delegation(name))
		}
	}
	publish(t, records...)
	before := productionSerials(t)
	c := startCaddyfile(t, "", templateSite(strings.Join(names, ", "), rfc2136(), "", ""))
	took := c.waitCerts(names, 150*time.Second)
	t.Logf("template, 20 names: certificates after %s", took.Round(time.Millisecond))
	for _, name := range names {
		if e := c.presentedFor(name); e.Alias != "_acme-challenge."+name+".validation.example.org" || e.Zone != "validation.example.org" {
			t.Errorf("challenge of %s presented at %s in zone %s", name, e.Alias, e.Zone)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueFollowTwoHops: follow mode through _acme-challenge.d.example.net
// -> d.hop.example -> _acme-challenge.d.example.net.validation.example.org.
func TestIssueFollowTwoHops(t *testing.T) {
	requireLab(t)
	const end = "_acme-challenge.d.example.net.validation.example.org"
	publish(t,
		"_acme-challenge.d.example.net. 60 IN CNAME d.hop.example.",
		"d.hop.example. 60 IN CNAME "+end+".")
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`d.example.net {
	tls {
		dns alias {
			%s
			follow
			zone validation.example.org
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "d"
}`, rfc2136(), theLab.Resolver, theLab.Resolver))
	cert, took := c.waitCert("d.example.net", 90*time.Second)
	assertNames(t, cert, "d.example.net")
	t.Logf("follow, two hops: certificate after %s", took.Round(time.Millisecond))
	if e := c.presentedFor("d.example.net"); e.Alias != end {
		t.Errorf("follow mode wrote at %s, want the end of the chain %s", e.Alias, end)
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueRuleSecondServer: a per-domain rule sends e.example.net to
// alias2.example on the second authoritative server, with its own key; the
// default template sends e.example.com to validation.example.org.
func TestIssueRuleSecondServer(t *testing.T) {
	requireLab(t)
	publish(t,
		"_acme-challenge.e.example.com. 60 IN CNAME _acme-challenge.e.example.com.validation.example.org.",
		"_acme-challenge.e.example.net. 60 IN CNAME _acme-challenge.e.example.net.alias2.example.")
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`e.example.com, e.example.net {
	tls {
		dns alias {
			%s
			zone validation.example.org
			alias _acme-challenge.{domain}.validation.example.org
			resolvers %s
			private_nameservers
			rule e.example.net {
				alias _acme-challenge.{domain}.alias2.example
				zone alias2.example
				provider rfc2136 {
					key_name %s
					key {env.TSIG_SECRET_2}
					key_alg hmac-sha256
					server %s
				}
			}
		}
		resolvers %s
	}
	respond "e"
}`, rfc2136(), theLab.Resolver, theLab.CaddyKey2.Name, theLab.AuthB, theLab.Resolver))
	took := c.waitCerts([]string{"e.example.com", "e.example.net"}, 90*time.Second)
	t.Logf("rule on the second server: certificates after %s", took.Round(time.Millisecond))
	for _, want := range []logLine{
		{Domain: "e.example.com", Alias: "_acme-challenge.e.example.com.validation.example.org", Zone: "validation.example.org"},
		{Domain: "e.example.net", Alias: "_acme-challenge.e.example.net.alias2.example", Zone: "alias2.example"},
	} {
		if e := c.presentedFor(want.Domain); e.Alias != want.Alias || e.Zone != want.Zone || e.Provider != "rfc2136" {
			t.Errorf("challenge of %s presented at %s in zone %s through %s; want %s in %s through rfc2136",
				want.Domain, e.Alias, e.Zone, e.Provider, want.Alias, want.Zone)
		}
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueAdminLoad: scenario (a)'s static alias for f.example.com, with the
// config written as JSON and posted to the admin API's /load while Caddy
// runs.
func TestIssueAdminLoad(t *testing.T) {
	l := requireLab(t)
	publish(t, "_acme-challenge.f.example.com. 60 IN CNAME _acme-challenge.validation.example.org.")
	before := productionSerials(t)
	c := startCaddy(t, "", "", func(c *caddyProc) string {
		return fmt.Sprintf(`{"admin": {"listen": %q}}`, c.admin)
	})
	c.waitAdmin(20 * time.Second)

	config := fmt.Sprintf(`{
  "admin": {"listen": %q},
  "storage": {"module": "file_system", "root": %q},
  "apps": {
    "http": {
      "http_port": %d,
      "https_port": %d,
      "servers": {
        "f": {
          "listen": [":%d"],
          "routes": [
            {
              "match": [{"host": ["f.example.com"]}],
              "handle": [{"handler": "static_response", "body": "f"}],
              "terminal": true
            }
          ]
        }
      }
    },
    "tls": {
      "automation": {
        "policies": [
          {
            "subjects": ["f.example.com"],
            "issuers": [
              {
                "module": "acme",
                "ca": %q,
                "email": "test@example.com",
                "trusted_roots_pem_files": [%q],
                "challenges": {
                  "dns": {
                    "provider": {
                      "name": "alias",
                      "alias": "_acme-challenge.validation.example.org",
                      "resolvers": [%q],
                      "private_nameservers": true,
                      "provider": {
                        "name": "rfc2136",
                        "key_name": %q,
                        "key": "{env.TSIG_SECRET}",
                        "key_alg": "hmac-sha256",
                        "server": %q
                      }
                    },
                    "resolvers": [%q]
                  }
                }
              }
            ],
            "disable_ocsp_stapling": true
          }
        ]
      }
    }
  }
}`, c.admin, c.storage, freePort(t), c.httpsPort, c.httpsPort, l.PebbleDir, l.PebbleCAPEM,
		l.Resolver, l.CaddyKey.Name, l.AuthA, l.Resolver)
	if !json.Valid([]byte(config)) {
		t.Fatalf("the test's JSON config is not valid JSON:\n%s", config)
	}
	c.started = time.Now()
	status, body := c.adminCall(http.MethodPost, "/load", "application/json", []byte(config))
	if status != http.StatusOK {
		t.Fatalf("POST /load: %d %s; log:\n%s", status, body, c.log.String())
	}
	cert, took := c.waitCert("f.example.com", 90*time.Second)
	assertNames(t, cert, "f.example.com")
	t.Logf("JSON via admin /load: certificate after %s (from the POST)", took.Round(time.Millisecond))
	if e := c.presentedFor("f.example.com"); e.Alias != "_acme-challenge.validation.example.org" {
		t.Errorf("challenge presented at %s", e.Alias)
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueMissingCNAME: a domain whose _acme-challenge CNAME was never
// published. The gate aborts the obtain at once, Caddy's log prints the
// record to publish, nothing is written anywhere.
func TestIssueMissingCNAME(t *testing.T) {
	requireLab(t)
	// a fresh label each run: no earlier run can have published it
	name := randomLabel(t, "g-") + ".example.com"
	before := productionSerials(t)
	c := startCaddyfile(t, "", fmt.Sprintf(`%s {
	tls {
		dns alias _acme-challenge.validation.example.org {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "g"
}`, name, rfc2136(), theLab.Resolver, theLab.Resolver))
	missing := "_acme-challenge." + name + " has no CNAME record"
	fix := "publish in the production zone: _acme-challenge." + name + ". 300 IN CNAME _acme-challenge.validation.example.org."
	if !c.waitLog(missing, 20*time.Second) {
		t.Fatalf("caddy's log does not say %q within 20 s of start; log:\n%s", missing, c.log.String())
	}
	took := time.Since(c.started)
	t.Logf("missing CNAME: error in the log after %s", took.Round(time.Millisecond))
	var reported bool
	for _, e := range c.logLines() {
		if e.Msg == "will retry" && strings.Contains(e.Error, "obtaining certificate aborted by event handler") && strings.Contains(e.Error, missing) {
			reported = true
			if !strings.Contains(e.Error, fix) {
				t.Errorf("caddy's error does not print the record to publish, %q: %s", fix, e.Error)
			}
		}
	}
	if !reported {
		t.Errorf("no \"will retry\" error of the aborted obtain names the missing record; log:\n%s", c.log.String())
	}
	if took > 15*time.Second {
		t.Errorf("the missing delegation was reported only %s after Caddy started", took)
	}
	if p := c.presented(); len(p) > 0 {
		t.Errorf("a challenge was presented although the delegation is missing: %s", p[0].raw)
	}
	if f := c.certFile(name); f != "" {
		t.Errorf("a certificate was stored for %s: %s", name, f)
	}
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestIssueRenewal: with a Pebble issuing 40 s certificates, Caddy renews
// scenario (a)'s certificate on its own schedule, through the same
// delegation (a challenge presented for a renewal), and serves the renewed
// certificate.
func TestIssueRenewal(t *testing.T) {
	l := requireLab(t)
	const name = "h.example.com"
	publish(t, "_acme-challenge.h.example.com. 60 IN CNAME _acme-challenge.validation.example.org.")
	before := productionSerials(t)
	p := startPebble(t, 40*time.Second)
	c := startCaddy(t, "", "caddyfile", func(c *caddyProc) string {
		return c.globalOptions(&p.lab, "renew_interval 2s") + fmt.Sprintf(`
%s {
	tls {
		dns alias _acme-challenge.validation.example.org {
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
	}
	respond "h"
}
`, name, rfc2136(), l.Resolver, l.Resolver)
	})
	first, took := c.waitCertFrom(name, 60*time.Second, p.lab.VerifyPebbleChain)
	assertNames(t, first, name)
	t.Logf("renewal: first certificate (serial %x, valid %s) after %s", first.SerialNumber,
		first.NotAfter.Sub(first.NotBefore).Round(time.Second), took.Round(time.Millisecond))
	if v := first.NotAfter.Sub(first.NotBefore); v > time.Minute {
		t.Fatalf("the test Pebble issued a certificate valid %s, want about 40 s", v)
	}

	// the renewed certificate in storage
	var renewed *x509.Certificate
	for deadline := time.Now().Add(60 * time.Second); ; {
		if chain := parseChain(t, name, c.storedChain(name)); chain[0].SerialNumber.Cmp(first.SerialNumber) != 0 {
			if err := p.lab.VerifyPebbleChain(testCtx(t, 30*time.Second), chain, name); err != nil {
				t.Fatalf("renewed certificate does not verify: %v", err)
			}
			renewed = chain[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not renew %s within 60 s; log:\n%s", name, c.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertNames(t, renewed, name)
	if !renewed.NotBefore.After(first.NotBefore) {
		t.Errorf("renewed certificate's NotBefore %s is not after the first's %s", renewed.NotBefore, first.NotBefore)
	}
	t.Logf("renewal: renewed certificate (serial %x) after %s", renewed.SerialNumber, time.Since(c.started).Round(time.Millisecond))

	// and served
	var served *x509.Certificate
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		chain := c.served(name)
		if chain[0].SerialNumber.Cmp(first.SerialNumber) != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := p.lab.VerifyPebbleChain(ctx, chain, name)
			cancel()
			if err != nil {
				t.Fatalf("served certificate does not verify: %v", err)
			}
			served = chain[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy still serves the first certificate (serial %x) 15 s after renewing", first.SerialNumber)
		}
	}
	if !served.NotBefore.After(first.NotBefore) {
		t.Errorf("served certificate's NotBefore %s is not after the first's %s", served.NotBefore, first.NotBefore)
	}
	// A renewal presents a challenge through the delegation, unless Pebble
	// reused the first order's valid authorization: PEBBLE_AUTHZREUSE=0
	// still reuses one in a hundred (wfe.go compares rand.Intn(100) >
	// percent). Caddy keeps renewing 40 s certificates, so a later one
	// presents.
	issuance := c.presentedFor(name).str("value")
	c.waitMatch("presenting a renewal's challenge for "+name, 90*time.Second, func(l logLine) bool {
		return l.Msg == "presented challenge on alias" && l.Domain == name && l.str("value") != issuance
	})
	// Caddy keeps renewing 40 s certificates; stop it so that no renewal is
	// in flight when the zones are inspected.
	c.stop()
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}
