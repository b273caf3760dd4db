package alias

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// health is what the periodic delegation checks know of one tracked name,
// as /dns-alias/status lists it.
type health struct {
	Domain string `json:"domain"`
	Policy int    `json:"policy"`
	Mode   string `json:"mode,omitempty"`
	Alias  string `json:"alias,omitempty"`
	// State is "ok", "unknown" (the check could not complete) or the code
	// of the finding that breaks the delegation.
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	Publish    string    `json:"publish,omitempty"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastOK     time.Time `json:"last_ok,omitzero"`
	Expires    time.Time `json:"expires,omitzero"`
	RenewalDue time.Time `json:"renewal_due,omitzero"`
}

// broken reports whether the state is a finding.
func (h *health) broken() bool { return h.State != "" && h.State != stateOK && h.State != stateUnknown }

const (
	stateOK      = "ok"
	stateUnknown = "unknown"
)

// monitor holds the health of the tracked names.
type monitor struct {
	mu    sync.Mutex
	names map[string]*health
}

const (
	defaultCheckInterval    = time.Hour
	defaultCheckConcurrency = 8
)

// trackedName is a name the periodic checks watch, and its policy.
type trackedName struct {
	name string
	pol  *policy
}

// monitorLoop re-checks every tracked name every check_interval (jittered
// by a tenth either way, so that a cluster's instances do not ask in step),
// the first time soon after the start.
func (a *App) monitorLoop(ctx context.Context) {
	interval := time.Duration(a.CheckInterval)
	if interval < 0 {
		return
	}
	timer := time.NewTimer(jitter(min(interval, 10*time.Second) / 2))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			a.checkTracked(ctx)
			timer.Reset(jitter(interval))
		}
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/10 + rand.N(d/5+1)
}

// checkTracked checks every tracked name, check_concurrency at a time.
func (a *App) checkTracked(ctx context.Context) {
	names := a.trackedNames(ctx)
	inParallel(len(names), cmp.Or(a.CheckConcurrency, defaultCheckConcurrency), func(i int) {
		if ctx.Err() == nil {
			a.recheck(ctx, names[i].name, names[i].pol, cacheShared)
		}
	})
}

// trackedNames are the names of every policy with an alias provider: its
// subjects, and the certificates in storage that it obtains (on-demand
// names once issued, and the names of catch-all policies).
func (a *App) trackedNames(ctx context.Context) []trackedName {
	pols := a.policyMap()
	seen := map[string]bool{}
	var out []trackedName
	add := func(name string) {
		name = solver.Normalize(name)
		// IP addresses have no DNS challenge.
		if seen[name] || !certmagic.SubjectQualifiesForPublicCert(name) || net.ParseIP(name) != nil {
			return
		}
		if pol := lookupPolicy(pols, name); pol != nil && pol.provider != nil {
			seen[name] = true
			out = append(out, trackedName{name, pol})
		}
	}
	issuerKeys := map[string]bool{}
	for _, p := range pols {
		if p.provider == nil {
			continue
		}
		for _, s := range p.subjects {
			add(s)
		}
		if ik := p.issuerKey(); ik != "" {
			issuerKeys[ik] = true
		}
	}
	if a.journal == nil {
		return out
	}
	for _, ik := range slices.Sorted(maps.Keys(issuerKeys)) {
		keys, err := a.journal.storage.List(ctx, certmagic.StorageKeys.CertsPrefix(ik), false)
		if err != nil {
			continue // none issued yet
		}
		for _, k := range keys {
			add(strings.Replace(path.Base(k), "wildcard_.", "*.", 1))
		}
	}
	return out
}

// recheck checks name now, records its health and metrics, and logs and
// emits the change when its delegation breaks or is restored.
func (a *App) recheck(ctx context.Context, name string, pol *policy, use cacheUse) *health {
	now := time.Now()
	if pol == nil || pol.provider == nil {
		// Not ours to track.
		return &health{Domain: solver.Normalize(name), State: solver.CodeNoPolicy, Message: noPolicyReport(pol, name).Err().Error(), LastCheck: now}
	}
	_, rep := a.check(ctx, name, use)
	h := &health{Domain: solver.Normalize(name), Policy: pol.index, Mode: rep.Mode, Alias: cmp.Or(rep.Expected, rep.Chain.End), LastCheck: now}
	h.Expires, h.RenewalDue = a.certificateTimes(ctx, h.Domain, pol)
	var de *solver.DelegationError
	switch err := rep.Err(); {
	case rep.Verdict == solver.VerdictOK:
		h.State, h.LastOK = stateOK, now
	case rep.Verdict == solver.VerdictBroken && errors.As(err, &de):
		h.State, h.Message, h.Publish = de.Code(), err.Error(), de.Fix
	default:
		h.State, h.Message = stateUnknown, err.Error()
	}

	// The state changes, its metrics and what a change must say are
	// decided under one lock: two checks of one name at once (the schedule
	// and a recheck) must not both report the change.
	a.monitor.mu.Lock()
	if a.monitor.names == nil {
		a.monitor.names = map[string]*health{}
	}
	prev := a.monitor.names[h.Domain]
	old := ""
	if prev != nil {
		old = prev.State
		if h.State == stateUnknown {
			// A check that could not complete says nothing: keep what
			// the last one that did said.
			h.State, h.Publish = prev.State, prev.Publish
		}
		if h.LastOK.IsZero() {
			h.LastOK = prev.LastOK
		}
	}
	a.monitor.names[h.Domain] = h
	a.metrics.setState(h.Domain, fmt.Sprint(h.Policy), old, h.State)
	if !h.LastOK.IsZero() {
		a.metrics.lastOK.WithLabelValues(h.Domain).Set(float64(h.LastOK.Unix()))
	}
	broke := h.broken() && old != h.State
	restored := h.State == stateOK && prev != nil && prev.broken()
	a.monitor.mu.Unlock()

	switch {
	case broke:
		a.logger.Warn(brokenMessage(h, now), zap.String("domain", h.Domain), zap.String("finding", h.State),
			zap.String("publish", h.Publish), zap.Time("renewal_due", h.RenewalDue), zap.Time("expires", h.Expires))
		a.emit("dns_alias_delegation_broken", h)
	case restored:
		a.logger.Info("delegation restored", zap.String("domain", h.Domain), zap.String("was", old))
		a.emit("dns_alias_delegation_restored", h)
	}
	return h
}

// brokenMessage says what a broken delegation will cost, and when.
func brokenMessage(h *health, now time.Time) string {
	if h.RenewalDue.IsZero() {
		return fmt.Sprintf("the certificate of %s cannot be obtained: %s", h.Domain, h.Message)
	}
	due := "now"
	if d := h.RenewalDue.Sub(now); d > 0 {
		due = "in " + approx(d)
	}
	return fmt.Sprintf("renewal of %s due %s will fail: %s", h.Domain, due, h.Message)
}

// approx renders a duration in the unit a person would use.
func approx(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		return d.Round(time.Second).String()
	}
}

// emit sends a Caddy event about a tracked name, for the events global
// option's handlers.
func (a *App) emit(event string, h *health) {
	if a.events == nil {
		return
	}
	data := map[string]any{"identifier": h.Domain, "state": h.State, "policy": h.Policy}
	if h.broken() {
		data["message"], data["publish"] = h.Message, h.Publish
	}
	if !h.Expires.IsZero() {
		data["expires"], data["renewal_due"] = h.Expires, h.RenewalDue
	}
	a.events.Emit(a.ctx, event, data)
}

// certificateTimes reads name's certificate from storage: when it expires
// and when certmagic renews it (a third of its lifetime before, or the
// policy's renewal_window_ratio).
func (a *App) certificateTimes(ctx context.Context, name string, pol *policy) (expires, renewal time.Time) {
	if a.journal == nil || pol.issuer == nil {
		return
	}
	data, err := a.journal.storage.Load(ctx, certmagic.StorageKeys.SiteCert(pol.issuerKey(), name))
	if err != nil {
		return
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return
	}
	ratio := cmp.Or(pol.renewalRatio, certmagic.DefaultRenewalWindowRatio)
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter, cert.NotAfter.Add(-time.Duration(float64(lifetime) * ratio))
}

// status lists the tracked names' health, filtered by domain and state
// ("broken" matches every finding).
func (a *App) status(domain, state string) []*health {
	a.monitor.mu.Lock()
	defer a.monitor.mu.Unlock()
	out := []*health{}
	for _, h := range a.monitor.names {
		if domain != "" && h.Domain != solver.Normalize(domain) {
			continue
		}
		if state != "" && h.State != state && !(state == "broken" && h.broken()) {
			continue
		}
		c := *h
		out = append(out, &c)
	}
	slices.SortFunc(out, func(x, y *health) int { return strings.Compare(x.Domain, y.Domain) })
	return out
}
