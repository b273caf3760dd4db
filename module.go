// Package alias is the Caddy glue of caddy-dns-alias: the dns.providers.alias
// module, which moves ACME DNS-01 challenge records onto a CNAME-delegated
// alias zone written through another dns.providers module.
package alias

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/providers"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(Provider{})
}

// Provider wraps another DNS provider module and writes every ACME challenge
// record at an alias name in a validation zone instead of the production zone.
// Exactly one of Alias and Follow sets the default mapping; Rules override it
// per domain.
type Provider struct {
	// The inner DNS provider that writes into the alias zone.
	ProviderRaw json.RawMessage `json:"provider,omitempty" caddy:"namespace=dns.providers inline_key=name"`

	// The alias zones. Every write must lie inside one of them. Optional
	// for a static or template alias (the zone is then found by an SOA
	// lookup of the alias), required for follow mode.
	Zones []string `json:"zones,omitempty"`

	// A static alias name (e.g. "_acme-challenge.validation.example.org")
	// or a template with {domain} or {domain_hash} (e.g.
	// "_acme-challenge.{domain}.validation.example.org").
	Alias string `json:"alias,omitempty"`

	// Follow the CNAME chain of _acme-challenge.<domain> and write where it
	// ends, provided that lies inside one of Zones.
	Follow bool `json:"follow,omitempty"`

	// Per-domain rules, each with its own alias and optionally its own
	// provider. The most specific match wins.
	Rules []*Rule `json:"rules,omitempty"`

	// An acme-dns account that writes the challenges instead of an inner
	// provider. The alias defaults to the account's fulldomain and must
	// equal it; the zones default to the acme-dns server's domain.
	ACMEDNS *providers.ACMEDNSAccount `json:"acme_dns,omitempty"`

	// DNS resolvers (IP or IP:port) for CNAME and SOA lookups. Default: the
	// system's resolvers.
	Resolvers []string `json:"resolvers,omitempty"`

	// Ask nameservers directly (drift checks, propagation waits) at
	// addresses that are not global unicast: loopback, private and
	// link-local. For private deployments and test labs only: off, such
	// addresses are skipped, so that whoever owns a zone cannot aim this
	// server's queries at its own network.
	PrivateNameservers bool `json:"private_nameservers,omitempty"`

	// The longest CNAME chain followed. Default: 8.
	MaxHops int `json:"max_hops,omitempty"`

	// How long a write waits for every authoritative server of the alias
	// zone to serve the new record before it fails. Once it returns, the
	// record is served, so the ACME issuer's own propagation check can be
	// turned off (propagation_timeout -1) to save its fixed 2 s sleep.
	// -1 disables the wait. Default: 2 minutes.
	AuthoritativeWait caddy.Duration `json:"authoritative_wait,omitempty"`

	// CAA issuer domains of the CA, for the delegation check's CAA verdict
	// when the CA's ACME directory lists none (meta.caaIdentities). With
	// neither, CAA records are reported but not judged.
	CAAIdentities []string `json:"caa_identities,omitempty"`

	// writer is the write path (solver's libdns provider), of which the
	// module exports exactly the libdns methods; sweeper keeps its journal.
	writer  *solver.Provider
	sweeper *solver.Sweeper
	app     *App
	// acmeDNS are the writers of its acme-dns accounts, whose shared
	// bookkeeping Cleanup gives back.
	acmeDNS []*providers.ACMEDNSWriter
}

// Rule maps matching domains onto their own alias, optionally written by
// their own provider into their own zones.
type Rule struct {
	// Domains ("example.com", which covers *.example.com too) and patterns
	// ("*.example.com": every name below example.com).
	Match []string `json:"match,omitempty"`

	// Static alias or template, as in Provider.
	Alias string `json:"alias,omitempty"`

	// Follow the CNAME chain, as in Provider.
	Follow bool `json:"follow,omitempty"`

	// Alias zones of this rule. A rule without its own provider inherits
	// the provider's zones along with its inner provider.
	Zones []string `json:"zones,omitempty"`

	// The inner provider of this rule. Default: the provider's.
	ProviderRaw json.RawMessage `json:"provider,omitempty" caddy:"namespace=dns.providers inline_key=name"`

	// An acme-dns account for this rule instead of a provider, as in
	// Provider.
	ACMEDNS *providers.ACMEDNSAccount `json:"acme_dns,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dns.providers.alias",
		New: func() caddy.Module { return new(Provider) },
	}
}

// Provision loads the inner providers, expands placeholders and validates
// the mapping, so that bad config fails at `caddy validate`.
func (p *Provider) Provision(ctx caddy.Context) error {
	return p.provision(ctx, owner(ctx))
}

// provision builds the provider for the module parent, which loaded it (an
// ACME issuer, the tls app) or made it (NewZoneWriter's caller), and
// registers it with the config's dns_alias app.
func (p *Provider) provision(ctx caddy.Context, parent caddy.Module) error {
	repl := caddy.NewReplacer()
	expand := func(ss []string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = repl.ReplaceKnown(s, "")
		}
		return out
	}
	if err := validateConfig(p, repl); err != nil {
		return err
	}

	writer, writerName, acme, err := loadWriter(ctx, p, p.ProviderRaw, p.ACMEDNS, repl, "")
	if err != nil {
		return err
	}
	if acme != nil {
		p.acmeDNS = append(p.acmeDNS, acme)
	}

	resolver, err := solver.NewResolver(expand(p.Resolvers), 0)
	if err != nil {
		return fmt.Errorf("resolvers: %w", err)
	}
	resolver.PrivateNameservers = p.PrivateNameservers
	mapper := &solver.Mapper{Resolver: resolver, MaxHops: p.MaxHops}

	zones := expand(p.Zones)
	alias := repl.ReplaceKnown(p.Alias, "")
	if acme != nil {
		if alias, zones, err = acmeDNSAlias("", alias, p.Follow, zones, acme); err != nil {
			return err
		}
	}
	if alias != "" || p.Follow {
		rule, err := newRule(nil, alias, p.Follow, zones, writer, writerName)
		if err != nil {
			return err
		}
		mapper.Default = rule
	} else if len(p.Rules) == 0 {
		return fmt.Errorf("alias: no alias, follow or rules configured")
	}

	for i, r := range p.Rules {
		ruleWriter, ruleWriterName, ruleZones, ruleACME := writer, writerName, expand(r.Zones), acme
		if r.ProviderRaw != nil || r.ACMEDNS != nil {
			prefix := fmt.Sprintf("rules[%d].", i)
			if ruleWriter, ruleWriterName, ruleACME, err = loadWriter(ctx, r, r.ProviderRaw, r.ACMEDNS, repl, prefix); err != nil {
				return err
			}
			if ruleACME != nil {
				p.acmeDNS = append(p.acmeDNS, ruleACME)
			}
		} else if len(ruleZones) == 0 {
			ruleZones = zones
		}
		if len(r.Match) == 0 {
			return fmt.Errorf("rules[%d].match: a rule needs at least one domain or *.suffix pattern", i)
		}
		ruleAlias := repl.ReplaceKnown(r.Alias, "")
		if ruleACME != nil {
			if ruleAlias, ruleZones, err = acmeDNSAlias(fmt.Sprintf("rules[%d].", i), ruleAlias, r.Follow, ruleZones, ruleACME); err != nil {
				return err
			}
		}
		rule, err := newRule(expand(r.Match), ruleAlias, r.Follow, ruleZones, ruleWriter, ruleWriterName)
		if err != nil {
			return fmt.Errorf("rules[%d].%w", i, err)
		}
		mapper.Rules = append(mapper.Rules, rule)
	}
	if err := solver.ValidateRules(mapper.Rules); err != nil {
		return err
	}

	p.CAAIdentities = expand(p.CAAIdentities)
	wait := time.Duration(p.AuthoritativeWait)
	switch {
	case wait > 0 && wait < minAuthoritativeWait:
		return fmt.Errorf("authoritative_wait: %s is too short for a write to reach every authoritative server (at least %s; -1 switches the wait off)", wait, minAuthoritativeWait)
	case wait == 0:
		wait = 2 * time.Minute
	case wait < 0:
		wait = 0
	}
	if p.app, err = appFrom(ctx); err != nil {
		return fmt.Errorf("loading the dns_alias app: %w", err)
	}
	p.writer = p.app.newWriter(mapper, ctx.Logger(), wait)
	p.sweeper = p.app.newSweeper(p.writer)
	p.app.register(p, parent)
	if wait > 0 {
		p.fastPath(parent, ctx.Logger())
	}
	return nil
}

// Cleanup gives back the bookkeeping of its acme-dns accounts, which a
// config that names them still holds: Caddy provisions the next config
// before it cleans up the last one. Caddy calls it after a failed
// Provision too.
func (p *Provider) Cleanup() error {
	for _, w := range p.acmeDNS {
		w.Close()
	}
	return nil
}

// AppendRecords is the solver's, counted by the app, so that an exiting
// process waits for the writes under way.
func (p *Provider) AppendRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	p.app.ops.Add(1)
	defer p.app.ops.Done()
	return p.writer.AppendRecords(ctx, zone, records)
}

// DeleteRecords is the solver's, counted: certmagic's cleanup of a
// challenge cancelled by a graceful stop races with the process exit, which
// waits for it.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	p.app.ops.Add(1)
	defer p.app.ops.Done()
	return p.writer.DeleteRecords(ctx, zone, records)
}

// GetRecords is the solver's: the records this process presents. Caddy's
// global dns option demands it.
func (p *Provider) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	return p.writer.GetRecords(ctx, zone)
}

// SetRecords is the solver's: it presents what is not presented yet and
// never replaces a TXT set. Caddy's global dns option demands it.
func (p *Provider) SetRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	p.app.ops.Add(1)
	defer p.app.ops.Done()
	return p.writer.SetRecords(ctx, zone, records)
}

// newRule builds and validates one solver rule. Errors start with the name
// of the offending field.
func newRule(match []string, alias string, follow bool, zones []string, w solver.Writer, wName string) (*solver.Rule, error) {
	rule := &solver.Rule{Match: match, Follow: follow, Zones: zones, Writer: w, WriterName: wName}
	if alias != "" {
		t, err := solver.ParseTemplate(alias)
		if err != nil {
			return nil, fmt.Errorf("alias: %w", err)
		}
		rule.Alias = t
	}
	if err := rule.Validate(); err != nil {
		return nil, err
	}
	return rule, nil
}

// loadWriter loads the writer of the top level (prefix "") or of a rule
// (prefix "rules[N]."): its inner DNS provider module, whose errors are
// scrubbed of the module's credentials, or its acme-dns account.
func loadWriter(ctx caddy.Context, structPtr any, raw json.RawMessage, account *providers.ACMEDNSAccount, repl *caddy.Replacer, prefix string) (solver.Writer, string, *providers.ACMEDNSWriter, error) {
	switch {
	case raw != nil && account != nil:
		return nil, "", nil, fmt.Errorf("%sprovider and %sacme_dns: choose one (acme_dns writes through the acme-dns account itself)", prefix, prefix)
	case account != nil:
		acme, err := newACMEDNS(account, repl, ctx.Logger())
		if err != nil {
			return nil, "", nil, fmt.Errorf("%sacme_dns.%w", prefix, err)
		}
		return acme, providers.ACMEDNSName, acme, nil
	case raw != nil:
		expand := func(s string) string { return repl.ReplaceAll(s, "") }
		if err := providers.EmptySecret(raw, expand); err != nil {
			return nil, "", nil, fmt.Errorf("%sprovider.%w", prefix, err)
		}
		secrets := providers.Secrets(raw, expand)
		mod, err := ctx.LoadModule(structPtr, "ProviderRaw")
		if err != nil {
			return nil, "", nil, fmt.Errorf("%sprovider: loading inner DNS provider: %w", prefix, providers.Redact(err, secrets))
		}
		w, name, err := providers.Writer(mod)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%sprovider: %w", prefix, err)
		}
		return providers.RedactingWriter{Writer: w, Secrets: secrets}, name, nil, nil
	}
	return nil, "", nil, nil
}

// newACMEDNS expands the placeholders of an acme-dns account and returns
// its writer. Errors start with the offending field and never show the
// password.
func newACMEDNS(a *providers.ACMEDNSAccount, repl *caddy.Replacer, logger *zap.Logger) (*providers.ACMEDNSWriter, error) {
	expanded := providers.ACMEDNSAccount{
		Server:     repl.ReplaceKnown(a.Server, ""),
		Username:   repl.ReplaceKnown(a.Username, ""),
		Password:   repl.ReplaceKnown(a.Password, ""),
		Subdomain:  repl.ReplaceKnown(a.Subdomain, ""),
		FullDomain: repl.ReplaceKnown(a.FullDomain, ""),
	}
	return providers.NewACMEDNSWriter(expanded, nil, logger)
}

// acmeDNSAlias checks the alias and zones of a rule (prefix "rules[N]." or
// "") written through an acme-dns account: the alias defaults to the
// account's fulldomain and must equal it, and the zones default to the
// acme-dns server's domain, the zone its nameserver serves.
func acmeDNSAlias(prefix, alias string, follow bool, zones []string, w *providers.ACMEDNSWriter) (string, []string, error) {
	full := w.FullDomain()
	if follow {
		return "", nil, fmt.Errorf("%sfollow: not with acme_dns: the challenge record is written at the acme-dns account's fulldomain %q", prefix, full)
	}
	if alias == "" {
		alias = full
	} else if solver.Normalize(alias) != full {
		return "", nil, fmt.Errorf("%salias: %q must equal the acme-dns account's fulldomain %q", prefix, alias, full)
	}
	if len(zones) == 0 {
		_, server, _ := strings.Cut(full, ".")
		if err := solver.ValidZone(server); err != nil {
			return "", nil, fmt.Errorf("%sacme_dns.fulldomain: the acme-dns server's zone, the default alias zone: %w", prefix, err)
		}
		zones = []string{server}
	}
	return alias, zones, nil
}

// Interface guards.
var (
	_ caddy.Provisioner     = (*Provider)(nil)
	_ caddy.CleanerUpper    = (*Provider)(nil)
	_ certmagic.DNSProvider = (*Provider)(nil)
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
)
