package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "dns-alias",
		Usage: "check [--config <path>] [--adapter <name>] [--json] [--alias <template>] [<domain>...]",
		Short: "Checks the CNAME delegations that dns.providers.alias relies on",
		Long: `
The check subcommand reads a config the way 'caddy run' does, finds every TLS
policy that uses the alias DNS provider and the domains it covers (or takes
the domains given as arguments), and checks for each: the CNAME chain of
_acme-challenge.<domain> and where it ends, what every authoritative
nameserver of the production zone answers (multi-master drift), CNAMEs
synthesised by wildcards, loops and over-long chains, and CAA. It prints a
table with the record to publish under each failure, or JSON with --json,
and exits 1 if any domain fails. It makes no ACME request and writes no DNS
record.
`,
		CobraFunc: func(cmd *cobra.Command) {
			check := &cobra.Command{
				Use:   "check [--config <path>] [--adapter <name>] [--json] [--alias <template>] [<domain>...]",
				Short: "Checks the delegation of every domain the config's alias providers cover",
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdCheck),
			}
			check.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
			check.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			check.Flags().Bool("json", false, "Print the reports as JSON")
			check.Flags().String("alias", "", "An alias template (e.g. _acme-challenge.{domain}.validation.example.org): a domain no alias policy obtains is told the CNAME it would need under it")
			cmd.AddCommand(check)
		},
	})
}

func cmdCheck(fl caddycmd.Flags) (int, error) {
	var domains []string
	for _, arg := range fl.Args() {
		d, err := checkableDomain(arg)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		domains = append(domains, d)
	}
	app := newApp()
	if alias := fl.String("alias"); alias != "" {
		t, err := solver.ParseTemplate(alias)
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--alias: %w", err)
		}
		app.proposed = &t
	}
	cfg, _, _, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if len(cfg) == 0 {
		// caddy's loader finds nothing without --config and ./Caddyfile.
		return caddy.ExitCodeFailedStartup, errors.New("no config to read: give --config with a Caddyfile or a JSON config, or run the command where ./Caddyfile is")
	}
	app.logger = caddy.Log()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: withApp(context.Background(), app)})
	defer cancel()
	pols, hostNames, err := configPolicies(ctx, cfg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if !slices.ContainsFunc(pols, func(p policy) bool { return p.provider != nil }) {
		return caddy.ExitCodeFailedStartup, errors.New("the config uses no dns.providers.alias")
	}
	app.setPolicies(pols)
	if app.accounts.storage, err = configStorage(ctx, cfg); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	if len(domains) == 0 {
		domains = configDomains(pols, hostNames)
	}
	if len(domains) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("no domains to check: the config names none; give them as arguments")
	}
	failed, err := checkAll(ctx, app, os.Stdout, domains, fl.Bool("json"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if len(failed) > 0 {
		// Caddy exits 0 for a status of 1 without an error.
		return 1, fmt.Errorf("delegation check failed for %d of %d domains: %s", len(failed), len(domains), strings.Join(failed, ", "))
	}
	return 0, nil
}

// configStorage is the storage the config names, or Caddy's default, as
// `caddy run` would use it: where the ACME accounts that CAA's accounturi
// is judged against are kept.
func configStorage(ctx caddy.Context, cfg []byte) (certmagic.Storage, error) {
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	if c.StorageRaw == nil {
		return caddy.DefaultStorage, nil
	}
	mod, err := ctx.LoadModule(&c, "StorageRaw")
	if err != nil {
		return nil, fmt.Errorf("loading the config's storage: %w", err)
	}
	storage, err := mod.(caddy.StorageConverter).CertMagicStorage()
	if err != nil {
		return nil, fmt.Errorf("opening the config's storage: %w", err)
	}
	return storage, nil
}

// configPolicies reads a JSON config's TLS automation policies, in order,
// provisioning the alias provider of each (registered with the app in
// ctx), and the host names of its HTTP routes. An ACME issuer's DNS
// challenge without a provider of its own uses the TLS app's global dns
// provider, as in the tls app.
func configPolicies(ctx caddy.Context, cfg []byte) ([]policy, []string, error) {
	var c struct {
		Apps struct {
			TLS  caddytls.TLS    `json:"tls"`
			HTTP json.RawMessage `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, nil, fmt.Errorf("decoding config: %w", err)
	}
	hosts, err := hostNames(c.Apps.HTTP)
	if err != nil {
		return nil, nil, err
	}
	if c.Apps.TLS.Automation == nil {
		return nil, hosts, nil
	}
	loaded := map[string]*Provider{}
	load := func(raw json.RawMessage) (*Provider, error) {
		if !isAlias(raw) {
			return nil, nil
		}
		if p := loaded[string(raw)]; p != nil {
			return p, nil
		}
		p, err := loadProvider(ctx, raw)
		loaded[string(raw)] = p
		return p, err
	}
	global, err := load(c.Apps.TLS.DNSRaw)
	if err != nil {
		return nil, nil, err
	}
	repl := caddy.NewReplacer()
	aps := make([]automationPolicy, len(c.Apps.TLS.Automation.Policies))
	for i, ap := range c.Apps.TLS.Automation.Policies {
		aps[i] = automationPolicy{onDemand: ap.OnDemand, renewalRatio: ap.RenewalWindowRatio}
		for _, s := range ap.SubjectsRaw {
			aps[i].subjects = append(aps[i].subjects, repl.ReplaceAll(s, ""))
		}
		for j, raw := range ap.IssuersRaw {
			var iss issuerModule
			if err := json.Unmarshal(raw, &iss); err != nil {
				return nil, nil, fmt.Errorf("decoding tls.automation.policies[%d].issuers[%d]: %w", i, j, err)
			}
			if iss.Module != "acme" || solvesDNS(&iss.ACMEIssuer) == nil {
				continue
			}
			own, err := load(iss.Challenges.DNS.ProviderRaw)
			if err != nil {
				return nil, nil, err
			}
			aps[i].issuers = append(aps[i].issuers, issuerSolver{acme: &iss.ACMEIssuer, own: own, namesProvider: iss.Challenges.DNS.ProviderRaw != nil})
		}
	}
	return buildPolicies(aps, global), hosts, nil
}

// loadProvider provisions an alias provider from its JSON as it stands in a
// config, with the module's name as inline key.
func loadProvider(ctx caddy.Context, raw json.RawMessage) (*Provider, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("decoding the alias provider's config: %w", err)
	}
	delete(fields, "name")
	stripped, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	mod, err := ctx.LoadModuleByID("dns.providers.alias", stripped)
	if err != nil {
		return nil, fmt.Errorf("loading the alias provider of the config: %w", err)
	}
	return mod.(*Provider), nil
}

// configDomains lists the names the config obtains certificates for through
// the alias provider: the subjects of its policies and the hosts of its
// HTTP routes, each kept if the policy that covers it uses the provider and
// it qualifies for a publicly trusted certificate.
func configDomains(pols []policy, hostNames []string) []string {
	var names []string
	for _, p := range pols {
		names = append(names, p.subjects...)
	}
	names = append(names, hostNames...)
	var out []string
	for _, d := range checkableDomains(names) {
		if pol := lookupPolicy(pols, d); pol != nil && pol.provider != nil && certmagic.SubjectQualifiesForPublicCert(d) {
			out = append(out, d)
		}
	}
	return out
}

// isAlias reports whether a dns.providers module's JSON names the alias
// provider.
func isAlias(raw json.RawMessage) bool {
	var m struct {
		Name string `json:"name"`
	}
	return raw != nil && json.Unmarshal(raw, &m) == nil && m.Name == "alias"
}

// hostNames collects the names of every host matcher of an HTTP app
// config's routes, subroutes included.
func hostNames(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	var app caddyhttp.App
	if err := json.Unmarshal(raw, &app); err != nil {
		return nil, fmt.Errorf("decoding the http app: %w", err)
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(app.Servers)) {
		out = append(out, routeHosts(app.Servers[name].Routes)...)
	}
	return out, nil
}

func routeHosts(routes caddyhttp.RouteList) []string {
	var out []string
	for _, r := range routes {
		for _, set := range r.MatcherSetsRaw {
			var hosts caddyhttp.MatchHost
			if raw, ok := set["host"]; ok && json.Unmarshal(raw, &hosts) == nil {
				out = append(out, hosts...)
			}
		}
		for _, h := range r.HandlersRaw {
			var sub struct {
				Handler string              `json:"handler"`
				Routes  caddyhttp.RouteList `json:"routes"`
			}
			if json.Unmarshal(h, &sub) == nil && sub.Handler == "subroute" {
				out = append(out, routeHosts(sub.Routes)...)
			}
		}
	}
	return out
}

// checkableDomains keeps the names of a config that checkableDomain
// accepts (IP addresses and placeholders go), normalized, without
// duplicates. A wildcard stays next to its base domain: they share a
// challenge name, but CAA judges them apart (issuewild).
func checkableDomains(names []string) []string {
	var out []string
	for _, n := range names {
		if d, err := checkableDomain(n); err == nil && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
