package alias

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// cacheUse says how a check uses the provider's resolver cache.
type cacheUse int

const (
	cacheShared   cacheUse = iota // read and fill it (gate, permission, periodic checks)
	cacheReadOnly                 // read it, never fill it (admin API, CLI: arbitrary names)
	cacheRefresh                  // never read it, fill it (recheck on request)
)

// checker returns the delegation checker of name's policy, judging CAA
// against that policy's CA and ACME account, or a report of why no alias provider covers
// name.
func (a *App) checker(ctx context.Context, name string, use cacheUse) (*solver.Checker, *Provider, *solver.Report) {
	pol, p := a.policyFor(name)
	if p == nil {
		rep := noPolicyReport(pol, name)
		a.suggestPolicies(rep)
		return nil, nil, rep
	}
	m := p.writer.Mapper
	if use != cacheShared {
		view := *m
		if use == cacheReadOnly {
			view.Resolver = requestView(ctx, m.Resolver)
		} else {
			view.Resolver = m.Resolver.Refreshing()
		}
		m = &view
	}
	return &solver.Checker{Mapper: m, Issuer: func(ctx context.Context) solver.Issuer { return a.issuer(ctx, pol) }}, p, nil
}

// checkRequest is what the checks of one request for people (an admin
// API call, a check command) share: one isolated view of each provider's
// resolver, so that the names of one zone ask about it once, and one
// budget of queries across them all.
type checkRequest struct {
	mu     sync.Mutex
	views  map[*solver.Resolver]*solver.Resolver
	budget *solver.Budget
}

// queriesPerCheckedName is a request's budget of DNS queries per name it
// checks: a check of a delegated name costs about 5 to 15 (chain,
// nameservers, CAA), the zone's share included, so 40 fit several times
// over, while names made up to be expensive (deep labels, zones with many
// nameservers) stop at 40 each rather than at hundreds. An admin request
// of maxCheckDomains names gets 2,000.
const queriesPerCheckedName = 40

type checkRequestKey struct{}

// withCheckRequest returns a context whose checks of names share one
// request's views and budget.
func withCheckRequest(ctx context.Context, names int) (context.Context, *checkRequest) {
	req := &checkRequest{views: map[*solver.Resolver]*solver.Resolver{}, budget: solver.NewBudget(queriesPerCheckedName * names)}
	return context.WithValue(ctx, checkRequestKey{}, req), req
}

// requestView is the isolated view of live for ctx's request, or a view of
// its own outside one.
func requestView(ctx context.Context, live *solver.Resolver) *solver.Resolver {
	req, ok := ctx.Value(checkRequestKey{}).(*checkRequest)
	if !ok {
		return live.Isolated()
	}
	req.mu.Lock()
	defer req.mu.Unlock()
	v := req.views[live]
	if v == nil {
		v = live.WithBudget(req.budget)
		req.views[live] = v
	}
	return v
}

// Check reports on name's delegation in full, for people (admin API,
// check command), without filling the providers' resolver caches.
func (a *App) Check(ctx context.Context, name string) *solver.Report {
	_, rep := a.check(ctx, name, cacheReadOnly)
	return rep
}

// check runs the whole check. A pass that used the live cache is
// remembered by the name's provider, whose write for the same obtain,
// seconds later, need not check again.
func (a *App) check(ctx context.Context, name string, use cacheUse) (*Provider, *solver.Report) {
	c, p, rep := a.checker(ctx, name, use)
	if c == nil {
		return nil, rep
	}
	target, rep := c.Check(ctx, name)
	if use != cacheReadOnly && rep.Verdict == solver.VerdictOK {
		p.writer.Memo.Remember(name, target)
	}
	return p, rep
}

// Admit runs the part of the check that an anonymous TLS handshake may
// cause, for the permission module: the CNAME chain through the
// recursive resolvers, stopping at its first failure. The production
// zone's nameservers (drift) and CAA are the gate's, which runs the whole
// check before the order, and the monitor's: the nameservers are chosen by
// whoever owns the name, and asking each of them for every made-up name a
// client sends would turn one ClientHello into packets at targets an
// attacker picks. The target is set when nothing but transient findings (a
// failed lookup) stands against the delegation. Nothing is remembered for
// the gate, which must still run the parts skipped here.
func (a *App) Admit(ctx context.Context, name string) (solver.Target, *solver.Report) {
	c, _, rep := a.checker(ctx, name, cacheShared)
	if c == nil {
		return solver.Target{}, rep
	}
	return c.Verify(ctx, name, solver.CheckChain)
}

// noPolicyReport is the verdict on a name that no alias provider obtains.
func noPolicyReport(pol *policy, name string) *solver.Report {
	d := solver.Normalize(name)
	rep := &solver.Report{Domain: d, ChallengeName: solver.ChallengeName(d)}
	where := "falls to Caddy's default automation policy"
	if pol != nil {
		where = fmt.Sprintf("is obtained by TLS automation policy %d", pol.index)
	}
	rep.Findings = []solver.Finding{{Code: solver.CodeNoPolicy, Fatal: true,
		Message: solver.Printable(fmt.Sprintf("%s %s, which uses no dns.providers.alias", d, where))}}
	rep.Verdict = solver.VerdictBroken
	return rep
}

// suggestPolicies adds to the report of a name no alias provider obtains a
// note per alias policy of the config that could take it: the record the
// name would need there, so that "what CNAME would this domain need?" has
// an answer before the name is added to the config.
func (a *App) suggestPolicies(rep *solver.Report) {
	for _, pol := range a.policyMap() {
		if pol.provider == nil {
			continue
		}
		record, err := pol.provider.writer.Mapper.Suggestion(rep.Domain)
		if err != nil {
			continue
		}
		rep.Findings = append(rep.Findings, solver.Finding{Code: solver.CodeNoPolicy,
			Message: solver.Printable(fmt.Sprintf("added to TLS automation policy %d, %s would need: %s", pol.index, rep.Domain, record))})
	}
	if a.proposed != nil {
		d := strings.TrimPrefix(rep.Domain, "*.")
		if alias, err := a.proposed.Expand(d); err == nil {
			rep.Findings = append(rep.Findings, solver.Finding{Code: solver.CodeNoPolicy,
				Message: solver.Printable(fmt.Sprintf("under the alias %s, %s would need: %s", a.proposed, rep.Domain, solver.CNAMERecord(solver.ChallengeName(d), alias)))})
		}
	}
}

// gateAttempts is how often the gate asks when lookups fail: a flaky
// resolver gets a second and third chance before the gate gives up
// judging.
const gateAttempts = 3

// gate is the cert_obtaining handler.
type gate struct{ app *App }

// Handle runs the delegation check of a name whose policy uses an alias
// provider before certmagic places its ACME order (or renews): a broken
// delegation aborts the obtain, with the record to publish, and no order
// reaches the CA. A check that keeps failing on lookups lets the obtain go
// on: the write path checks again, and the CA's validation decides; a
// flaky resolver must not stop renewals.
func (g gate) Handle(ctx context.Context, e caddy.Event) error {
	name, _ := e.Data["identifier"].(string)
	a := g.app
	_, p := a.policyFor(name)
	if p == nil || name == "" {
		return nil
	}
	if _, ok := p.writer.Memo.Recall(name); ok {
		return nil // the permission module's check, moments ago
	}
	for attempt := 1; ; attempt++ {
		// The whole check, not one that stops at the first failure: when
		// the chain fails, the nameservers may say why (drift).
		_, rep := a.check(ctx, name, cacheShared)
		err := rep.Err()
		switch {
		case rep.Verdict == solver.VerdictBroken:
			var de *solver.DelegationError
			errors.As(err, &de)
			a.metrics.gateRefusals.WithLabelValues(de.Code()).Inc()
			a.logger.Error("certificate not ordered: the delegation is broken",
				zap.String("identifier", name), zap.Bool("renewal", e.Data["renewal"] == true),
				zap.String("finding", de.Code()), zap.String("publish", de.Fix), zap.Error(err))
			return fmt.Errorf("%w: %w", caddy.ErrEventAborted, err)
		case rep.Verdict == solver.VerdictOK:
			return nil
		case attempt == gateAttempts:
			a.logger.Warn("delegation check could not complete; obtaining anyway, the write path checks again",
				zap.String("identifier", name), zap.Int("attempts", attempt), zap.Error(err))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt) * a.gateRetry):
		}
	}
}
