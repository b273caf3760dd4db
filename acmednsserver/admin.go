package acmednsserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	alias "github.com/acme-alias/caddy-dns-alias"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds the acme-dns endpoints' account listing to Caddy's admin
// API:
//
//	GET /dns-alias/acme-dns/accounts   every endpoint's accounts
//	GET /dns-alias/acme-dns/check?account=<user>&domain=<domain>[&domain=...][&ca=<CAA identity>]
//	                                   each domain's delegation to the account's fulldomain
//
// It prints no key and no key hash.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.acme_dns_server",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/dns-alias/acme-dns/accounts", Handler: caddy.AdminHandlerFunc(a.handleAccounts)},
		{Pattern: "/dns-alias/acme-dns/check", Handler: caddy.AdminHandlerFunc(a.handleCheck)},
	}
}

// endpointAccounts are the accounts of one acme-dns endpoint, without
// their key hashes.
type endpointAccounts struct {
	Zone     string        `json:"zone"`
	Accounts []AccountInfo `json:"accounts"`
}

// handleAccounts lists the running config's acme-dns endpoints' accounts:
// the configured ones and the registered ones kept in memory (whose key
// checked out since the config loaded).
func (AdminAPI) handleAccounts(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(runningAccounts())
}

// runningAccounts lists the accounts of the running config's endpoints,
// found through the zone writers they made.
func runningAccounts() []endpointAccounts {
	out := []endpointAccounts{}
	for _, zw := range alias.RunningZoneWriters() {
		if h, ok := zw.Owner().(*Handler); ok {
			out = append(out, endpointAccounts{Zone: h.zone, Accounts: h.server.Accounts()})
		}
	}
	return out
}

var _ caddy.AdminRouter = (*AdminAPI)(nil)
