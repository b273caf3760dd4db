package alias

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// Limits of one /dns-alias/check request: a check costs a few dozen DNS
// queries, so the admin API must not let one request cost thousands (see
// also queriesPerCheckedName), nor many requests at once.
const (
	maxCheckDomains     = 50
	checkConcurrency    = 4
	checkRequestTimeout = 30 * time.Second
	// maxCheckRequests: the admin API is an operator's and a platform's
	// onboarding tool; two requests at once serve both, and a script that
	// loops on it waits its turn instead of multiplying the DNS work.
	maxCheckRequests = 2
)

// AdminAPI adds delegation checks to Caddy's admin API:
//
//	GET  /dns-alias/check?domain=<domain>[&domain=...]   reports, as JSON
//	GET  /dns-alias/presented                           challenge records presented now
//	GET  /dns-alias/status[?domain=<domain>][&state=<s>] the tracked names' health
//	POST /dns-alias/recheck?domain=<domain>[&domain=...] check again now
//
// None prints record values or any credential.
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
		{Pattern: "/dns-alias/status", Handler: caddy.AdminHandlerFunc(a.handleStatus)},
		{Pattern: "/dns-alias/recheck", Handler: caddy.AdminHandlerFunc(a.handleRecheck)},
	}
}

// handleStatus lists the tracked names' health, filtered by ?domain= and
// ?state= (pending, ok, unknown, broken, or a finding code), a page of at
// most ?limit= names (default 1000, at most 10000) after the name ?after=.
func (AdminAPI) handleStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	q := r.URL.Query()
	for k, v := range q {
		if len(v) > 1 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("%s: give it at most once", k)}
		}
	}
	domain, state, after := q.Get("domain"), q.Get("state"), q.Get("after")
	for _, d := range []string{domain, after} {
		if d != "" {
			if _, err := checkDomains([]string{d}); err != nil {
				return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
			}
		}
	}
	if state != "" && !validState(state) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("state %q: want one of %s", state, strings.Join(statusStates(), ", "))}
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxStatusLimit {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("limit %q: want a number from 1 to %d", l, maxStatusLimit)}
		}
		limit = n
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(app.watch.status(domain, state, after, limit))
}

// statusStates are the values ?state= takes: the states, "broken" for any
// finding, and the findings that break a delegation.
func statusStates() []string {
	return append([]string{statePending, stateOK, stateUnknown, "broken"}, solver.BreakingCodes...)
}

// validState reports whether s is a state a status filter can name.
func validState(s string) bool { return slices.Contains(statusStates(), s) }

// handleRecheck checks the ?domain= names now, records the verdicts, and
// drops the permission module's cached answers for them, so that a
// customer who just published the CNAME is admitted at once.
func (AdminAPI) handleRecheck(w http.ResponseWriter, r *http.Request) error {
	return serveDomains(w, r, http.MethodPost, func(ctx context.Context, app *App, domains []string) any {
		out := make([]*health, len(domains))
		inParallel(len(domains), checkConcurrency, func(i int) {
			app.modules.forgetAdmission(domains[i])
			pol, _ := app.policyFor(domains[i])
			out[i] = app.watch.recheck(ctx, domains[i], pol, cacheRefresh)
		})
		return out
	})
}

// serveDomains answers a request about the ?domain= names with the JSON of
// what answer returns for them, within the request limits.
func serveDomains(w http.ResponseWriter, r *http.Request, method string, answer func(context.Context, *App, []string) any) error {
	if r.Method != method {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	domains, err := checkDomains(r.URL.Query()["domain"])
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	done, err := app.startCheckRequest()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(r.Context(), checkRequestTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(answer(ctx, app, domains))
}

// startCheckRequest takes one of the maxCheckRequests slots of requests
// that check names now, or refuses with 429; done gives it back.
func (a *App) startCheckRequest() (done func(), err error) {
	select {
	case a.checkRequests <- struct{}{}:
		return func() { <-a.checkRequests }, nil
	default:
		return nil, caddy.APIError{HTTPStatus: http.StatusTooManyRequests, Err: fmt.Errorf("%d delegation check requests are under way, the most at once; retry when they are done", maxCheckRequests)}
	}
}

// runningApp returns the dns_alias app of the running config.
func runningApp() (*App, error) {
	mod, err := caddy.ActiveContext().AppIfConfigured("dns_alias")
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config uses no dns.providers.alias")}
	}
	return mod.(*App), nil
}

func (AdminAPI) handleCheck(w http.ResponseWriter, r *http.Request) error {
	return serveDomains(w, r, http.MethodGet, func(ctx context.Context, app *App, domains []string) any {
		return app.reportDomains(ctx, domains)
	})
}

// checkDomains validates the domains of a check request: at least one, at
// most maxCheckDomains, each one checkableDomain accepts.
func checkDomains(domains []string) ([]string, error) {
	switch {
	case len(domains) == 0:
		return nil, errors.New("give at least one ?domain=")
	case len(domains) > maxCheckDomains:
		return nil, fmt.Errorf("%d domains given; at most %d per request", len(domains), maxCheckDomains)
	}
	out := make([]string, len(domains))
	for i, d := range domains {
		var err error
		if out[i], err = checkableDomain(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkableDomain is the one check of a domain a person asks about (the
// admin API's ?domain=, the check command's arguments): a DNS name, a
// wildcard allowed, not an IP address, a port or an empty value. It
// returns the name normalized, or an error naming it.
func checkableDomain(d string) (string, error) {
	n := solver.Normalize(d)
	base := strings.TrimPrefix(n, "*.")
	if net.ParseIP(strings.Trim(base, "[]")) != nil {
		return "", fmt.Errorf("domain %q: an IP address has no DNS challenge (ACME validates IP addresses over HTTP or TLS-ALPN)", d)
	}
	if err := solver.ValidName(base); err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	return n, nil
}

// reportDomains checks domains, a few at a time, against a view of the
// providers' resolvers whose answers do not displace the answers the
// providers cache for their challenges.
func (a *App) reportDomains(ctx context.Context, domains []string) []*solver.Report {
	ctx, _ = withCheckRequest(ctx, len(domains))
	reports := make([]*solver.Report, len(domains))
	inParallel(len(domains), checkConcurrency, func(i int) { reports[i] = a.Check(ctx, domains[i]) })
	return reports
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
	app, err := runningApp()
	if err != nil {
		return err
	}
	out := []presentedRecord{}
	now := time.Now()
	for _, p := range app.modules.providers() {
		for _, pr := range p.writer.Presented() {
			out = append(out, presentedRecord{pr, int64(now.Sub(pr.Since) / time.Second)})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// checkAll checks every domain and writes a table (or JSON) to w. It
// returns the domains that failed.
func checkAll(ctx context.Context, app *App, w io.Writer, domains []string, asJSON bool) ([]string, error) {
	reports := app.reportDomains(ctx, domains)
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
// (notes marked so) and the record that fixes it. The rows' columns are
// aligned by hand: the indented lines under them must not widen the
// columns.
func writeTable(w io.Writer, reports []*solver.Report) error {
	rows := [][]string{{"DOMAIN", "MODE", "RESULT", "RESOLVER", "CNAME CHAIN"}}
	for _, r := range reports {
		result := map[string]string{solver.VerdictOK: "ok", solver.VerdictUnknown: "UNKNOWN"}[r.Verdict]
		if result == "" {
			result = "FAIL"
		}
		rows = append(rows, []string{r.Domain, cmp.Or(r.Mode, "-"), result, cmp.Or(r.Resolver, "-"), chainString(r)})
	}
	width := make([]int, 4)
	for _, row := range rows {
		for i := range width {
			width[i] = max(width[i], len(row[i]))
		}
	}
	var b strings.Builder
	for i, row := range rows {
		fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %-*s  %s\n", width[0], row[0], width[1], row[1], width[2], row[2], width[3], row[3], row[4])
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
		if resolvedNothing(r) {
			fmt.Fprintf(&b, "  hint: the resolver %s answered nothing for these zones; set the alias provider's resolvers to one that serves them\n", cmp.Or(r.Resolver, "of the system"))
		}
	}
	// Findings are escaped where they are made; the rest of a row (the
	// chain's names, say) came from DNS too.
	_, err := io.WriteString(w, printableLines(b.String()))
	return err
}

// printableLines escapes each line of s (solver.Printable) and keeps its
// line breaks.
func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = solver.Printable(l)
	}
	return strings.Join(lines, "\n")
}

// resolvedNothing reports whether the check failed because the resolvers
// found no zone at all, as a resolver that cannot see the zones does.
func resolvedNothing(r *solver.Report) bool {
	for _, f := range r.Findings {
		if f.Code == solver.CodeLookup && strings.Contains(f.Message, "no SOA record found up to the root") {
			return true
		}
	}
	return false
}

// chainString shows the chain as far as it was resolved: "(no CNAME)" when
// the challenge name has none, "(?)" where resolving it stopped on an error,
// "(not checked)" for a name no alias rule covers.
func chainString(r *solver.Report) string {
	c := r.Chain
	parts := []string{cmp.Or(c.Start, r.ChallengeName)}
	for _, h := range c.Hops {
		parts = append(parts, h.Target)
	}
	s := strings.Join(parts, " -> ")
	switch {
	case r.Mode == "":
		s += " (not checked)"
	case c.End == "":
		s += " (?)"
	case len(c.Hops) == 0:
		s += " (no CNAME)"
	}
	return s
}

var _ caddy.AdminRouter = (*AdminAPI)(nil)
