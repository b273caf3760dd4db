// Package acmednsserver is the acme-dns endpoint: the Caddy HTTP handler
// http.handlers.acme_dns_server (Caddyfile directive acme_dns_server), its
// admin route and metrics, and the acme-dns HTTP API it serves (POST
// /update with X-Api-User and X-Api-Key, GET /health, optionally POST
// /register and lego's httpreq) for ACME clients that are not Caddy. Each
// account's TXT values are written at its own name in an alias zone
// through the plugin's zone writer (alias.NewZoneWriter).
//
// It is a package of its own, registered only in builds that import it
// (xcaddy build --with github.com/acme-alias/caddy-dns-alias/acmednsserver):
// it takes credentials from the network and has its own threat model. The
// plugin's other packages do not import it.
//
// The API server (Server) holds the protocol: accounts and their key
// check, the shape of a value, the two newest values per account, and the
// bounds on what a request may cost. It reaches DNS only through Records.
package acmednsserver

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// Account is one acme-dns account: its user name, the bcrypt hash of its
// key, the label of its name in the alias zone and the networks its
// updates may come from (none: any).
type Account struct {
	Username  string
	KeyHash   string
	Subdomain string
	AllowFrom []netip.Prefix
}

// ParseAllowFrom parses allow_from entries, CIDR networks or single
// addresses. Errors name the entry.
func ParseAllowFrom(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network (CIDR) nor an IP address", e)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// validate checks an account against zone; errors name the field.
func (a Account) validate(zone string) error {
	if a.Username == "" || len(a.Username) > 64 || strings.ContainsFunc(a.Username, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return fmt.Errorf("username %q: 1-64 printable ASCII characters without spaces", a.Username)
	}
	if a.Username == registeredLabel || a.Username == "unknown" {
		return fmt.Errorf("username %q: taken by the metrics for all registered accounts or for requests naming no account", a.Username)
	}
	if _, err := bcrypt.Cost([]byte(a.KeyHash)); err != nil {
		// The hash itself is no secret worth hiding, but an operator
		// may have put the key here by mistake: it is not printed.
		return fmt.Errorf("key_hash of %s: not a bcrypt hash (make one with caddy hash-password): %w", a.Username, err)
	}
	if a.Subdomain == "" || strings.Contains(a.Subdomain, ".") || a.Subdomain != solver.Normalize(a.Subdomain) {
		return fmt.Errorf("subdomain %q of %s: one DNS label in lower case", a.Subdomain, a.Username)
	}
	if err := solver.ValidName(a.Subdomain + "." + zone + "."); err != nil {
		return fmt.Errorf("subdomain %q of %s: %w", a.Subdomain, a.Username, err)
	}
	return nil
}

// allowed reports whether src may use the account.
func (a Account) allowed(src netip.Addr) bool {
	if len(a.AllowFrom) == 0 {
		return true
	}
	for _, p := range a.AllowFrom {
		if p.Contains(src.Unmap()) {
			return true
		}
	}
	return false
}

// AccountInfo describes an account without its key hash, for listings.
type AccountInfo struct {
	Username   string   `json:"username"`
	Subdomain  string   `json:"subdomain"`
	FullDomain string   `json:"fulldomain"`
	AllowFrom  []string `json:"allow_from,omitempty"`
	// Registered is set for an account made by POST /register.
	Registered bool `json:"registered,omitempty"`
	// Values is how many TXT values the account holds now (at most two).
	Values int `json:"values"`
}
