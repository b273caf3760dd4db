package providers_test

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	_ "github.com/acme-alias/caddy-dns-alias"
	"github.com/acme-alias/caddy-dns-alias/providers"
)

// TestACMEDNSStateLifecycle runs configs as Caddy does: an acme-dns
// account's bookkeeping (values in flight, update spacing) outlives a
// reload of the config that names it, and is let go once no config names
// it any more.
func TestACMEDNSStateLifecycle(t *testing.T) {
	const server, subdomain = "https://acme-dns.test", "d420c923-bbd7-4056-ab64-c3ca54c9b3cf"
	storage := map[string]any{"module": "file_system", "root": t.TempDir()}
	// config names the account with subdomain sub.
	config := func(sub string) []byte {
		provider := map[string]any{"name": "alias", "resolvers": []string{"127.0.0.1:53"},
			"acme_dns": map[string]any{"server": server, "username": "u", "password": "p", "subdomain": sub, "fulldomain": sub + ".auth.acme-dns.test"}}
		cfg, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true}, "storage": storage,
			"apps": map[string]any{"tls": map[string]any{"automation": map[string]any{"policies": []any{map[string]any{
				"subjects": []string{"example.com"},
				"issuers":  []any{map[string]any{"module": "acme", "challenges": map[string]any{"dns": map[string]any{"provider": provider}}}},
			}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Cleanup(func() { caddy.Stop() })

	if err := caddy.Load(config(subdomain), true); err != nil {
		t.Fatal(err)
	}
	first, n := providers.ACMEDNSState(server, subdomain)
	if first == nil || n != 1 {
		t.Fatalf("after the first config: %d configs hold the account's bookkeeping, want 1", n)
	}
	if err := caddy.Load(config(subdomain), true); err != nil {
		t.Fatal(err)
	}
	if again, n := providers.ACMEDNSState(server, subdomain); again != first || n != 1 {
		t.Errorf("after a reload: the same bookkeeping %v, held by %d configs; want the same, held by 1", again == first, n)
	}
	if err := caddy.Load(config("c9d6bd1c-0e4f-4c58-9b6a-2b7c2d0f3e11"), true); err != nil {
		t.Fatal(err)
	}
	if st, n := providers.ACMEDNSState(server, subdomain); st != nil || n != 0 {
		t.Errorf("a config with another account still holds its bookkeeping (%d references)", n)
	}
}
