package alias

import (
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// registry is what the modules of one config registered with its app while
// Caddy provisioned them: the alias providers, each with the module that
// loaded it, the permission modules and the zone writers.
type registry struct {
	mu    sync.Mutex
	alias []registration
	// usesGlobal is where the ACME issuers that solve with the tls app's
	// global dns provider stand in the config, read when that provider
	// registered (globalIssuers); nil if it is no alias provider.
	usesGlobal  [][2]int
	permissions []*Permission
	writers     []*ZoneWriter
}

// registration is an alias provider and the module that loaded it: an ACME
// issuer, the tls app (its global dns provider), or nil (the check command).
type registration struct {
	p     *Provider
	owner caddy.Module
}

func (r *registry) addProvider(p *Provider, owner caddy.Module) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alias = append(r.alias, registration{p, owner})
	if tlsApp, ok := owner.(*caddytls.TLS); ok {
		r.usesGlobal = globalIssuers(tlsApp)
	}
}

// addPermission adds a permission module, whose cached refusals a recheck
// drops.
func (r *registry) addPermission(p *Permission) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.permissions = append(r.permissions, p)
}

// addWriter adds a zone writer, which the module that made it finds again
// through RunningZoneWriters.
func (r *registry) addWriter(w *ZoneWriter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writers = append(r.writers, w)
}

// zoneWriters lists the zone writers.
func (r *registry) zoneWriters() []*ZoneWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writers)
}

// forgetAdmission drops what the permission modules remember of name.
func (r *registry) forgetAdmission(name string) {
	r.mu.Lock()
	perms := slices.Clone(r.permissions)
	r.mu.Unlock()
	for _, p := range perms {
		p.admission.Forget(name)
	}
}

// providers lists the alias providers.
func (r *registry) providers() []*Provider {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Provider, len(r.alias))
	for i, reg := range r.alias {
		out[i] = reg.p
	}
	return out
}

// forPolicyMap returns what tlsPolicies maps the policies with.
func (r *registry) forPolicyMap() ([]registration, [][2]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.alias), r.usesGlobal
}

// presentedCount is how many challenge records this process presents now.
func (r *registry) presentedCount() float64 {
	n := 0
	for _, p := range r.providers() {
		n += len(p.writer.Presented())
	}
	return float64(n)
}

// sweepers returns the sweepers of the config's alias providers.
func (r *registry) sweepers() []*solver.Sweeper {
	var out []*solver.Sweeper
	for _, p := range r.providers() {
		out = append(out, p.sweeper)
	}
	return out
}
