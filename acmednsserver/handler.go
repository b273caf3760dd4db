package acmednsserver

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

	alias "github.com/acme-alias/caddy-dns-alias"
	"github.com/acme-alias/caddy-dns-alias/internal/caddyconf"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("acme_dns_server", parseHandler)
	// After the auth directives (basic_auth, forward_auth) and the
	// routing ones (handle, route), before the terminal ones (respond,
	// reverse_proxy, file_server): the handler answers its own paths and
	// passes the rest on to them.
	httpcaddyfile.RegisterDirectiveOrder("acme_dns_server", httpcaddyfile.Before, "respond")
}

// Handler serves the acme-dns HTTP API (POST /update, GET /health)
// for ACME clients that are not Caddy, and writes each account's values at
// <subdomain>.<zone> through an inner DNS provider, with the alias
// provider's confinement, journal and sweep. Other paths go to the next
// handler.
type Handler struct {
	// The alias zone; account subdomain s writes at s.<zone>. The
	// domains' owners publish _acme-challenge.<domain> CNAME s.<zone>.
	Zone string `json:"zone,omitempty"`

	// The DNS provider that writes into the zone.
	ProviderRaw json.RawMessage `json:"provider,omitempty" caddy:"namespace=dns.providers inline_key=name"`

	// The accounts.
	Accounts []HandlerAccount `json:"accounts,omitempty"`

	// POST /register, off unless set: new accounts, kept in Caddy's
	// storage so that every instance of a cluster serves them.
	Register *HandlerRegister `json:"register,omitempty"`

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

	server *Server
	zone   string
}

// HandlerAccount is one acme-dns account.
type HandlerAccount struct {
	Username string `json:"username,omitempty"`
	// The bcrypt hash of the account's key (X-Api-Key), e.g. from
	// `caddy hash-password`; placeholders such as {env.*} are expanded.
	KeyHash   string `json:"key_hash,omitempty"`
	Subdomain string `json:"subdomain,omitempty"`
	// Networks (CIDR) or addresses the account's updates may come from.
	// Default: any.
	AllowFrom []string `json:"allow_from,omitempty"`
}

// HandlerRegister turns POST /register on.
type HandlerRegister struct {
	// The networks (CIDR) or addresses registrations may come from; at
	// least one.
	AllowFrom []string `json:"allow_from,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.acme_dns_server",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the writer (alias.NewZoneWriter: confined to the zone,
// registered with the dns_alias app for its journal, sweeps and metrics)
// and the API server over it.
func (h *Handler) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	zone := solver.Normalize(repl.ReplaceKnown(h.Zone, ""))
	if zone == "" {
		return errors.New("acme_dns_server: zone: the alias zone the accounts write in is required")
	}
	if h.ProviderRaw == nil {
		return fmt.Errorf("acme_dns_server: provider: the DNS provider that writes into %s is required", zone)
	}
	accounts := make([]Account, len(h.Accounts))
	for i, a := range h.Accounts {
		allow, err := ParseAllowFrom(a.AllowFrom)
		if err != nil {
			return fmt.Errorf("acme_dns_server: accounts[%d].allow_from: %w", i, err)
		}
		accounts[i] = Account{Username: a.Username, KeyHash: repl.ReplaceKnown(a.KeyHash, ""),
			Subdomain: repl.ReplaceKnown(a.Subdomain, ""), AllowFrom: allow}
	}
	writer, err := alias.NewZoneWriter(ctx, h, alias.ZoneWriterConfig{Zone: zone, ProviderRaw: h.ProviderRaw,
		Resolvers: h.Resolvers, PrivateNameservers: h.PrivateNameservers, AuthoritativeWait: h.AuthoritativeWait})
	if err != nil {
		return fmt.Errorf("acme_dns_server: %w", err)
	}
	updates, err := registerUpdates(ctx)
	if err != nil {
		return fmt.Errorf("acme_dns_server: registering metrics: %w", err)
	}
	var register *Register
	if h.Register != nil {
		allow, err := ParseAllowFrom(h.Register.AllowFrom)
		if err != nil {
			return fmt.Errorf("acme_dns_server: register.allow_from: %w", err)
		}
		register = &Register{AllowFrom: allow, Store: accountStore{ctx.Storage(), zone}}
	}
	server, err := New(Config{
		Zone:     zone,
		Accounts: accounts,
		Records:  writer,
		Logger:   ctx.Logger(),
		Observer: updates,
		ClientIP: clientIP,
		Register: register,
		HTTPReq:  h.HTTPReq,
	})
	if err != nil {
		return fmt.Errorf("acme_dns_server: %w", err)
	}
	h.server = server
	h.zone = zone
	return nil
}

// clientIP is the request's client address as Caddy determined it
// (trusted_proxies honoured).
func clientIP(r *http.Request) (netip.Addr, error) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.server.Handles(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	h.server.ServeHTTP(w, r)
	return nil
}

// accountStore keeps registered accounts in Caddy's storage, one key per
// account below the zone's prefix. User names reach it only in the shape
// registration makes them (the server checks), so a key never leaves the
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

func (s accountStore) Load(ctx context.Context, user string) (Account, bool, error) {
	data, err := s.storage.Load(ctx, s.key(user))
	if errors.Is(err, fs.ErrNotExist) {
		return Account{}, false, nil
	}
	if err != nil {
		return Account{}, false, fmt.Errorf("loading %s from storage %s: %w", s.key(user), caddyconf.StorageName(s.storage), err)
	}
	var sa storedAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return Account{}, false, fmt.Errorf("account %s in storage: %w", s.key(user), err)
	}
	allow, err := ParseAllowFrom(sa.AllowFrom)
	if err != nil {
		return Account{}, false, fmt.Errorf("account %s in storage: allow_from: %w", s.key(user), err)
	}
	return Account{Username: sa.Username, KeyHash: sa.KeyHash, Subdomain: sa.Subdomain, AllowFrom: allow}, true, nil
}

func (s accountStore) Save(ctx context.Context, a Account) error {
	sa := storedAccount{Username: a.Username, KeyHash: a.KeyHash, Subdomain: a.Subdomain}
	for _, p := range a.AllowFrom {
		sa.AllowFrom = append(sa.AllowFrom, p.String())
	}
	data, err := json.Marshal(sa)
	if err != nil {
		return err
	}
	if err := s.storage.Store(ctx, s.key(a.Username), data); err != nil {
		return fmt.Errorf("storing %s in storage %s: %w", s.key(a.Username), caddyconf.StorageName(s.storage), err)
	}
	return nil
}

// parseHandler sets up the handler from the Caddyfile. Syntax:
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
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Handler)
	return s, s.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile reads the acme_dns_server directive's block.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
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
			h.ProviderRaw, err = caddyconf.InnerProvider(d)
		case "account":
			args := d.RemainingArgs()
			if len(args) < 3 {
				return d.Errf("account: want <username> <key hash> <subdomain> [<allow_from...>], got %d arguments", len(args))
			}
			h.Accounts = append(h.Accounts, HandlerAccount{Username: args[0], KeyHash: args[1], Subdomain: args[2], AllowFrom: args[3:]})
		case "register":
			var nets []string
			nets, err = caddyconf.AtLeastOneArg(d)
			h.Register = &HandlerRegister{AllowFrom: nets}
		case "httpreq":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.HTTPReq = true
		case "resolvers":
			var rs []string
			rs, err = caddyconf.AtLeastOneArg(d)
			h.Resolvers = append(h.Resolvers, rs...)
		case "private_nameservers":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.PrivateNameservers = true
		case "authoritative_wait":
			h.AuthoritativeWait, err = caddyconf.DurationArg(d, field, true)
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
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
