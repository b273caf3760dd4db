package alias

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// maxHopsLimit bounds max_hops: Let's Encrypt's resolver (Unbound) gives
// up after about 8-11 CNAME restarts, so a longer chain can never validate.
const maxHopsLimit = 16

// validateConfig checks the fields of p that building the mapping does not,
// before anything is built: each config that decodes but can never work
// fails at `caddy validate`, naming the field. repl expands placeholders as
// Provision does.
func validateConfig(p *Provider, repl *caddy.Replacer) error {
	for i, r := range p.Rules {
		if r == nil {
			return fmt.Errorf("rules[%d]: null is not a rule (give match and alias, follow or a provider)", i)
		}
	}
	if err := notNestedAlias("", p.ProviderRaw); err != nil {
		return err
	}
	for i, r := range p.Rules {
		if err := notNestedAlias(fmt.Sprintf("rules[%d].", i), r.ProviderRaw); err != nil {
			return err
		}
	}
	for i, s := range p.Resolvers {
		if err := solver.ValidResolver(repl.ReplaceKnown(s, "")); err != nil {
			return fmt.Errorf("resolvers[%d]: %w", i, err)
		}
	}
	if p.MaxHops < 0 || p.MaxHops > maxHopsLimit {
		return fmt.Errorf("max_hops: %d is not between 0 (the default) and %d; Let's Encrypt's resolver follows no more than about 8-11 CNAMEs", p.MaxHops, maxHopsLimit)
	}
	for i, s := range p.CAAIdentities {
		if id := strings.TrimSpace(repl.ReplaceKnown(s, "")); id == "" || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' }) {
			return fmt.Errorf("caa_identities[%d]: %q is not a CA's issuer domain name (e.g. letsencrypt.org)", i, s)
		}
	}
	return nil
}

// notNestedAlias refuses an inner provider (field prefix+"provider") that
// is an alias provider itself: it would map the alias again, onto names no
// CNAME delegates.
func notNestedAlias(prefix string, raw json.RawMessage) error {
	if isAlias(raw) {
		return fmt.Errorf("%sprovider: an alias provider cannot wrap another alias provider (dns.providers.alias); give the DNS provider that writes the alias zone", prefix)
	}
	return nil
}
