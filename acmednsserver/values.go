package acmednsserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// ValueRules are the rules of the values an account holds. acme-dns keeps
// an account's two newest values, so a certificate with three names that
// share an account fails; here each value stays until no validation can
// need it any more (Lifetime), up to MaxValues per account.
type ValueRules struct {
	// Lifetime is how long a value stays after it was written; the
	// account's two newest stay longer, until newer ones replace them.
	// Default 1 hour: an ACME authorization's challenge is validated
	// within minutes of its update.
	Lifetime time.Duration
	// MaxValues bounds the values of one account (default 16, at least
	// 2): a write that would exceed it removes the oldest first.
	MaxValues int
	// UpdateTimeout bounds an update (default 20 s, well under the 30 s
	// after which lego's acme-dns client gives up): a value written whose
	// wait for every authoritative server is not over by then is answered
	// 200, and the client's own propagation check finishes the wait.
	UpdateTimeout time.Duration
}

const (
	defaultLifetime      = time.Hour
	defaultMaxValues     = 16
	defaultUpdateTimeout = 20 * time.Second
)

// keep is how many of an account's newest values stay whatever their age:
// acme-dns's semantics, which lets an apex and its wildcard validate at
// once.
const keep = 2

func (r ValueRules) withDefaults() ValueRules {
	if r.Lifetime == 0 {
		r.Lifetime = defaultLifetime
	}
	if r.MaxValues == 0 {
		r.MaxValues = defaultMaxValues
	}
	if r.UpdateTimeout == 0 {
		r.UpdateTimeout = defaultUpdateTimeout
	}
	return r
}

func (r ValueRules) validate() error {
	switch {
	case r.Lifetime < time.Minute:
		return fmt.Errorf("value_lifetime: %s is shorter than a minute: an ACME validation may come minutes after its update", r.Lifetime)
	case r.MaxValues < keep:
		return fmt.Errorf("max_values: %d is fewer than %d: an apex and its wildcard validate at once", r.MaxValues, keep)
	case r.UpdateTimeout < time.Second || r.UpdateTimeout > 25*time.Second:
		return fmt.Errorf("update_timeout: %s is not between 1s and 25s: clients give up after 30s", r.UpdateTimeout)
	}
	return nil
}

// valueKeeper applies the value rules to an account's values, through the
// zone's Records.
type valueKeeper struct {
	records Records
	rules   ValueRules
	logger  *zap.Logger
}

// heldValue is one of an account's values and when it was written, and
// when its lease was last renewed.
type heldValue struct {
	value         string
	written, seen time.Time
}

// load reads the account's values from the journal on its first use in
// this server: a restart, a reload or another instance wrote them. a.mu is
// held. A journal that cannot be read leaves the account as it is (the
// next use or the next round tries again).
func (k *valueKeeper) load(ctx context.Context, a *account) {
	if a.loaded {
		return
	}
	held, err := k.records.Held(ctx)
	if err != nil {
		k.logger.Warn("reading an acme-dns account's values from the journal; the next update tries again",
			zap.String("account", a.Username), zap.String("name", a.name), zap.Error(err))
		return
	}
	a.values, a.loaded = merge(a.values, held, a.name, time.Time{}), true
}

// merge returns the values at name from held, oldest first, with those of
// mine written after since (writes the listing may have missed).
func merge(mine []heldValue, held []Held, name string, since time.Time) []heldValue {
	var out []heldValue
	for _, h := range held {
		if h.Name == name {
			out = append(out, heldValue{h.Value, h.Written, h.Seen})
		}
	}
	for _, v := range mine {
		if v.written.After(since) && !slices.ContainsFunc(out, func(o heldValue) bool { return o.value == v.value }) {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(x, y heldValue) int { return x.written.Compare(y.written) })
	return out
}

// put writes value at the account's name, within the update's time
// bound: values past their lifetime go first, then the oldest while the
// account holds its maximum.
func (k *valueKeeper) put(ctx context.Context, a *account, value string) (string, *refusal) {
	if err := solver.ValidDigest(value); err != nil {
		return "", &refusal{http.StatusBadRequest, "bad_txt", RefusedValue, err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, k.rules.UpdateTimeout)
	defer cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	k.load(ctx, a)
	now := time.Now()
	if i := slices.IndexFunc(a.values, func(v heldValue) bool { return v.value == value }); i >= 0 {
		// Written already: it becomes the newest again, for a new
		// lifetime.
		v := heldValue{value, now, now}
		if err := k.records.Keep(ctx, Held{a.name, value, now, now}, k.rules.Lifetime); err != nil {
			return "", &refusal{http.StatusInternalServerError, "write_failed", Failed, err.Error()}
		}
		a.values = append(slices.Delete(a.values, i, i+1), v)
		return value, nil
	}
	k.expire(ctx, a, now)
	for len(a.values) >= k.rules.MaxValues {
		if !k.removeOldest(ctx, a) {
			return "", &refusal{http.StatusServiceUnavailable, "busy", Failed, fmt.Sprintf("the account holds %d values, its maximum, and removing the oldest failed", len(a.values))}
		}
	}
	served, err := k.records.Present(ctx, a.name, value, k.rules.Lifetime)
	if err != nil {
		return "", &refusal{http.StatusInternalServerError, "write_failed", Failed, err.Error()}
	}
	if !served {
		k.logger.Info("acme-dns value written, not yet served by every authoritative server within the update's time bound; the client's propagation check waits for the rest",
			zap.String("account", a.Username), zap.String("name", a.name), zap.String("value", value), zap.Duration("update_timeout", k.rules.UpdateTimeout))
	}
	a.values = append(a.values, heldValue{value, now, now})
	return value, nil
}

// expire removes the account's values older than the lifetime, oldest
// first, but never its two newest; a failure stops it (the value stays,
// and the next update or round tries again). a.mu is held.
func (k *valueKeeper) expire(ctx context.Context, a *account, now time.Time) {
	for len(a.values) > keep && now.Sub(a.values[0].written) >= k.rules.Lifetime {
		if !k.removeOldest(ctx, a) {
			return
		}
	}
}

// removeOldest removes the account's oldest value; a.mu is held.
func (k *valueKeeper) removeOldest(ctx context.Context, a *account) bool {
	v := a.values[0]
	if err := k.records.Remove(ctx, a.name, v.value); err != nil {
		k.logger.Warn("removing an acme-dns account's oldest value failed; the next update tries again",
			zap.String("account", a.Username), zap.String("name", a.name), zap.String("value", v.value), zap.Error(err))
		return false
	}
	a.values = a.values[1:]
	return true
}

// Tend is the server's round over the values of its zone, which the
// dns_alias app's run loop calls (ZoneTender): every account this server
// knows takes its values from the journal (another instance may have
// written some), loses those past their lifetime and those over its
// maximum, and renews the lease of the two newest, which stay while an
// endpoint serves the account. A value at a name no account here knows (a
// registered account not used since the config loaded, one removed from
// the config) is left to its lease: the sweep removes it a lifetime after
// its last renewal. It returns when the next round is due.
func (s *Server) Tend(ctx context.Context) time.Duration {
	// A round acts on its own listing of the journal: two at once (the
	// app's loop and another caller) would each remove what the other
	// already did.
	next := min(max(s.values.rules.Lifetime/4, time.Second), time.Minute)
	select {
	case s.tending <- struct{}{}:
		defer func() { <-s.tending }()
	case <-ctx.Done():
		return next
	}
	listedAt := time.Now()
	held, err := s.values.records.Held(ctx)
	if err != nil {
		s.logger.Warn("reading the acme-dns values from the journal; the next round tries again", zap.String("zone", s.zone), zap.Error(err))
		return next
	}
	for _, a := range s.known() {
		a.mu.Lock()
		a.values, a.loaded = merge(a.values, held, a.name, listedAt), true
		now := time.Now()
		s.values.expire(ctx, a, now)
		for len(a.values) > s.values.rules.MaxValues && s.values.removeOldest(ctx, a) {
		}
		for i := max(len(a.values)-keep, 0); i < len(a.values); i++ {
			v := &a.values[i]
			if now.Sub(v.seen) < s.values.rules.Lifetime/2 {
				continue
			}
			if err := s.values.records.Keep(ctx, Held{a.name, v.value, v.written, v.seen}, s.values.rules.Lifetime); err != nil {
				s.logger.Warn("renewing an acme-dns account's value; the next round tries again",
					zap.String("account", a.Username), zap.String("name", a.name), zap.String("value", v.value), zap.Error(err))
				continue
			}
			v.seen = now
		}
		a.mu.Unlock()
	}
	return next
}

// known lists the configured accounts and the registered ones used since
// the config was loaded.
func (s *Server) known() []*account {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*account, 0, len(s.accounts)+s.registered.len())
	for _, a := range s.accounts {
		all = append(all, a)
	}
	return append(all, s.registered.values()...)
}
