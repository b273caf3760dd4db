package alias

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// ZoneWriterConfig configures a ZoneWriter: the alias zone, the DNS
// provider module that writes into it, and the authoritative wait's
// settings, as in the alias provider.
type ZoneWriterConfig struct {
	Zone               string
	ProviderRaw        json.RawMessage
	Resolvers          []string
	PrivateNameservers bool
	AuthoritativeWait  caddy.Duration
}

// ZoneWriter writes and deletes TXT values at names of one alias zone with
// the alias provider's confinement, journal, sweep and metrics, for a
// module that takes the values from elsewhere than an ACME issuer (the
// acme-dns endpoint, package acmednsserver).
type ZoneWriter struct {
	p     *Provider
	owner caddy.Module
}

// NewZoneWriter loads cfg's DNS provider module (ctx.LoadModule on
// cfg.ProviderRaw) and returns a writer confined to cfg.Zone, registered
// with the config's dns_alias app on behalf of owner, the module being
// provisioned that writes through it.
func NewZoneWriter(ctx caddy.Context, owner caddy.Module, cfg ZoneWriterConfig) (*ZoneWriter, error) {
	zone := solver.Normalize(cfg.Zone)
	// Follow mode with the one zone: the rule that confines every write
	// to the zone, and by which the journal's sweep (here or on another
	// instance with the same config) knows the entries as this writer's.
	p := &Provider{ProviderRaw: cfg.ProviderRaw, Zones: []string{zone}, Follow: true,
		Resolvers: cfg.Resolvers, PrivateNameservers: cfg.PrivateNameservers, AuthoritativeWait: cfg.AuthoritativeWait}
	if err := p.provision(ctx, owner); err != nil {
		return nil, fmt.Errorf("writer for zone %s: %w", zone, err)
	}
	w := &ZoneWriter{p: p, owner: owner}
	p.app.modules.addWriter(w)
	return w, nil
}

// Owner is the module that made the writer.
func (w *ZoneWriter) Owner() caddy.Module { return w.owner }

// Hold writes value at name as a held value (solver.Provider.Hold): it
// stays in DNS and in the journal across restarts and reloads until
// Unhold, or until the sweep finds its lease (renewed by Rehold) run out.
// The app's exit waits for it, and does not withdraw it.
func (w *ZoneWriter) Hold(ctx context.Context, name, value string, lease time.Duration) (served bool, err error) {
	w.p.app.ops.Add(1)
	defer w.p.app.ops.Done()
	return w.p.writer.Held().Hold(ctx, name, value, lease)
}

// Unhold removes the held value at name, record and journal entry.
func (w *ZoneWriter) Unhold(ctx context.Context, name, value string) error {
	w.p.app.ops.Add(1)
	defer w.p.app.ops.Done()
	return w.p.writer.Held().Unhold(ctx, name, value)
}

// Holding lists the held values of the writer's zone from the journal.
func (w *ZoneWriter) Holding(ctx context.Context) ([]solver.JournalEntry, error) {
	return w.p.writer.Held().Holding(ctx)
}

// Rehold renews the lease of the held value at name, written at written.
func (w *ZoneWriter) Rehold(ctx context.Context, name, value string, written time.Time, lease time.Duration) error {
	return w.p.writer.Held().Rehold(ctx, name, value, written, lease)
}

// ZoneTender is a zone writer's owner that tends the values it holds in
// its zone (ages them, renews the ones it keeps): the dns_alias app's run
// loop calls TendZone while the config runs, first at its Start and then
// after the delay each call returns.
type ZoneTender interface {
	TendZone(ctx context.Context) (next time.Duration)
}

// tendZones runs the config's zone tenders until ctx ends, each on a
// goroutine of its own.
func tendZones(ctx context.Context, modules *registry) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, zw := range modules.zoneWriters() {
		tender, ok := zw.owner.(ZoneTender)
		if !ok {
			continue
		}
		wg.Go(func() {
			t := time.NewTimer(0)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					t.Reset(max(tender.TendZone(ctx), time.Second))
				}
			}
		})
	}
}

// RunningZoneWriters lists the zone writers of the running config, for
// the admin routes of the modules that made them; none if the running
// config has no dns_alias app.
func RunningZoneWriters() []*ZoneWriter {
	app, err := runningApp()
	if err != nil {
		return nil
	}
	return app.modules.zoneWriters()
}
