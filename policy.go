package alias

import (
	"cmp"
	"reflect"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// policy is one TLS automation policy as the alias providers see it.
type policy struct {
	index    int      // in tls.automation.policies
	subjects []string // none: every name that reaches it
	onDemand bool
	// provider is the alias provider of its first ACME issuer that
	// solves with one, and issuer that issuer; both nil if none does.
	provider *Provider
	issuer   *caddytls.ACMEIssuer
	// renewalRatio is the policy's renewal_window_ratio (0: certmagic's).
	renewalRatio float64
}

// lookupPolicy returns the policy that obtains name, matched the way the
// tls app matches: the first policy without subjects or with a subject
// that matches name. nil means Caddy's default policy, whose issuers never
// solve the DNS challenge.
func lookupPolicy(pols []policy, name string) *policy {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for i, p := range pols {
		if len(p.subjects) == 0 {
			return &pols[i]
		}
		for _, s := range p.subjects {
			if certmagic.MatchWildcard(name, strings.ToLower(s)) {
				return &pols[i]
			}
		}
	}
	return nil
}

// tlsPolicies maps the running tls app's automation policies to the alias
// providers registered with the app. A provider loaded by an ACME issuer
// (found through its module lineage at Provision) serves that issuer's
// policy; one loaded by the tls app itself is its global dns provider, used
// by every ACME issuer whose DNS challenge has no provider of its own.
func tlsPolicies(tlsApp *caddytls.TLS, regs []registration, logger *zap.Logger) []policy {
	if tlsApp.Automation == nil {
		return nil
	}
	byIssuer := map[*caddytls.ACMEIssuer]*Provider{}
	var global *Provider
	for _, r := range regs {
		switch o := r.owner.(type) {
		case *caddytls.ACMEIssuer:
			byIssuer[o] = r.p
		case *caddytls.TLS:
			global = r.p
		}
	}
	pols := make([]policy, len(tlsApp.Automation.Policies))
	for i, ap := range tlsApp.Automation.Policies {
		pols[i] = policy{index: i, subjects: ap.Subjects(), onDemand: ap.OnDemand, renewalRatio: ap.RenewalWindowRatio}
		for _, iss := range ap.Issuers {
			acme, ok := iss.(*caddytls.ACMEIssuer)
			if !ok || acme.Challenges == nil || acme.Challenges.DNS == nil {
				continue
			}
			p := byIssuer[acme]
			if p == nil && global != nil && usesProvider(acme, global, logger) {
				p = global
			}
			if p != nil {
				pols[i].provider, pols[i].issuer = p, acme
				break
			}
		}
	}
	return pols
}

// usesProvider reports whether an ACME issuer without an alias provider of
// its own solves its DNS challenge with p, the tls app's global dns
// provider, rather than with a provider of another module. caddytls keeps
// that choice in an unexported field (DNSChallengeConfig.solver, a
// *certmagic.DNS01Solver), so it is read by reflection, read-only; if a
// Caddy version stores it otherwise, the issuer is taken to use the global
// provider, as it does whenever its config names none.
func usesProvider(iss *caddytls.ACMEIssuer, p *Provider, logger *zap.Logger) bool {
	v := reflect.ValueOf(iss.Challenges.DNS).Elem().FieldByName("solver")
	if v.IsValid() && v.Kind() == reflect.Interface && !v.IsNil() {
		if s := v.Elem(); s.Kind() == reflect.Pointer && !s.IsNil() && s.Elem().Kind() == reflect.Struct {
			if prov := s.Elem().FieldByName("DNSProvider"); prov.IsValid() && prov.Kind() == reflect.Interface {
				return !prov.IsNil() && prov.Elem().Kind() == reflect.Pointer && prov.Elem().Pointer() == reflect.ValueOf(p).Pointer()
			}
		}
	}
	logger.Warn("cannot tell which DNS provider an ACME issuer uses; assuming the global dns provider",
		zap.String("ca", iss.CA))
	return true
}

// issuerModule is the JSON of an issuer module, as the check command reads
// it from a config.
type issuerModule struct {
	Module string `json:"module"`
	caddytls.ACMEIssuer
}

// caURL is the ACME directory the issuer orders from.
func caURL(iss *caddytls.ACMEIssuer) string {
	return cmp.Or(iss.CA, certmagic.DefaultACME.CA, certmagic.LetsEncryptProductionCA)
}

// issuerKey is where certmagic keeps the policy's certificates in storage
// (certificates/<issuer key>/...), or "" for a policy without alias
// provider. It is computed from the CA as certmagic computes it, so that it
// works on an issuer not yet attached to a certmagic config.
func (p *policy) issuerKey() string {
	if p.issuer == nil {
		return ""
	}
	return (&certmagic.ACMEIssuer{CA: caURL(p.issuer)}).IssuerKey()
}
