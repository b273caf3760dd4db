package xcaddy_test

import (
	"fmt"
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
