package alias

import (
	"cmp"
	"context"
	"fmt"
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

	logger   *zap.Logger
	ctx      caddy.Context
	journal  *storageJournal // nil without storage (the check command)
	caa      caaDirectory
	accounts acmeAccounts
	events   *caddyevents.App
	metrics  *metrics
	watch    *watcher
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
	a.journal = &storageJournal{storage: ctx.Storage(), lease: time.Duration(a.SweepAfter),
		reach: &solver.Reachability{MaxGap: reachGap(time.Duration(a.SweepAfter))}}
	a.accounts.storage = ctx.Storage()
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

// newWriter returns the write path of an alias provider, wired to the
// app's journal and metrics (mapper's resolver counts its queries in
// them) from the start: nothing of it is set after it exists, so no
// provider is registered, or writes, with a writer half wired.
func (a *App) newWriter(mapper *solver.Mapper, logger *zap.Logger, wait time.Duration) *solver.Provider {
	mapper.Resolver.Sent = a.metrics.querySent
	w := &solver.Provider{Mapper: mapper, Logger: logger, AuthoritativeWait: wait, Memo: new(solver.Memo), Observer: a.metrics}
	// Without storage (the check command) the journal stays a nil
	// interface: a nil *storageJournal in it would not compare nil.
	if a.journal != nil {
		w.Journal = a.journal
	}
	return w
}

// newSweeper returns the sweeper of a writer newWriter built: it judges
// staleness by the journal's reachability and knows the other alias
// setups of the config, whose entries it leaves to them.
func (a *App) newSweeper(w *solver.Provider) *solver.Sweeper {
	s := solver.NewSweeper(w)
	if a.journal != nil {
		s.Reach = a.journal.reach
	}
	s.Siblings = a.modules.sweepers
	return s
}

// register adds an alias provider of the config, loaded by owner, whose
// writer newWriter built.
func (a *App) register(p *Provider, owner caddy.Module) {
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
