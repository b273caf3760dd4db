package alias

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/acme-alias/caddy-dns-alias/internal/caddyconf"
	"github.com/acme-alias/caddy-dns-alias/providers"
)

// UnmarshalCaddyfile sets up the provider from Caddyfile tokens. Syntax:
//
//	alias [<alias>] {
//	    provider <name> [<provider options...>]
//	    acme_dns {                   # instead of provider
//	        server     <acme-dns API URL>
//	        username   <username>
//	        password   <password>
//	        subdomain  <subdomain>
//	        fulldomain <fulldomain>
//	    }
//	    zone     <alias zone...>
//	    alias    <name or template>
//	    follow
//	    resolvers <ip[:port]...>
//	    private_nameservers          # ask nameservers at loopback/private addresses too
//	    max_hops <n>
//	    authoritative_wait <duration | -1>
//	    caa_identities <ca domain...>
//	    rule <domain or *.suffix...> {
//	        alias    <name or template>
//	        follow
//	        zone     <alias zone...>
//	        provider <name> [<provider options...>]
//	        acme_dns { ... }         # instead of provider, as above
//	    }
//	}
func (p *Provider) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume provider name
	if d.NextArg() {
		p.Alias = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "provider":
			raw, err := caddyconf.InnerProvider(d)
			if err != nil {
				return err
			}
			p.ProviderRaw = raw
		case "zone", "zones":
			zones, err := caddyconf.AtLeastOneArg(d)
			if err != nil {
				return err
			}
			p.Zones = append(p.Zones, zones...)
		case "alias":
			if !d.AllArgs(&p.Alias) {
				return d.ArgErr()
			}
		case "follow":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.Follow = true
		case "resolvers":
			resolvers, err := caddyconf.AtLeastOneArg(d)
			if err != nil {
				return err
			}
			p.Resolvers = append(p.Resolvers, resolvers...)
		case "private_nameservers":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.PrivateNameservers = true
		case "max_hops":
			n, err := intArg(d, "max_hops")
			if err != nil {
				return err
			}
			p.MaxHops = n
		case "authoritative_wait":
			dur, err := caddyconf.DurationArg(d, "authoritative_wait", true)
			if err != nil {
				return err
			}
			p.AuthoritativeWait = dur
		case "caa_identities":
			ids, err := caddyconf.AtLeastOneArg(d)
			if err != nil {
				return err
			}
			p.CAAIdentities = append(p.CAAIdentities, ids...)
		case "acme_dns":
			acct, err := unmarshalACMEDNS(d)
			if err != nil {
				return err
			}
			p.ACMEDNS = acct
		case "rule":
			rule, err := unmarshalRule(d)
			if err != nil {
				return err
			}
			p.Rules = append(p.Rules, rule)
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
}

func unmarshalRule(d *caddyfile.Dispenser) (*Rule, error) {
	rule := new(Rule)
	var err error
	if rule.Match, err = caddyconf.AtLeastOneArg(d); err != nil {
		return nil, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "alias":
			if !d.AllArgs(&rule.Alias) {
				return nil, d.ArgErr()
			}
		case "follow":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			rule.Follow = true
		case "zone", "zones":
			zones, err := caddyconf.AtLeastOneArg(d)
			if err != nil {
				return nil, err
			}
			rule.Zones = append(rule.Zones, zones...)
		case "provider":
			if rule.ProviderRaw, err = caddyconf.InnerProvider(d); err != nil {
				return nil, err
			}
		case "acme_dns":
			if rule.ACMEDNS, err = unmarshalACMEDNS(d); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized rule subdirective '%s'", d.Val())
		}
	}
	return rule, nil
}

// unmarshalACMEDNS parses an `acme_dns { server ... }` block; the fields are
// checked at provision.
func unmarshalACMEDNS(d *caddyfile.Dispenser) (*providers.ACMEDNSAccount, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	acct := new(providers.ACMEDNSAccount)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var field *string
		switch d.Val() {
		case "server":
			field = &acct.Server
		case "username":
			field = &acct.Username
		case "password":
			field = &acct.Password
		case "subdomain":
			field = &acct.Subdomain
		case "fulldomain":
			field = &acct.FullDomain
		default:
			return nil, d.Errf("unrecognized acme_dns subdirective '%s'", d.Val())
		}
		if !d.AllArgs(field) {
			return nil, d.ArgErr()
		}
	}
	return acct, nil
}

// intArg reads the one integer argument of the subdirective field.
func intArg(d *caddyfile.Dispenser, field string) (int, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, d.Errf("%s: %v", field, err)
	}
	return n, nil
}

var _ caddyfile.Unmarshaler = (*Provider)(nil)

func init() {
	httpcaddyfile.RegisterGlobalOption("dns_alias", parseAppOption)
}

// parseAppOption sets up the dns_alias app from the global option of that
// name. Syntax:
//
//	dns_alias {
//	    sweep_after       <duration>
//	    sweep_interval    <duration>
//	    check_interval    <duration | -1>
//	    check_concurrency <n>
//	}
func parseAppOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("dns_alias: the global option is already set")
	}
	app := new(App)
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch field := d.Val(); field {
		case "sweep_after":
			app.SweepAfter, err = caddyconf.DurationArg(d, field, false)
		case "sweep_interval":
			app.SweepInterval, err = caddyconf.DurationArg(d, field, false)
		case "check_interval":
			app.CheckInterval, err = caddyconf.DurationArg(d, field, true)
		case "check_concurrency":
			app.CheckConcurrency, err = intArg(d, field)
		default:
			err = d.Errf("unrecognized dns_alias option '%s'", field)
		}
		if err != nil {
			return nil, err
		}
	}
	return httpcaddyfile.App{Name: "dns_alias", Value: caddyconfig.JSON(app, nil)}, nil
}
