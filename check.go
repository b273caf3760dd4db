package alias

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

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
			// A wildcard is mapped as its base domain: they share a challenge name.
			if _, err := p.Mapper.Rule(strings.TrimPrefix(solver.Normalize(domain), "*.")); err == nil {
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
	items := make([]checkItem, 0, len(domains))
	for _, d := range domains {
		p := providerFor(ps, d)
		if p == nil {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no dns.providers.alias in the running config covers %s", d)}
		}
		items = append(items, checkItem{p, d})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(runChecks(r.Context(), items))
}

// presentedRecord is one challenge record presented now, as the admin API
// lists it: where and since when, never its value.
type presentedRecord struct {
	solver.Presented
	AgeSeconds int64 `json:"age_seconds"`
}

func (AdminAPI) handlePresented(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	out := []presentedRecord{}
	now := time.Now()
	for _, p := range activeProviders() {
		if p.Provider != nil {
			for _, pr := range p.Presented() {
				out = append(out, presentedRecord{pr, int64(now.Sub(pr.Since) / time.Second)})
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// checkItem is one domain to check and the provider whose mapping applies.
type checkItem struct {
	p      *Provider
	domain string
}

func runChecks(ctx context.Context, items []checkItem) []*solver.Report {
	reports := make([]*solver.Report, 0, len(items))
	for _, it := range items {
		reports = append(reports, it.p.checker().Check(ctx, it.domain))
	}
	return reports
}

// checkAll checks every domain with its provider and writes a table (or
// JSON) to w. It returns the domains that failed.
func checkAll(ctx context.Context, w io.Writer, items []checkItem, asJSON bool) ([]string, error) {
	reports := runChecks(ctx, items)
	var failed []string
	for _, r := range reports {
		if !r.OK {
			failed = append(failed, r.Domain)
		}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return failed, enc.Encode(reports)
	}
	return failed, writeTable(w, reports)
}

// writeTable prints one row per domain, and under a row its findings
// (notes marked so) and the record that fixes it. The rows' columns are aligned by hand: the
// indented lines under them must not widen the columns.
func writeTable(w io.Writer, reports []*solver.Report) error {
	rows := [][]string{{"DOMAIN", "MODE", "RESULT", "CNAME CHAIN"}}
	for _, r := range reports {
		result := "ok"
		if !r.OK {
			result = "FAIL"
		}
		rows = append(rows, []string{r.Domain, r.Mode, result, chainString(r)})
	}
	width := make([]int, 3)
	for _, row := range rows {
		for i := range width {
			width[i] = max(width[i], len(row[i]))
		}
	}
	var b strings.Builder
	for i, row := range rows {
		fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", width[0], row[0], width[1], row[1], width[2], row[2], row[3])
		if i == 0 {
			continue
		}
		r := reports[i-1]
		for _, f := range r.Findings {
			if f.Fatal {
				fmt.Fprintf(&b, "  %s: %s\n", f.Code, f.Message)
			} else {
				fmt.Fprintf(&b, "  %s (note): %s\n", f.Code, f.Message)
			}
		}
		if r.Fix != "" {
			fmt.Fprintf(&b, "  fix: %s\n", r.Fix)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// chainString shows the chain as far as it was resolved: "(no CNAME)" when
// the challenge name has none, "(?)" where resolving it stopped on an error.
func chainString(r *solver.Report) string {
	c := r.Chain
	parts := []string{cmp.Or(c.Start, r.ChallengeName)}
	for _, h := range c.Hops {
		parts = append(parts, h.Target)
	}
	s := strings.Join(parts, " -> ")
	switch {
	case c.End == "":
		s += " (?)"
	case len(c.Hops) == 0:
		s += " (no CNAME)"
	}
	return s
}

var (
	_ caddy.AdminRouter  = (*AdminAPI)(nil)
	_ caddy.CleanerUpper = (*Provider)(nil)
)
