// Package providers holds the writers behind the alias wrapper: the adapter
// that turns any loaded dns.providers.* module into a solver.Writer.
package providers

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// Writer returns mod as a solver.Writer together with the short name of its
// module (e.g. "rfc2136"), or an error naming the module if it cannot append
// and delete records.
func Writer(mod any) (solver.Writer, string, error) {
	name := fmt.Sprintf("%T", mod)
	if m, ok := mod.(caddy.Module); ok {
		name = m.CaddyModule().ID.Name()
	}
	w, ok := mod.(solver.Writer)
	if !ok {
		return nil, name, fmt.Errorf("DNS provider module %q cannot append and delete records", name)
	}
	return w, name, nil
}
