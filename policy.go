package alias

import (
	"cmp"
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
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

// issuerSolver is an ACME issuer that solves the DNS challenge, as the
// policy map needs it: its own alias provider, if its config names one,
// and whether its config names a DNS provider at all (one that is no alias
// provider included). An issuer that names none solves with the tls app's
// global dns provider, as caddytls's acmeissuer.go decides.
type issuerSolver struct {
	acme          *caddytls.ACMEIssuer
	own           *Provider
	namesProvider bool
}

// automationPolicy is one tls automation policy as configured: its
// subjects, settings and the issuers among its own that solve the DNS
// challenge, in order.
type automationPolicy struct {
	subjects     []string
	onDemand     bool
	renewalRatio float64
	issuers      []issuerSolver
}

// buildPolicies is the one decision of which alias provider obtains the
// names of each policy, for the running app (tlsPolicies) and the check
// command (configPolicies): the first issuer that solves with an alias
// provider, its own or the global one (nil if the global dns provider is
// no alias provider).
func buildPolicies(aps []automationPolicy, global *Provider) []policy {
	pols := make([]policy, len(aps))
	for i, ap := range aps {
		pols[i] = policy{index: i, subjects: ap.subjects, onDemand: ap.onDemand, renewalRatio: ap.renewalRatio}
		for _, iss := range ap.issuers {
			p := iss.own
			if !iss.namesProvider {
				p = global
			}
			if p != nil {
				pols[i].provider, pols[i].issuer = p, iss.acme
				break
			}
		}
	}
	return pols
}

// solvesDNS returns the ACME issuer of an issuer module that solves the
// DNS challenge, or nil.
func solvesDNS(iss any) *caddytls.ACMEIssuer {
	acme, ok := iss.(*caddytls.ACMEIssuer)
	if !ok || acme.Challenges == nil || acme.Challenges.DNS == nil {
		return nil
	}
	return acme
}

// globalIssuers lists, by position (policy, issuer), the ACME issuers of
// a tls app's config that solve the DNS challenge and name no DNS provider
// of their own, so that they use its global dns provider. It reads the
// issuers' JSON, so it must run before the tls app provisions its
// automation policies (which consumes that JSON): the tls app loads its
// global dns provider first ("before provisioning other modules, since
// they may rely on this", caddytls tls.go), and that provider's Provision
// calls this. A policy already provisioned has no JSON left and counts as
// using none, so that a Caddy release that provisions in another order
// makes the gate skip names rather than check names another provider
// solves; TestPolicyProviders fails then.
func globalIssuers(tlsApp *caddytls.TLS) [][2]int {
	if tlsApp.Automation == nil {
		return nil
	}
	var out [][2]int
	for i, ap := range tlsApp.Automation.Policies {
		for j, raw := range ap.IssuersRaw {
			var iss issuerModule
			if json.Unmarshal(raw, &iss) == nil && iss.Module == "acme" && solvesDNS(&iss.ACMEIssuer) != nil && iss.Challenges.DNS.ProviderRaw == nil {
				out = append(out, [2]int{i, j})
			}
		}
	}
	return out
}

// tlsPolicies maps the running tls app's automation policies to the alias
// providers registered with the app. A provider loaded by an ACME issuer
// (found through its module lineage at Provision) serves that issuer; one
// loaded by the tls app itself is its global dns provider, which serves the
// issuers its Provision found naming no provider (usesGlobal, by position
// in the config). A policy that auto-HTTPS added later shares the issuers
// of the policy it copied, so the positions are turned into issuers first.
func tlsPolicies(tlsApp *caddytls.TLS, regs []registration, usesGlobal [][2]int) []policy {
	if tlsApp.Automation == nil {
		return nil
	}
	own := map[*caddytls.ACMEIssuer]*Provider{}
	var global *Provider
	for _, r := range regs {
		switch o := r.owner.(type) {
		case *caddytls.ACMEIssuer:
			own[o] = r.p
		case *caddytls.TLS:
			global = r.p
		}
	}
	configured := tlsApp.Automation.Policies
	toGlobal := map[*caddytls.ACMEIssuer]bool{}
	for _, pos := range usesGlobal {
		if pos[0] < len(configured) && pos[1] < len(configured[pos[0]].Issuers) {
			if acme := solvesDNS(configured[pos[0]].Issuers[pos[1]]); acme != nil {
				toGlobal[acme] = true
			}
		}
	}
	aps := make([]automationPolicy, len(configured))
	for i, ap := range configured {
		aps[i] = automationPolicy{subjects: ap.Subjects(), onDemand: ap.OnDemand, renewalRatio: ap.RenewalWindowRatio}
		for _, iss := range ap.Issuers {
			if acme := solvesDNS(iss); acme != nil {
				aps[i].issuers = append(aps[i].issuers, issuerSolver{acme: acme, own: own[acme], namesProvider: !toGlobal[acme]})
			}
		}
	}
	return buildPolicies(aps, global)
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
