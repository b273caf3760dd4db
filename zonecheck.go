package alias

import (
	"context"
	"fmt"
	"io"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// CheckTarget checks domain's delegation to target, a name of the
// writer's zone that the caller knows (an acme-dns account's fulldomain),
// with the whole check of `caddy dns-alias check` (solver.Checker): the
// CNAME chain of _acme-challenge.<domain> must end at target, every
// authoritative server of the production zone must serve the same chain,
// and CAA must allow caIdentities (reported, not judged, if none: the
// client's CA is not the config's to know). A report that fails names the
// record to publish, _acme-challenge.<domain> CNAME <target>. The check
// reads through an isolated view of the writer's resolver (a request's
// budget, if ctx carries one: WithCheckBudget), never filling its cache.
func (w *ZoneWriter) CheckTarget(ctx context.Context, domain, target string, caIdentities []string) (*solver.Report, error) {
	d, err := checkableDomain(domain)
	if err != nil {
		return nil, err
	}
	tmpl, err := solver.ParseTemplate(solver.Normalize(target))
	if err != nil || !tmpl.IsStatic() {
		return nil, fmt.Errorf("target %q of %s: not a DNS name: %v", target, d, err)
	}
	live := w.p.writer.Mapper
	rule := &solver.Rule{Alias: tmpl, Zones: append([]string(nil), live.Default.Zones...), Writer: live.Default.Writer, WriterName: live.Default.WriterName}
	if err := rule.Validate(); err != nil {
		return nil, fmt.Errorf("target %s of %s: %w", target, d, err)
	}
	c := &solver.Checker{Mapper: &solver.Mapper{Default: rule, Resolver: requestView(ctx, live.Resolver), MaxHops: live.MaxHops}}
	if len(caIdentities) > 0 {
		// The client's own ACME account is not this server's: CAA is
		// judged by the CA alone, accounturi noted.
		c.Issuer = func(context.Context) solver.Issuer { return solver.Issuer{CAIdentities: caIdentities} }
	}
	_, rep := c.Check(ctx, d)
	return rep, nil
}

// WithCheckBudget returns a context whose CheckTarget calls, names of
// them, share one request's resolver views and query budget, as the
// admin API's checks do.
func WithCheckBudget(ctx context.Context, names int) context.Context {
	ctx, _ = withCheckRequest(ctx, names)
	return ctx
}

// WriteCheckTable prints reports as `caddy dns-alias check` does: one
// row per domain, its findings and the record to publish under it.
func WriteCheckTable(w io.Writer, reports []*solver.Report) error { return writeTable(w, reports) }
