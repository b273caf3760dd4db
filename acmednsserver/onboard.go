package acmednsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	alias "github.com/acme-alias/caddy-dns-alias"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// Onboarding: before a client that is not Caddy orders its first
// certificate, the domain's owner publishes _acme-challenge.<domain> CNAME
// <the account's fulldomain>. The check below is `caddy dns-alias check`'s
// (alias.ZoneWriter.CheckTarget: chain, drift across the production
// zone's servers, CAA) against that one target, from the admin API of the
// running Caddy and from `caddy acme-dns check`, which asks it.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "acme-dns",
		Usage: "check --account <username> [--ca <CAA identity>] [--json] [--address <admin address>] <domain>...",
		Short: "Checks domains' CNAME delegation to an acme-dns endpoint account",
		Long: `
The check subcommand asks the running Caddy's admin API to check, for each
domain, that _acme-challenge.<domain> is a CNAME to the fulldomain of the
acme_dns_server account given (configured or registered), as 'caddy
dns-alias check' checks Caddy's own names: the chain and where it ends,
what every authoritative nameserver of the production zone answers, and
CAA (judged against --ca, e.g. letsencrypt.org, else only reported). It
prints a table with the record to publish under each failure, or JSON with
--json, and exits 1 if any domain fails. It writes no DNS record.
`,
		CobraFunc: func(cmd *cobra.Command) {
			check := &cobra.Command{
				Use:   "check --account <username> [--ca <CAA identity>] [--json] [--address <admin address>] <domain>...",
				Short: "Checks domains' delegation to an acme-dns endpoint account",
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdCheck),
			}
			check.Flags().String("account", "", "The account's user name")
			check.Flags().StringSlice("ca", nil, "CAA identities of the client's CA (e.g. letsencrypt.org)")
			check.Flags().Bool("json", false, "Print the reports as JSON")
			check.Flags().String("address", "", "The address of Caddy's admin API (default: from the config, else localhost:2019)")
			cmd.AddCommand(check)
		},
	})
}

func cmdCheck(fl caddycmd.Flags) (int, error) {
	account := fl.String("account")
	if account == "" || len(fl.Args()) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("give --account <username> and at least one domain")
	}
	q := url.Values{"account": {account}, "domain": fl.Args()}
	cas, _ := fl.GetStringSlice("ca")
	for _, ca := range cas {
		q.Add("ca", ca)
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, "", "")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/dns-alias/acme-dns/check?"+q.Encode(), nil, nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer resp.Body.Close()
	var reports []*solver.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&reports); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(reports)
	} else {
		err = alias.WriteCheckTable(os.Stdout, reports)
	}
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var failed []string
	for _, r := range reports {
		if !r.OK {
			failed = append(failed, r.Domain)
		}
	}
	if len(failed) > 0 {
		return 1, fmt.Errorf("delegation check failed for %d of %d domains: %s", len(failed), len(reports), strings.Join(failed, ", "))
	}
	return 0, nil
}

// maxCheckDomains bounds the domains of one check request, as the
// dns_alias admin API's check does.
const maxCheckDomains = 50

// checkRequestTimeout bounds one check request.
const checkRequestTimeout = time.Minute

// handleCheck answers GET /dns-alias/acme-dns/check: each domain's report
// against the fulldomain of the account given.
func (AdminAPI) handleCheck(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	q := r.URL.Query()
	domains, user := q["domain"], q.Get("account")
	switch {
	case user == "" || len(domains) == 0:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("give ?account=<username> and at least one ?domain=")}
	case len(domains) > maxCheckDomains:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("%d domains given; at most %d per request", len(domains), maxCheckDomains)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkRequestTimeout)
	defer cancel()
	zw, fulldomain, err := accountTarget(ctx, user)
	if err != nil {
		return err
	}
	ctx = alias.WithCheckBudget(ctx, len(domains))
	reports := make([]*solver.Report, 0, len(domains))
	for _, d := range domains {
		rep, err := zw.CheckTarget(ctx, d, fulldomain, q["ca"])
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
		}
		reports = append(reports, rep)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(reports)
}

// accountTarget finds user's account among the running endpoints
// (configured, or registered and in the store) and returns its endpoint's
// zone writer and its fulldomain.
func accountTarget(ctx context.Context, user string) (*alias.ZoneWriter, string, error) {
	for _, zw := range alias.RunningZoneWriters() {
		h, ok := zw.Owner().(*Handler)
		if !ok {
			continue
		}
		a, err := h.server.lookup(ctx, user)
		if err != nil {
			return nil, "", fmt.Errorf("looking up account %q of the endpoint of %s: %w", user, h.zone, err)
		}
		if a != nil {
			return zw, a.name, nil
		}
	}
	return nil, "", caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no acme_dns_server of the running config has an account %q", user)}
}
