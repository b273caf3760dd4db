package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "dns-alias",
		Usage: "check [--config <path>] [--adapter <name>] [--json] [<domain>...]",
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
				Use:   "check [--config <path>] [--adapter <name>] [--json] [<domain>...]",
				Short: "Checks the delegation of every domain the config's alias providers cover",
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdCheck),
			}
			check.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
			check.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			check.Flags().Bool("json", false, "Print the reports as JSON")
			cmd.AddCommand(check)
		},
	})
}

func cmdCheck(fl caddycmd.Flags) (int, error) {
	cfg, _, _, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	uses, err := aliasUses(cfg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if len(uses) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("the config uses no dns.providers.alias")
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	var ps []*Provider
	var domains []string
	for i, u := range uses {
		mod, err := ctx.LoadModuleByID("dns.providers.alias", u.provider)
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("alias provider %d of the config: %w", i, err)
		}
		ps = append(ps, mod.(*Provider))
		domains = append(domains, u.domains...)
	}
	if args := fl.Args(); len(args) > 0 {
		domains = args
	}
	domains = checkableDomains(domains)
	if len(domains) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("no domains to check: the config names none; give them as arguments")
	}
	ok, err := checkAll(ctx, os.Stdout, ps, domains, fl.Bool("json"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if !ok {
		return 1, nil
	}
	return 0, nil
}

// aliasUse is one place of a config that uses the alias provider, with the
// domains it obtains certificates for.
type aliasUse struct {
	provider json.RawMessage
	domains  []string
}

// aliasUses finds the alias providers of a JSON config: in TLS automation
// policies' ACME issuers, and the global tls.dns provider where an issuer's
// DNS challenge has no provider of its own. A policy without subjects covers
// the hosts of the config's HTTP routes.
func aliasUses(cfg []byte) ([]aliasUse, error) {
	var c struct {
		Apps struct {
			TLS struct {
				DNS        json.RawMessage `json:"dns"`
				Automation struct {
					Policies []struct {
						Subjects []string `json:"subjects"`
						Issuers  []struct {
							Challenges struct {
								DNS *struct {
									Provider json.RawMessage `json:"provider"`
								} `json:"dns"`
							} `json:"challenges"`
						} `json:"issuers"`
					} `json:"policies"`
				} `json:"automation"`
			} `json:"tls"`
			HTTP any `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	var uses []aliasUse
	for _, pol := range c.Apps.TLS.Automation.Policies {
		for _, iss := range pol.Issuers {
			dns := iss.Challenges.DNS
			if dns == nil {
				continue
			}
			raw := dns.Provider
			if raw == nil {
				raw = c.Apps.TLS.DNS
			}
			if !isAlias(raw) {
				continue
			}
			domains := pol.Subjects
			if len(domains) == 0 {
				domains = hosts(c.Apps.HTTP)
			}
			uses = append(uses, aliasUse{provider: raw, domains: domains})
		}
	}
	return uses, nil
}

func isAlias(raw json.RawMessage) bool {
	var m struct {
		Name string `json:"name"`
	}
	return raw != nil && json.Unmarshal(raw, &m) == nil && m.Name == "alias"
}

// hosts collects the names of every "host" matcher in an HTTP app config.
func hosts(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if list, ok := child.([]any); ok && k == "host" {
				for _, h := range list {
					if s, ok := h.(string); ok {
						out = append(out, s)
					}
				}
				continue
			}
			out = append(out, hosts(child)...)
		}
	case []any:
		for _, child := range x {
			out = append(out, hosts(child)...)
		}
	}
	return out
}

// checkableDomains normalizes names, drops IP addresses and placeholders,
// and folds a wildcard into its base domain (they share a challenge name).
func checkableDomains(names []string) []string {
	var out []string
	for _, n := range names {
		d := strings.TrimPrefix(solver.Normalize(n), "*.")
		if d == "" || net.ParseIP(d) != nil || strings.ContainsAny(d, "{}*") || slices.Contains(out, d) {
			continue
		}
		out = append(out, d)
	}
	return out
}
