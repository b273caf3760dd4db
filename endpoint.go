package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"path"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"

	"github.com/acme-alias/caddy-dns-alias/acmednsapi"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(ACMEDNSServer{})
	httpcaddyfile.RegisterHandlerDirective("acme_dns_server", parseACMEDNSServer)
	// After the auth directives (basic_auth, forward_auth) and the
	// routing ones (handle, route), before the terminal ones (respond,
	// reverse_proxy, file_server): the handler answers its own paths and
	// passes the rest on to them.
	httpcaddyfile.RegisterDirectiveOrder("acme_dns_server", httpcaddyfile.Before, "respond")
}

// ACMEDNSServer serves the acme-dns HTTP API (POST /update, GET /health)
// for ACME clients that are not Caddy, and writes each account's values at
// <subdomain>.<zone> through an inner DNS provider, with the alias
// provider's confinement, journal and sweep. Other paths go to the next
// handler.
type ACMEDNSServer struct {
	// The alias zone; account subdomain s writes at s.<zone>. The
	// domains' owners publish _acme-challenge.<domain> CNAME s.<zone>.
	Zone string `json:"zone,omitempty"`

	// The DNS provider that writes into the zone.
	ProviderRaw json.RawMessage `json:"provider,omitempty" caddy:"namespace=dns.providers inline_key=name"`

	// The accounts.
	Accounts []ACMEDNSServerAccount `json:"accounts,omitempty"`

	// POST /register, off unless set: new accounts, kept in Caddy's
	// storage so that every instance of a cluster serves them.
	Register *ACMEDNSServerRegister `json:"register,omitempty"`

	// Serve lego's httpreq API too: POST /present and /cleanup with the
	// account's user name and key as basic auth, for clients that clean
	// up after themselves.
	HTTPReq bool `json:"httpreq,omitempty"`

	// As in the alias provider: resolvers for the authoritative wait's
	// nameserver lookups, loopback/private nameservers allowed, and how
	// long a write waits until every authoritative server of the zone
	// serves it (-1: not at all; default 2 minutes).
	Resolvers          []string       `json:"resolvers,omitempty"`
	PrivateNameservers bool           `json:"private_nameservers,omitempty"`
	AuthoritativeWait  caddy.Duration `json:"authoritative_wait,omitempty"`

	writer *Provider
	server *acmednsapi.Server
	zone   string
}

// ACMEDNSServerAccount is one acme-dns account.
type ACMEDNSServerAccount struct {
	Username string `json:"username,omitempty"`
	// The bcrypt hash of the account's key (X-Api-Key), e.g. from
	// `caddy hash-password`; placeholders such as {env.*} are expanded.
	KeyHash   string `json:"key_hash,omitempty"`
	Subdomain string `json:"subdomain,omitempty"`
	// Networks (CIDR) or addresses the account's updates may come from.
	// Default: any.
	AllowFrom []string `json:"allow_from,omitempty"`
}

// ACMEDNSServerRegister turns POST /register on.
type ACMEDNSServerRegister struct {
	// The networks (CIDR) or addresses registrations may come from; at
	// least one.
	AllowFrom []string `json:"allow_from,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (ACMEDNSServer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.acme_dns_server",
		New: func() caddy.Module { return new(ACMEDNSServer) },
	}
}

// Provision builds the writer (an alias provider confined to the zone,
// registered with the dns_alias app for its journal, sweeps and metrics)
// and the API server over it.
func (h *ACMEDNSServer) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	zone := solver.Normalize(repl.ReplaceKnown(h.Zone, ""))
	if zone == "" {
		return errors.New("acme_dns_server: zone: the alias zone the accounts write in is required")
	}
	if h.ProviderRaw == nil {
		return fmt.Errorf("acme_dns_server: provider: the DNS provider that writes into %s is required", zone)
	}
	accounts := make([]acmednsapi.Account, len(h.Accounts))
	for i, a := range h.Accounts {
		allow, err := acmednsapi.ParseAllowFrom(a.AllowFrom)
		if err != nil {
			return fmt.Errorf("acme_dns_server: accounts[%d].allow_from: %w", i, err)
		}
		accounts[i] = acmednsapi.Account{Username: a.Username, KeyHash: repl.ReplaceKnown(a.KeyHash, ""),
			Subdomain: repl.ReplaceKnown(a.Subdomain, ""), AllowFrom: allow}
	}
	// Follow mode with the one zone: the rule that confines every write
	// to the zone, and by which the journal's sweep (here or on another
	// instance with the same config) knows the entries as this writer's.
	h.writer = &Provider{ProviderRaw: h.ProviderRaw, Zones: []string{zone}, Follow: true,
		Resolvers: h.Resolvers, PrivateNameservers: h.PrivateNameservers, AuthoritativeWait: h.AuthoritativeWait}
	if err := h.writer.Provision(ctx); err != nil {
		return fmt.Errorf("acme_dns_server: %w", err)
	}
	var register *acmednsapi.Register
	if h.Register != nil {
		allow, err := acmednsapi.ParseAllowFrom(h.Register.AllowFrom)
		if err != nil {
			return fmt.Errorf("acme_dns_server: register.allow_from: %w", err)
		}
		register = &acmednsapi.Register{AllowFrom: allow, Store: accountStore{ctx.Storage(), zone}}
	}
	server, err := acmednsapi.New(acmednsapi.Config{
		Zone:     zone,
		Accounts: accounts,
		Records:  aliasRecords{h.writer},
		Logger:   ctx.Logger(),
		Observer: h.writer.app.metrics,
		ClientIP: clientIP,
		Register: register,
		HTTPReq:  h.HTTPReq,
	})
	if err != nil {
		return fmt.Errorf("acme_dns_server: %w", err)
	}
	h.server = server
	h.zone = zone
	h.writer.app.modules.addEndpoint(h)
	return nil
}

// clientIP is the request's client address as Caddy determined it
// (trusted_proxies honoured).
func clientIP(r *http.Request) (netip.Addr, error) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

func (h *ACMEDNSServer) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.server.Handles(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	h.server.ServeHTTP(w, r)
	return nil
}

// aliasRecords adapts the alias provider's writer to the API server's one
// way to DNS: the single place that knows both.
type aliasRecords struct{ p *Provider }

func (r aliasRecords) Present(ctx context.Context, name, value string) error {
	r.p.app.ops.Add(1)
	defer r.p.app.ops.Done()
	return r.p.writer.PresentAt(ctx, name, value)
}

func (r aliasRecords) Remove(ctx context.Context, name, value string) error {
	_, err := r.p.DeleteRecords(ctx, solver.FQDN(name), []libdns.Record{libdns.TXT{Name: solver.FQDN(name), Text: value}})
	return err
}

// accountStore keeps registered accounts in Caddy's storage, one key per
// account below the zone's prefix. User names reach it only in the shape
// registration makes them (acmednsapi checks), so a key never leaves the
// prefix.
type accountStore struct {
	storage certmagic.Storage
	zone    string
}

// storedAccount is a registered account as stored: the key's bcrypt hash,
// never the key.
type storedAccount struct {
	Username  string   `json:"username"`
	KeyHash   string   `json:"key_hash"`
	Subdomain string   `json:"subdomain"`
	AllowFrom []string `json:"allow_from,omitempty"`
}

func (s accountStore) key(user string) string {
	return path.Join("dns_alias", "acme_dns", s.zone, "accounts", user+".json")
}

func (s accountStore) Load(ctx context.Context, user string) (acmednsapi.Account, bool, error) {
	data, err := s.storage.Load(ctx, s.key(user))
	if errors.Is(err, fs.ErrNotExist) {
		return acmednsapi.Account{}, false, nil
	}
	if err != nil {
		return acmednsapi.Account{}, false, fmt.Errorf("loading %s from storage %s: %w", s.key(user), storageName(s.storage), err)
	}
	var sa storedAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return acmednsapi.Account{}, false, fmt.Errorf("account %s in storage: %w", s.key(user), err)
	}
	allow, err := acmednsapi.ParseAllowFrom(sa.AllowFrom)
	if err != nil {
		return acmednsapi.Account{}, false, fmt.Errorf("account %s in storage: allow_from: %w", s.key(user), err)
	}
	return acmednsapi.Account{Username: sa.Username, KeyHash: sa.KeyHash, Subdomain: sa.Subdomain, AllowFrom: allow}, true, nil
}

func (s accountStore) Save(ctx context.Context, a acmednsapi.Account) error {
	sa := storedAccount{Username: a.Username, KeyHash: a.KeyHash, Subdomain: a.Subdomain}
	for _, p := range a.AllowFrom {
		sa.AllowFrom = append(sa.AllowFrom, p.String())
	}
	data, err := json.Marshal(sa)
	if err != nil {
		return err
	}
	if err := s.storage.Store(ctx, s.key(a.Username), data); err != nil {
		return fmt.Errorf("storing %s in storage %s: %w", s.key(a.Username), storageName(s.storage), err)
	}
	return nil
}

// parseACMEDNSServer sets up the handler from the Caddyfile. Syntax:
//
//	acme_dns_server [<matcher>] {
//	    zone     <alias zone>
//	    provider <name> [<provider options...>]
//	    account  <username> <key bcrypt hash> <subdomain> [<allow_from network...>]
//	    register <allow_from network...>   # POST /register, off without it
//	    httpreq                               # lego's httpreq API (/present, /cleanup) too
//	    resolvers <ip[:port]...>
//	    private_nameservers
//	    authoritative_wait <duration | -1>
//	}
func parseACMEDNSServer(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(ACMEDNSServer)
	return s, s.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile reads the acme_dns_server directive's block.
func (h *ACMEDNSServer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch field := d.Val(); field {
		case "zone":
			if !d.AllArgs(&h.Zone) {
				return d.ArgErr()
			}
		case "provider":
			h.ProviderRaw, err = unmarshalInner(d)
		case "account":
			args := d.RemainingArgs()
			if len(args) < 3 {
				return d.Errf("account: want <username> <key hash> <subdomain> [<allow_from...>], got %d arguments", len(args))
			}
			h.Accounts = append(h.Accounts, ACMEDNSServerAccount{Username: args[0], KeyHash: args[1], Subdomain: args[2], AllowFrom: args[3:]})
		case "register":
			var nets []string
			nets, err = atLeastOneArg(d)
			h.Register = &ACMEDNSServerRegister{AllowFrom: nets}
		case "httpreq":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.HTTPReq = true
		case "resolvers":
			var rs []string
			rs, err = atLeastOneArg(d)
			h.Resolvers = append(h.Resolvers, rs...)
		case "private_nameservers":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.PrivateNameservers = true
		case "authoritative_wait":
			h.AuthoritativeWait, err = durationArg(d, field, true)
		default:
			err = d.Errf("unrecognized acme_dns_server option '%s'", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*ACMEDNSServer)(nil)
	_ caddyhttp.MiddlewareHandler = (*ACMEDNSServer)(nil)
	_ caddyfile.Unmarshaler       = (*ACMEDNSServer)(nil)
)
