package xcaddy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	fastPathOn    = "certmagic's DNS propagation check is off for this issuer: authoritative_wait already waits until every authoritative server of the alias zone serves each record; set propagation_timeout to keep certmagic's check"
	fastPathOff   = "certmagic's DNS propagation check stays on (2 s more per certificate): the global dns provider is set up before, and apart from, the ACME issuers, whose propagation settings it cannot change; configure the alias provider in the issuer (acme_dns, or dns in a tls block) to skip it"
	certmagicPoll = "checking DNS propagation"
)

// TestFastPathDefault: with Caddy's default propagation settings, an alias
// provider in a site's tls block switches certmagic's propagation check off
// for its issuer (saying so once), a site with an explicit
// propagation_timeout keeps it, and a site on the global dns option keeps
// it too, as the provider says when it starts. All three get their
// certificates; certmagic's debug log shows which of them it polled for.
func TestFastPathDefault(t *testing.T) {
	requireLab(t)
	label := randomLabel(t, "fp-")
	fast, kept, global := label+"-fast.example.com", label+"-kept.example.com", label+"-global.example.com"
	delegate(t, fast, kept, global)
	provider := fmt.Sprintf(`alias _acme-challenge.{domain}.validation.example.org {
		%s
		resolvers %s
		private_nameservers
	}`, rfc2136(), theLab.Resolver)
	site := func(name, tls string) string {
		return fmt.Sprintf("%s {\n\ttls {\n\t\t%s\n\t\tresolvers %s\n\t}\n\trespond \"ok\"\n}\n", name, tls, theLab.Resolver)
	}
	c := startCaddyfile(t, "debug\n\tdns "+provider,
		site(fast, "dns "+provider)+
			site(kept, "dns "+provider+"\n\t\tpropagation_timeout 2m")+
			site(global, "dns"))
	c.waitCerts([]string{fast, kept, global}, 90*time.Second)
	if n := len(c.linesWith(fastPathOn, "", "")); n != 1 {
		t.Errorf("%q logged %d times, want once (for the fast site's issuer)", fastPathOn, n)
	}
	if n := len(c.linesWith(fastPathOff, "", "")); n != 1 {
		t.Errorf("%q logged %d times, want once (for the global provider)", fastPathOff, n)
	}
	for name, want := range map[string]bool{fast: false, kept: true, global: true} {
		polled := false
		for _, l := range c.linesWith(certmagicPoll, "", "") {
			polled = polled || strings.Contains(l.str("fqdn"), name)
		}
		switch {
		case polled && !want:
			t.Errorf("%s: certmagic checked propagation although the alias provider set its issuer's propagation_timeout to -1: "+
				"this Caddy release builds the issuer's DNS solver before it provisions the provider, which breaks the fast-path contract "+
				"(fastpath.go, docs/architecture.md); every alias-issued certificate now takes 2 s longer", name)
		case !polled && want:
			t.Errorf("%s: certmagic did not check propagation, but its issuer keeps certmagic's check", name)
		}
	}
	c.stop()
	assertNoChallengeLeft(t)
}
