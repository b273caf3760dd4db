package alias

import (
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// minAuthoritativeWait is the shortest authoritative_wait: a shorter one
// fails every write (a secondary serves an update after a NOTIFY and a zone
// transfer, and even a primary on loopback gets few polls in less), while
// the fast path has switched certmagic's own check off.
const minAuthoritativeWait = time.Second

// certmagicCheckTimeout is certmagic's default propagation timeout, which
// the provider's own wait at a shared alias name takes over.
const certmagicCheckTimeout = 2 * time.Minute

// fastPath switches certmagic's propagation check off for the issuer this
// provider solves for, unless the config sets propagation options or the
// issuer's resolvers differ from the provider's: once a
// write returns, every authoritative server of the alias zone serves the
// record, and certmagic's check (a fixed 2 s sleep, then polling) only
// adds time. The one thing that check also covers, a recursive resolver's
// cache holding a shared alias name's earlier values, the provider covers
// itself whenever certmagic's check is off.
//
// The fast-path contract: this is the plugin's one write into another
// module's config, the parent issuer's propagation_timeout, and only while
// it is unset. Neither certmagic's DNS01Solver nor caddytls offers a
// provider a way to say it has waited already, and the issuer copies the
// setting into the solver it builds after its provider's Provision
// (caddytls acmeissuer.go, v2.11). A release that builds the solver first
// would make every challenge 2 s slower, not fail: the lab test
// TestFastPathDefault (xcaddy_test) asserts from certmagic's own log that
// it did not poll for such a name, and fails naming this contract.
// docs/architecture.md describes it.
func (p *Provider) fastPath(parent caddy.Module, logger *zap.Logger) {
	switch parent := parent.(type) {
	case *caddytls.ACMEIssuer:
		if parent.Challenges == nil || parent.Challenges.DNS == nil {
			return
		}
		dns := parent.Challenges.DNS
		if dns.PropagationTimeout == 0 && dns.PropagationDelay == 0 && !p.sameResolvers(dns.Resolvers) {
			// certmagic's check finds the authoritative servers through
			// the issuer's resolvers; the authoritative wait through the
			// provider's. Where they differ (a split-horizon resolver on
			// one side) the wait may have asked other servers.
			logger.Info("certmagic's DNS propagation check stays on for this issuer: its resolvers differ from the alias provider's, and the check finds the authoritative servers through them; give the alias provider the same resolvers, or set propagation_timeout -1, to rely on authoritative_wait alone",
				zap.String("ca", parent.CA), zap.Strings("issuer_resolvers", dns.Resolvers))
			return
		}
		if dns.PropagationTimeout == 0 && dns.PropagationDelay == 0 {
			dns.PropagationTimeout = -1
			logger.Info("certmagic's DNS propagation check is off for this issuer: authoritative_wait already waits until every authoritative server of the alias zone serves each record; set propagation_timeout to keep certmagic's check",
				zap.String("ca", parent.CA))
		}
		if dns.PropagationTimeout == -1 {
			p.writer.RecursiveWait = certmagicCheckTimeout
		}
	case *caddytls.TLS:
		logger.Info("certmagic's DNS propagation check stays on (2 s more per certificate): the global dns provider is set up before, and apart from, the ACME issuers, whose propagation settings it cannot change; configure the alias provider in the issuer (acme_dns, or dns in a tls block) to skip it")
	}
}

// sameResolvers reports whether an issuer's resolvers are the provider's
// (in any order; none means certmagic's defaults, which the fast path has
// always stood in for).
func (p *Provider) sameResolvers(issuer []string) bool {
	if len(issuer) == 0 {
		return true
	}
	r, err := solver.NewResolver(issuer, 0)
	if err != nil {
		return false
	}
	mine := slices.Sorted(slices.Values(p.writer.Mapper.Resolver.Servers()))
	return slices.Equal(slices.Sorted(slices.Values(r.Servers())), mine)
}
