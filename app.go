package alias

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

func init() {
	caddy.RegisterModule((*App)(nil))
}

// App is the runtime of the alias providers of one config: it knows which
// TLS automation policy obtains every name and with which alias provider,
// checks a name's delegation before every ACME order and renewal (the
// gate), answers the permission module, the admin API and the check
// command from that one map, and runs the crash journal's renewals and
// sweeps. The first alias provider of a config loads it, so that a config
// needs no block of its own; configure it only to change its settings.
type App struct {
	// Journal entries (challenge records written and not yet deleted, kept
	// in Caddy's storage) that nobody renewed for this long are records a
	// crash left behind, and are deleted. It is also the lease a process
	// promises to renew its own entries within. Default: 15 minutes.
	SweepAfter caddy.Duration `json:"sweep_after,omitempty"`

	// How often the journal is swept. Default: 5 minutes.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// How often every tracked name's delegation is checked again (the
	// whole check the gate runs), jittered by a tenth. -1 turns the
	// periodic checks off. Default: 1 hour.
	CheckInterval caddy.Duration `json:"check_interval,omitempty"`

	// How many names the periodic checks check at once. Default: 8.
	CheckConcurrency int `json:"check_concurrency,omitempty"`

	logger  *zap.Logger
	ctx     caddy.Context
	journal *storageJournal // nil without storage (the check command)
	caa     caaDirectory
	events  *caddyevents.App
	metrics *metrics
	watch   *watcher
	// monitorKey is the key of watch's state in monitors, "" for an app that
	// was not provisioned from a config (the check command, tests).
	monitorKey string

	modules registry

	mu       sync.Mutex
	policies []policy
	mapped   bool // policies is built
	// proposed is an alias template the check command was given: a name
	// no alias policy obtains is told what it would need under it too.
	proposed *solver.Template

	// ops counts the writes and deletes under way, so that an exiting
	// process waits for them before it withdraws what is left.
	ops     sync.WaitGroup
	stop    context.CancelFunc
	stopped chan struct{}

	// checkRequests holds a token per admin API request that checks
	// names now (check, recheck).
	checkRequests chan struct{}

	// gateRetry is how long the gate waits before asking again after a
	// lookup failed; tests shorten it.
	gateRetry time.Duration
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dns_alias",
		New: func() caddy.Module { return newApp() },
	}
}

func newApp() *App {
	a := &App{gateRetry: time.Second, checkRequests: make(chan struct{}, maxCheckRequests)}
	a.watch = &watcher{app: a, state: &monitor{}}
	a.metrics = newMetrics(a.modules.presentedCount, a.watch.snapshot)
	return a
}

const (
	defaultSweepAfter    = 15 * time.Minute
	defaultSweepInterval = 5 * time.Minute
)

// Provision validates the settings, opens the journal on the config's
// storage and subscribes the gate to cert_obtaining: the events app closes
// its subscriptions when it starts, and the tls app may start (and obtain)
// before this app does.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx, a.logger = ctx, ctx.Logger()
	switch {
	case a.SweepAfter < 0:
		return fmt.Errorf("sweep_after: must not be negative, got %s", time.Duration(a.SweepAfter))
	case a.SweepAfter > 0 && time.Duration(a.SweepAfter) < solver.MinSweepAfter:
		return fmt.Errorf("sweep_after: %s is shorter than %s: the entries are renewed every third of it, and a storage write must fit in between", time.Duration(a.SweepAfter), solver.MinSweepAfter)
	case a.SweepInterval < 0:
		return fmt.Errorf("sweep_interval: must not be negative, got %s", time.Duration(a.SweepInterval))
	case a.CheckInterval < 0 && a.CheckInterval != -1:
		return fmt.Errorf("check_interval: must be positive, or -1 to turn the periodic checks off, got %s", time.Duration(a.CheckInterval))
	case a.CheckConcurrency < 0:
		return fmt.Errorf("check_concurrency: must not be negative, got %d", a.CheckConcurrency)
	}
	a.SweepAfter = cmp.Or(a.SweepAfter, caddy.Duration(defaultSweepAfter))
	a.SweepInterval = cmp.Or(a.SweepInterval, caddy.Duration(defaultSweepInterval))
	a.CheckInterval = cmp.Or(a.CheckInterval, caddy.Duration(defaultCheckInterval))
	a.CheckConcurrency = cmp.Or(a.CheckConcurrency, defaultCheckConcurrency)
	a.journal = &storageJournal{storage: ctx.Storage(), lease: time.Duration(a.SweepAfter)}
	a.monitorKey = monitorKey(ctx.Storage())
	shared, _, err := monitors.LoadOrNew(a.monitorKey, func() (caddy.Destructor, error) { return &monitor{}, nil })
	if err != nil {
		return fmt.Errorf("loading the delegation monitor's state: %w", err)
	}
	m := shared.(*monitor)
	a.watch.state, a.watch.storage = m, ctx.Storage()
	m.mu.Lock()
	if m.counters == nil {
		m.counters = a.metrics.counters
	} else {
		a.metrics.counters = m.counters
	}
	m.mu.Unlock()
	if err := a.metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading the events app for the delegation gate: %w", err)
	}
	a.events = events.(*caddyevents.App)
	if err := a.events.On("cert_obtaining", gate{a}); err != nil {
		return fmt.Errorf("subscribing the delegation gate to cert_obtaining: %w", err)
	}
	return nil
}

// Start builds the policy map, if the gate has not needed it yet, and
// starts the journal's renewals and sweeps and the periodic delegation
// checks.
func (a *App) Start() error {
	a.policyMap()
	loopCtx, cancel := context.WithCancel(context.Background())
	a.stop, a.stopped = cancel, make(chan struct{})
	go func() {
		defer close(a.stopped)
		var wg sync.WaitGroup
		if a.journal != nil {
			rounds := journalRounds{journal: a.journal, modules: &a.modules, metrics: a.metrics, logger: a.logger,
				after: time.Duration(a.SweepAfter), interval: time.Duration(a.SweepInterval)}
			wg.Go(func() { rounds.run(loopCtx) })
		}
		wg.Go(func() { a.watch.loop(loopCtx) })
		wg.Wait()
	}()
	return nil
}

// withdrawTimeout bounds the removal of this process's own challenge
// records when Caddy exits, and the wait for writes and deletes under way
// before it.
const withdrawTimeout = 10 * time.Second

// Stop ends the journal's loop and the periodic checks. On a config reload, the challenges under
// way finish and clean up through their providers, and the new config's
// app takes over the journal. When the process exits, the writes and
// deletes under way are waited for, and the records still presented are
// deleted: their challenges cannot complete.
func (a *App) Stop() error {
	if a.stop != nil {
		a.stop()
		<-a.stopped
	}
	if !caddy.Exiting() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
	defer cancel()
	a.waitOps(ctx)
	for _, p := range a.modules.providers() {
		p.sweeper.Withdraw(ctx)
	}
	return nil
}

// Cleanup lets go of the monitor's state; the next config on the same
// storage has taken it up already, if there is one.
func (a *App) Cleanup() error {
	if a.monitorKey != "" {
		_, err := monitors.Delete(a.monitorKey)
		return err
	}
	return nil
}

func (a *App) waitOps(ctx context.Context) {
	done := make(chan struct{})
	go func() { a.ops.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		a.logger.Warn("exiting with challenge writes or deletes still under way")
	}
}

// register adds an alias provider of the config, loaded by owner, and
// wires it to the app's journal and metrics.
func (a *App) register(p *Provider, owner caddy.Module) {
	if a.journal != nil {
		p.writer.Journal = a.journal
	}
	p.writer.Observer = a.metrics
	if p.writer != nil && p.writer.Mapper != nil && p.writer.Mapper.Resolver != nil {
		p.writer.Mapper.Resolver.Sent = a.metrics.querySent
	}
	a.modules.addProvider(p, owner)
}

// policyMap returns the policies, built from the tls app on first use
// (the gate may run before Start).
func (a *App) policyMap() []policy {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.mapped {
		a.mapped = true
		if tlsApp, err := a.ctx.AppIfConfigured("tls"); err == nil {
			regs, usesGlobal := a.modules.forPolicyMap()
			a.policies = tlsPolicies(tlsApp.(*caddytls.TLS), regs, usesGlobal)
		}
	}
	return a.policies
}

// setPolicies replaces the policy map, for a config that is read but not
// run (the check command).
func (a *App) setPolicies(pols []policy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.policies, a.mapped = pols, true
}

// policyFor returns the policy that obtains name's certificate, and its
// alias provider (nil if the policy uses none).
func (a *App) policyFor(name string) (*policy, *Provider) {
	pol := lookupPolicy(a.policyMap(), name)
	if pol == nil {
		return nil, nil
	}
	return pol, pol.provider
}

// cacheUse says how a check uses the provider's resolver cache.
type cacheUse int

const (
	cacheShared   cacheUse = iota // read and fill it (gate, permission, periodic checks)
	cacheReadOnly                 // read it, never fill it (admin API, CLI: arbitrary names)
	cacheRefresh                  // never read it, fill it (recheck on request)
)

// checker returns the delegation checker of name's policy, judging CAA
// against that policy's CA, or a report of why no alias provider covers
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
	return &solver.Checker{Mapper: m, CAIdentities: a.caa.forPolicy(ctx, pol, a.logger)}, p, nil
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

// inParallel runs f(0) ... f(n-1), at most limit at a time, and returns
// when all have.
func inParallel(n, limit int, f func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// appCtxKey carries an App for providers provisioned outside a config (the
// check command, tests), where caddy.Context has no config to load it from.
type appCtxKey struct{}

// withApp returns a context whose modules register with a.
func withApp(ctx context.Context, a *App) context.Context {
	return context.WithValue(ctx, appCtxKey{}, a)
}

// appFrom returns the dns_alias app of the config being provisioned.
func appFrom(ctx caddy.Context) (*App, error) {
	if a, ok := ctx.Value(appCtxKey{}).(*App); ok {
		return a, nil
	}
	mod, err := ctx.App("dns_alias")
	if err != nil {
		return nil, err
	}
	return mod.(*App), nil
}

// owner is the module that loaded the module being provisioned.
func owner(ctx caddy.Context) caddy.Module {
	mods := ctx.Modules()
	if len(mods) < 2 {
		return nil
	}
	return mods[len(mods)-2]
}

// Interface guards.
var (
	_ caddy.App           = (*App)(nil)
	_ caddy.Provisioner   = (*App)(nil)
	_ caddy.CleanerUpper  = (*App)(nil)
	_ caddyevents.Handler = gate{}
)
