package alias

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission admits a name for on-demand TLS only if the name delegated its
// _acme-challenge to us: its CNAME chain ends at the alias the running
// config's dns.providers.alias expects (static, template, rule) or inside
// one of its alias zones (follow), with no wildcard synthesis and no loop.
// Answers are cached, and concurrent handshakes for one name share one
// check, so a flood of handshakes for unknown names stays a trickle of DNS
// queries.
type Permission struct {
	// How long a refusal is remembered. Default: 1 minute.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// The longest an admission is remembered; within it, the CNAME
	// records' TTLs decide. Default: 5 minutes.
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`

	// How many names are remembered at most. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Optionally, an ask endpoint (as Caddy's http permission module) that
	// must also say yes, for platforms that keep a customer list. It is
	// asked only after the delegation check passed.
	Ask string `json:"ask,omitempty"`

	admission *solver.Admission
	ask       *caddytls.PermissionByHTTP
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Permission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.alias",
		New: func() caddy.Module { return new(Permission) },
	}
}

// Provision sets up the cache and the optional ask endpoint.
func (p *Permission) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	if p.NegativeTTL < 0 || p.MaxTTL < 0 || p.CacheSize < 0 {
		return fmt.Errorf("negative_ttl, max_ttl and cache_size must not be negative")
	}
	if p.Ask != "" {
		p.ask = &caddytls.PermissionByHTTP{Endpoint: p.Ask}
		if err := p.ask.Provision(ctx); err != nil {
			return fmt.Errorf("ask: %w", err)
		}
	}
	p.admission = &solver.Admission{
		Check:       p.check,
		MaxTTL:      time.Duration(p.MaxTTL),
		NegativeTTL: time.Duration(p.NegativeTTL),
		MaxEntries:  p.CacheSize,
	}
	return nil
}

// check runs the delegation check of the alias provider that covers name.
func (p *Permission) check(ctx context.Context, name string) (time.Duration, error) {
	prov := providerFor(activeProviders(), name)
	if prov == nil {
		return 0, fmt.Errorf("no dns.providers.alias in the running config covers %s", name)
	}
	_, rep := prov.checker().CheckChain(ctx, name)
	if err := rep.Err(); err != nil {
		return 0, err
	}
	return rep.ChainTTL(), nil
}

// CertificateAllowed admits name if its delegation check passes (and the ask
// endpoint, if configured, agrees).
func (p *Permission) CertificateAllowed(ctx context.Context, name string) error {
	if err := p.admission.Allow(ctx, name); err != nil {
		p.logger.Info("on-demand certificate refused", zap.String("name", name), zap.Error(err))
		return fmt.Errorf("%s: %w: %w", name, caddytls.ErrPermissionDenied, err)
	}
	if p.ask != nil {
		return p.ask.CertificateAllowed(ctx, name)
	}
	return nil
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	permission alias {
//	    negative_ttl <duration>
//	    max_ttl      <duration>
//	    cache_size   <n>
//	    ask          <url>
//	}
func (p *Permission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var arg string
		if !d.AllArgs(&arg) {
			return d.ArgErr()
		}
		switch d.Val() {
		case "negative_ttl", "max_ttl":
			dur, err := caddy.ParseDuration(arg)
			if err != nil {
				return d.Errf("%s: %v", d.Val(), err)
			}
			if d.Val() == "negative_ttl" {
				p.NegativeTTL = caddy.Duration(dur)
			} else {
				p.MaxTTL = caddy.Duration(dur)
			}
		case "cache_size":
			var err error
			if p.CacheSize, err = strconv.Atoi(arg); err != nil {
				return d.Errf("cache_size: %v", err)
			}
		case "ask":
			p.Ask = arg
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
}

var (
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddy.Provisioner           = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
