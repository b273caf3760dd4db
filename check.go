package alias

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// active holds the alias providers of the running config, in provisioning
// order, so that the admin API can check domains against them.
var active struct {
	sync.Mutex
	providers []*Provider
}

func register(p *Provider) {
	active.Lock()
	defer active.Unlock()
	active.providers = append(active.providers, p)
}

// Cleanup forgets the provider when its config is unloaded.
func (p *Provider) Cleanup() error {
	active.Lock()
	defer active.Unlock()
	active.providers = slices.DeleteFunc(active.providers, func(q *Provider) bool { return q == p })
	return nil
}

func activeProviders() []*Provider {
	active.Lock()
	defer active.Unlock()
	return slices.Clone(active.providers)
}

// providerFor returns the first provider among ps whose mapping covers
// domain.
func providerFor(ps []*Provider, domain string) *Provider {
	for _, p := range ps {
		if p.Provider != nil {
			if _, err := p.Mapper.Rule(solver.Normalize(domain)); err == nil {
				return p
			}
		}
	}
	return nil
}

// checker builds the delegation checker of a provisioned provider.
func (p *Provider) checker() *solver.Checker {
	return &solver.Checker{Mapper: p.Mapper, CAIdentities: p.CAAIdentities}
}

// AdminAPI adds delegation checks to Caddy's admin API:
//
//	GET /dns-alias/check?domain=<domain>[&domain=...]  reports, as JSON
//	GET /dns-alias/presented                          challenge records presented now
//
// Neither prints record values or any credential.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.dns_alias",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/dns-alias/check", Handler: caddy.AdminHandlerFunc(a.handleCheck)},
		{Pattern: "/dns-alias/presented", Handler: caddy.AdminHandlerFunc(a.handlePresented)},
	}
}

func (AdminAPI) handleCheck(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	domains := r.URL.Query()["domain"]
	if len(domains) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("give at least one ?domain=")}
	}
	ps := activeProviders()
	reports := make([]*solver.Report, 0, len(domains))
	for _, d := range domains {
		p := providerFor(ps, d)
		if p == nil {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no dns.providers.alias in the running config covers %s", d)}
		}
		reports = append(reports, p.checker().Check(r.Context(), d))
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(reports)
}

func (AdminAPI) handlePresented(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	out := []solver.Presented{}
	for _, p := range activeProviders() {
		if p.Provider != nil {
			out = append(out, p.Presented()...)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// checkAll checks every domain with the provider that covers it and writes
// a table (or JSON) to w. It reports whether every check passed.
func checkAll(ctx context.Context, w io.Writer, ps []*Provider, domains []string, asJSON bool) (bool, error) {
	var reports []*solver.Report
	for _, d := range domains {
		p := providerFor(ps, d)
		if p == nil {
			return false, fmt.Errorf("no dns.providers.alias in the config covers %s", d)
		}
		reports = append(reports, p.checker().Check(ctx, d))
	}
	ok := !slices.ContainsFunc(reports, func(r *solver.Report) bool { return !r.OK })
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return ok, enc.Encode(reports)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tMODE\tRESULT\tCNAME CHAIN")
	for _, r := range reports {
		result := "ok"
		if !r.OK {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Domain, r.Mode, result, chainString(r.Chain))
		for _, f := range r.Findings {
			fmt.Fprintf(tw, "  %s: %s\t\t\t\n", f.Code, f.Message)
		}
		if r.Fix != "" {
			fmt.Fprintf(tw, "  fix: %s\t\t\t\n", r.Fix)
		}
	}
	return ok, tw.Flush()
}

func chainString(c solver.Chain) string {
	parts := []string{c.Start}
	for _, h := range c.Hops {
		parts = append(parts, h.Target)
	}
	s := strings.Join(parts, " -> ")
	if len(c.Hops) == 0 {
		s += " (no CNAME)"
	}
	return s
}

var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.CleanerUpper = (*Provider)(nil)
)
