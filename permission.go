package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/internal/caddyconf"
	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission admits a name for on-demand TLS only if the name delegated its
// _acme-challenge to us: the CNAME chain that the alias provider of the
// automation policy that will obtain the name checks ends at the alias that
// provider expects or inside one of its alias zones, with no wildcard
// synthesis and no loop. The nameservers and CAA are left to the gate
// before the order (see App.Admit).
// Answers are cached, concurrent handshakes for one name share one check,
// and the checks under way are bounded per client address and network, in
// total and per registrable domain, so a flood of handshakes for unknown
// names stays a trickle of DNS queries, goroutines and sockets, and one
// client (or a few) cannot take the checks that the others need.
type Permission struct {
	// How long a refusal is remembered. Default: 1 minute.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// The longest an admission is remembered; within it, the CNAME
	// records' TTLs decide. Default: 5 minutes.
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`

	// The shortest an admission is remembered, whatever the CNAME
	// records' TTLs (a TTL of 0 must not turn the cache off). Default:
	// 30 seconds.
	MinTTL caddy.Duration `json:"min_ttl,omitempty"`

	// How many checks may run at once. A handshake for a name that would
	// start one more is refused at once (not remembered: the next
	// handshake asks again). The last quarter starts only checks for
	// client addresses that have none under way. Default: 64.
	MaxChecks int `json:"max_checks,omitempty"`

	// Once half of max_checks are under way, how many of those checks the
	// handshakes of one client address (an IPv4 address, an IPv6 /64) may
	// have started; more are refused at once, not remembered. -1: no
	// limit (and no reserved quarter). Default: 4.
	MaxChecksPerAddress int `json:"max_checks_per_address,omitempty"`

	// The same for one client network (an IPv4 /24, an IPv6 /48). -1: no
	// limit. Default: 16.
	MaxChecksPerNetwork int `json:"max_checks_per_network,omitempty"`

	// How many checks a minute may start for the names under one
	// registrable domain (e.g. example.co.uk); more are refused at once,
	// not remembered. -1: no limit. Default: 30.
	DomainRate int `json:"domain_rate,omitempty"`

	// How many names are remembered at most. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Optionally, another tls.permission module that must also say yes,
	// e.g. Caddy's "http" module asking a platform's customer list. It is
	// asked only after the delegation check passed.
	PermissionRaw json.RawMessage `json:"permission,omitempty" caddy:"namespace=tls.permission inline_key=module"`

	admission *solver.Admission
	also      caddytls.OnDemandPermission
	logger    *zap.Logger
	app       *App
	refusals  *refusallog.Log
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
	p.refusals = refusallog.New(p.logger)
	var err error
	if p.app, err = appFrom(ctx); err != nil {
		return fmt.Errorf("loading the dns_alias app: %w", err)
	}
	switch {
	case p.NegativeTTL < 0:
		return fmt.Errorf("negative_ttl: must not be negative, got %s", time.Duration(p.NegativeTTL))
	case p.MaxTTL < 0:
		return fmt.Errorf("max_ttl: must not be negative, got %s", time.Duration(p.MaxTTL))
	case p.MinTTL < 0:
		return fmt.Errorf("min_ttl: must not be negative, got %s", time.Duration(p.MinTTL))
	case p.MaxTTL > 0 && p.MinTTL > p.MaxTTL:
		return fmt.Errorf("min_ttl: %s is longer than max_ttl %s", time.Duration(p.MinTTL), time.Duration(p.MaxTTL))
	case p.CacheSize < 0:
		return fmt.Errorf("cache_size: must not be negative, got %d", p.CacheSize)
	case p.MaxChecks < 0:
		return fmt.Errorf("max_checks: must not be negative, got %d", p.MaxChecks)
	case p.DomainRate < -1:
		return fmt.Errorf("domain_rate: must be positive, or -1 for no limit, got %d", p.DomainRate)
	case p.MaxChecksPerAddress < -1:
		return fmt.Errorf("max_checks_per_address: must be positive, or -1 for no limit, got %d", p.MaxChecksPerAddress)
	case p.MaxChecksPerNetwork < -1:
		return fmt.Errorf("max_checks_per_network: must be positive, or -1 for no limit, got %d", p.MaxChecksPerNetwork)
	}
	if p.PermissionRaw != nil {
		mod, err := ctx.LoadModule(p, "PermissionRaw")
		if err != nil {
			return fmt.Errorf("permission: %w", err)
		}
		if _, nested := mod.(*Permission); nested {
			return fmt.Errorf("permission: tls.permission.alias inside tls.permission.alias checks the same delegation twice")
		}
		p.also = mod.(caddytls.OnDemandPermission)
	}
	p.admission = &solver.Admission{
		Check:       p.check,
		MaxTTL:      time.Duration(p.MaxTTL),
		MinTTL:      time.Duration(p.MinTTL),
		NegativeTTL: time.Duration(p.NegativeTTL),
		MaxEntries:  p.CacheSize,
		MaxChecks:   p.MaxChecks,
		DomainRate:  p.DomainRate,

		MaxChecksPerAddress: p.MaxChecksPerAddress,
		MaxChecksPerNetwork: p.MaxChecksPerNetwork,
	}
	p.app.modules.addPermission(p)
	return nil
}

// check runs the chain check of the name's policy: a chain that cannot be
// resolved refuses the name (it is not known to lead to us).
func (p *Permission) check(ctx context.Context, name string) (time.Duration, error) {
	target, rep := p.app.Admit(ctx, name)
	if err := rep.Err(); target.Name == "" {
		// Logged here, once per check, not once per handshake: a flood of
		// handshakes for one unknown name makes one line per negative_ttl,
		// and the checks are bounded (per client, in all, per domain). Not
		// sampled: it is the line that tells a customer's name apart.
		p.logger.Info("on-demand certificate refused", zap.String("name", solver.Printable(name)), clientField(clientAddr(ctx)), zap.Error(err))
		return 0, err
	}
	ttl := rep.ChainTTL()
	p.logger.Debug("on-demand certificate admitted", zap.String("name", name), zap.Strings("chain", chainNames(rep)), zap.Duration("cached_for", ttl))
	return ttl, nil
}

func chainNames(rep *solver.Report) []string {
	names := []string{rep.Chain.Start}
	for _, h := range rep.Chain.Hops {
		names = append(names, h.Target)
	}
	return names
}

// CertificateAllowed admits name if its delegation check passes (and the
// nested permission module, if configured, agrees).
func (p *Permission) CertificateAllowed(ctx context.Context, name string) error {
	// The name is a client's (SNI): it reaches logs in this error.
	name = solver.Printable(name)
	if strings.Contains(name, "*") {
		// The delegation check of *.x passes where x is delegated (one
		// challenge name), but on-demand TLS obtains the names clients
		// ask for, one by one.
		return fmt.Errorf("%s: %w: a wildcard name is never admitted for on-demand TLS", name, caddytls.ErrPermissionDenied)
	}
	client := clientAddr(ctx)
	if err := p.admission.Allow(ctx, name, client); err != nil {
		if o := (*solver.OverloadError)(nil); errors.As(err, &o) {
			p.app.metrics.permissionOverload.Inc()
			p.refusals.Write(zap.WarnLevel, o.Limit, "on-demand certificate refused for load; the next handshake asks again",
				zap.String("name", name), clientField(client), zap.String("limit", o.Limit), zap.Error(err))
		}
		return fmt.Errorf("%s: %w: %w", name, caddytls.ErrPermissionDenied, err)
	}
	if p.also != nil {
		return p.also.CertificateAllowed(ctx, name)
	}
	return nil
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	permission alias {
//	    negative_ttl <duration>
//	    max_ttl      <duration>
//	    min_ttl      <duration>
//	    cache_size   <n>
//	    max_checks   <n>
//	    max_checks_per_address <n, -1 for no limit>
//	    max_checks_per_network <n, -1 for no limit>
//	    domain_rate  <checks per minute, -1 for no limit>
//	    ask          <url>                       # sugar for: permission http { endpoint <url> }
//	    permission   <module> [<module options>] # another tls.permission module
//	}
func (p *Permission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "permission":
			p.PermissionRaw, err = unmarshalNestedPermission(d, p.PermissionRaw)
		case "negative_ttl":
			p.NegativeTTL, err = caddyconf.DurationArg(d, opt, false)
		case "max_ttl":
			p.MaxTTL, err = caddyconf.DurationArg(d, opt, false)
		case "min_ttl":
			p.MinTTL, err = caddyconf.DurationArg(d, opt, false)
		case "max_checks":
			p.MaxChecks, err = caddyconf.IntArg(d, opt)
		case "max_checks_per_address":
			p.MaxChecksPerAddress, err = caddyconf.IntArg(d, opt)
		case "max_checks_per_network":
			p.MaxChecksPerNetwork, err = caddyconf.IntArg(d, opt)
		case "domain_rate":
			p.DomainRate, err = caddyconf.IntArg(d, opt)
		case "cache_size":
			p.CacheSize, err = caddyconf.IntArg(d, opt)
		case "ask":
			var url string
			if !d.AllArgs(&url) {
				return d.ArgErr()
			}
			if p.PermissionRaw != nil {
				return d.Err("ask: only one nested permission module (ask is one)")
			}
			p.PermissionRaw = caddyconfig.JSONModuleObject(caddytls.PermissionByHTTP{Endpoint: url}, "module", "http", nil)
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalNestedPermission parses `permission <module> [<options>]`, the
// one other tls.permission module the block may hold.
func unmarshalNestedPermission(d *caddyfile.Dispenser, have json.RawMessage) (json.RawMessage, error) {
	if have != nil {
		return nil, d.Err("permission: only one nested permission module (ask is one too)")
	}
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "tls.permission."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "module", name, nil), nil
}

var (
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddy.Provisioner           = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
