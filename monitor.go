package alias

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
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

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/internal/caddyconf"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// health is what the periodic delegation checks know of one tracked name,
// as /dns-alias/status lists it.
type health struct {
	Domain string `json:"domain"`
	Policy int    `json:"policy"`
	Mode   string `json:"mode,omitempty"`
	Alias  string `json:"alias,omitempty"`
	// State is "pending" (not checked yet), "ok", "unknown" (the check
	// could not complete) or the code of the finding that breaks the
	// delegation.
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	Publish    string    `json:"publish,omitempty"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastOK     time.Time `json:"last_ok,omitzero"`
	Expires    time.Time `json:"expires,omitzero"`
	RenewalDue time.Time `json:"renewal_due,omitzero"`
}

// broken reports whether the state is a finding.
func (h *health) broken() bool {
	return h.State != "" && h.State != stateOK && h.State != stateUnknown && h.State != statePending
}

const (
	stateOK      = "ok"
	stateUnknown = "unknown"
	statePending = "pending"
)

// monitor holds the health of the tracked names and when the periodic
// checks last ran. It outlives a config: the apps of successive configs on
// one storage share it (monitors), so that a reload neither repeats a run
// nor announces again a change it announced already, nor resets the
// counters.
type monitor struct {
	mu      sync.Mutex
	names   map[string]*health
	lastRun time.Time     // when the last run started
	runs    int           // runs started
	runTook time.Duration // how long the last complete run took
	// counters are the first config's, which later configs count on.
	counters *counters
}

// watcher runs the periodic delegation checks of one config and answers
// for the tracked names' health (admin API, metrics): it owns what it
// reads, the shared monitor state and the config's certificate storage,
// and asks the app for the policy map and the check.
type watcher struct {
	app     *App
	state   *monitor
	storage certmagic.Storage // nil outside a config (the check command)
}

// Destruct lets monitors drop a monitor no config uses any more.
func (*monitor) Destruct() error { return nil }

// monitors holds each storage's monitor across config reloads, the way
// Caddy keeps listeners across them.
var monitors = caddy.NewUsagePool()

// monitorKey names the monitor of the names kept in storage s.
func monitorKey(s certmagic.Storage) string { return "dns_alias.monitor " + caddyconf.StorageName(s) }

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
// by a tenth either way, so that a cluster's instances do not ask in step).
// The first run comes soon after the first start, and after a reload when
// the last run's interval is over: a reload is no reason to ask again.
// Status lists every tracked name from the start, pending until checked.
func (w *watcher) loop(ctx context.Context) {
	interval := time.Duration(w.app.CheckInterval)
	if interval < 0 {
		return
	}
	w.syncTracked(w.trackedNames(ctx))
	w.state.mu.Lock()
	first := jitter(min(interval, 10*time.Second) / 2)
	if last := w.state.lastRun; !last.IsZero() {
		first = max(0, time.Until(last.Add(interval)))
	}
	w.state.mu.Unlock()
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			w.checkTracked(ctx)
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
func (w *watcher) checkTracked(ctx context.Context) {
	names := w.trackedNames(ctx)
	w.syncTracked(names)
	start := time.Now()
	w.state.mu.Lock()
	w.state.lastRun = start
	w.state.runs++
	w.state.mu.Unlock()
	inParallel(len(names), cmp.Or(w.app.CheckConcurrency, defaultCheckConcurrency), func(i int) {
		if ctx.Err() == nil {
			w.recheck(ctx, names[i].name, names[i].pol, cacheShared)
		}
	})
	if ctx.Err() == nil {
		w.state.mu.Lock()
		w.state.runTook = time.Since(start)
		w.state.mu.Unlock()
	}
}

// trackedNames are the names of every policy with an alias provider: its
// subjects, and the certificates in storage that it obtains (on-demand
// names once issued, and the names of catch-all policies).
func (w *watcher) trackedNames(ctx context.Context) []trackedName {
	pols := w.app.policyMap()
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
	if w.storage == nil {
		return out
	}
	for _, ik := range slices.Sorted(maps.Keys(issuerKeys)) {
		keys, err := w.storage.List(ctx, certmagic.StorageKeys.CertsPrefix(ik), false)
		if err != nil {
			continue // none issued yet
		}
		for _, k := range keys {
			add(strings.Replace(path.Base(k), "wildcard_.", "*.", 1))
		}
	}
	return out
}

// syncTracked makes the monitor hold exactly the tracked names: the new
// ones pending, the policy of each as the running config decides, and the
// names no longer tracked dropped (and with them their metrics, which are
// read from the monitor).
func (w *watcher) syncTracked(names []trackedName) {
	m := w.state
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names == nil {
		m.names = map[string]*health{}
	}
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n.name] = true
		if h := m.names[n.name]; h != nil {
			h.Policy = n.pol.index
		} else {
			m.names[n.name] = &health{Domain: n.name, Policy: n.pol.index, State: statePending}
		}
	}
	for name := range m.names {
		if !keep[name] {
			delete(m.names, name)
		}
	}
}

// tracks reports whether the periodic checks watch name: it is one of its
// policy's subjects or has a certificate of it in storage (an on-demand
// name once issued). A recheck on request records only such names, so that
// made-up names do not pile up in the monitor.
func (w *watcher) tracks(ctx context.Context, name string, pol *policy) bool {
	if pol == nil || pol.provider == nil {
		return false
	}
	name = solver.Normalize(name)
	w.state.mu.Lock()
	_, known := w.state.names[name]
	w.state.mu.Unlock()
	if known || slices.ContainsFunc(pol.subjects, func(s string) bool { return solver.Normalize(s) == name }) {
		return true
	}
	ik := pol.issuerKey()
	return w.storage != nil && ik != "" && w.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(ik, name))
}

// recheck checks name now, records its health if the monitor tracks it,
// and logs and emits the change when its delegation breaks or is restored.
func (w *watcher) recheck(ctx context.Context, name string, pol *policy, use cacheUse) *health {
	now := time.Now()
	if pol == nil || pol.provider == nil {
		// Not ours to track.
		return &health{Domain: solver.Normalize(name), State: solver.CodeNoPolicy, Message: noPolicyReport(pol, name).Err().Error(), LastCheck: now}
	}
	_, rep := w.app.check(ctx, name, use)
	h := &health{Domain: solver.Normalize(name), Policy: pol.index, Mode: rep.Mode, Alias: cmp.Or(rep.Expected, rep.Chain.End), LastCheck: now}
	h.Expires, h.RenewalDue = w.certificateTimes(ctx, h.Domain, pol)
	var de *solver.DelegationError
	switch err := rep.Err(); {
	case rep.Verdict == solver.VerdictOK:
		h.State, h.LastOK = stateOK, now
	case rep.Verdict == solver.VerdictBroken && errors.As(err, &de):
		h.State, h.Message, h.Publish = de.Code(), err.Error(), de.Fix
	default:
		h.State, h.Message = stateUnknown, err.Error()
	}

	// The state change and what it must say are decided under one lock:
	// two checks of one name at once (the schedule and a recheck) must not
	// both report the change.
	tracked := w.tracks(ctx, h.Domain, pol)
	m := w.state
	m.mu.Lock()
	if m.names == nil {
		m.names = map[string]*health{}
	}
	prev := m.names[h.Domain]
	if prev == nil && !tracked {
		m.mu.Unlock()
		return h
	}
	old := ""
	if prev != nil {
		old = prev.State
		if h.State == stateUnknown && prev.State != statePending {
			// A check that could not complete says nothing: keep what
			// the last one that did said.
			h.State, h.Publish = prev.State, prev.Publish
		}
		if h.LastOK.IsZero() {
			h.LastOK = prev.LastOK
		}
	}
	m.names[h.Domain] = h
	broke := h.broken() && old != h.State
	restored := h.State == stateOK && prev != nil && prev.broken()
	m.mu.Unlock()

	switch {
	case broke:
		w.app.logger.Warn(brokenMessage(h, now), zap.String("domain", h.Domain), zap.String("finding", h.State),
			zap.String("publish", h.Publish), zap.Time("renewal_due", h.RenewalDue), zap.Time("expires", h.Expires))
		w.emit("dns_alias_delegation_broken", h)
	case restored:
		w.app.logger.Info("delegation restored", zap.String("domain", h.Domain), zap.String("was", old))
		w.emit("dns_alias_delegation_restored", h)
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
func (w *watcher) emit(event string, h *health) {
	if w.app.events == nil {
		return
	}
	data := map[string]any{"identifier": h.Domain, "state": h.State, "policy": h.Policy}
	if h.broken() {
		data["message"], data["publish"] = h.Message, h.Publish
	}
	if !h.Expires.IsZero() {
		data["expires"], data["renewal_due"] = h.Expires, h.RenewalDue
	}
	w.app.events.Emit(w.app.ctx, event, data)
}

// certificateTimes reads name's certificate from storage: when it expires
// and when certmagic renews it: at the time it selected in the renewal
// window the CA gave (ARI, kept in the certificate's metadata), else a
// third of its lifetime before expiry, or the policy's
// renewal_window_ratio.
func (w *watcher) certificateTimes(ctx context.Context, name string, pol *policy) (expires, renewal time.Time) {
	if w.storage == nil || pol.issuer == nil {
		return
	}
	ik := pol.issuerKey()
	data, err := w.storage.Load(ctx, certmagic.StorageKeys.SiteCert(ik, name))
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
	if due := w.ariRenewal(ctx, ik, name); !due.IsZero() {
		return cert.NotAfter, due
	}
	ratio := cmp.Or(pol.renewalRatio, certmagic.DefaultRenewalWindowRatio)
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter, cert.NotAfter.Add(-time.Duration(float64(lifetime) * ratio))
}

// ariRenewal is the renewal time certmagic keeps in the certificate's
// metadata from the CA's renewal information: the time it selected, or the
// start of the CA's window if none was selected yet. Zero if the CA gave
// none.
func (w *watcher) ariRenewal(ctx context.Context, issuerKey, name string) time.Time {
	data, err := w.storage.Load(ctx, certmagic.StorageKeys.SiteMeta(issuerKey, name))
	if err != nil {
		return time.Time{}
	}
	var res certmagic.CertificateResource
	var issued acme.Certificate
	if json.Unmarshal(data, &res) != nil || len(res.IssuerData) == 0 || json.Unmarshal(res.IssuerData, &issued) != nil || issued.RenewalInfo == nil {
		return time.Time{}
	}
	if ari := issued.RenewalInfo; !ari.SelectedTime.IsZero() {
		return ari.SelectedTime
	}
	return issued.RenewalInfo.SuggestedWindow.Start
}

// Bounds of one /dns-alias/status answer: 1000 names are about 500 KB of
// JSON; a platform pages through more with ?after=.
