package alias

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/libdns/libdns"

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

// Present writes value at name, waits until the zone's authoritative
// servers serve it, and journals it; the app's exit waits for it.
func (w *ZoneWriter) Present(ctx context.Context, name, value string) error {
	w.p.app.ops.Add(1)
	defer w.p.app.ops.Done()
	return w.p.writer.PresentAt(ctx, name, value)
}

// Remove deletes value at name, which Present wrote, and no other.
func (w *ZoneWriter) Remove(ctx context.Context, name, value string) error {
	_, err := w.p.DeleteRecords(ctx, solver.FQDN(name), []libdns.Record{libdns.TXT{Name: solver.FQDN(name), Text: value}})
	return err
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
