// Package caddyconf holds what the plugin's Caddy modules (the alias
// provider and its app, and the acme-dns endpoint) share in reading their
// configuration: Caddyfile argument readers and the name of a storage for
// errors.
package caddyconf

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
)

// InnerProvider parses `provider <name> ...` the way Caddy's own dns
// directives load a dns.providers module.
func InnerProvider(d *caddyfile.Dispenser) ([]byte, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "dns.providers."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "name", name, nil), nil
}

// AtLeastOneArg reads the remaining arguments of a line, of which there
// must be one or more.
func AtLeastOneArg(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, nil
}

// DurationArg reads the one argument of the subdirective field: a duration
// (Caddy's syntax, days included), or -1 for off where off is allowed.
func DurationArg(d *caddyfile.Dispenser, field string, off bool) (caddy.Duration, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	if off && s == "-1" {
		return -1, nil
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s: %v", field, err)
	}
	return caddy.Duration(dur), nil
}

// StorageName names a storage for errors: its Caddy module ID (e.g.
// caddy.storage.redis; storage modules that are their own certmagic
// storage have one), file_system and its path, or else its Go type.
// Never the storage's String(), which for some modules is their whole
// configuration.
func StorageName(s certmagic.Storage) string {
	switch s := s.(type) {
	case caddy.Module:
		return string(s.CaddyModule().ID)
	case *certmagic.FileStorage:
		return "file_system " + s.Path
	}
	return fmt.Sprintf("%T", s)
}
