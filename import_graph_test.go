package alias

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// endpointPackage is the acme-dns endpoint, which only builds that import
// it have.
const endpointPackage = "github.com/acme-alias/caddy-dns-alias/acmednsserver"

// TestPluginLacksEndpoint: the plugin's packages do not import the acme-dns
// endpoint, so that a Caddy built with the plugin alone has no handler
// taking credentials from the network. This test binary imports only the
// root package: its module registry is such a build's.
func TestPluginLacksEndpoint(t *testing.T) {
	for _, id := range []string{"http.handlers.acme_dns_server", "admin.api.acme_dns_server"} {
		if _, err := caddy.GetModule(id); err == nil {
			t.Errorf("%s is registered by the plugin's root package and what it imports", id)
		}
	}
	if _, err := caddy.GetModule("dns.providers.alias"); err != nil {
		t.Fatalf("the registry lacks the plugin's own provider: %v", err)
	}
	// Every package but the endpoint's, whatever links them into a build.
	out, err := exec.Command("go", "list", "-deps", "-test=false", "-f", `{{.ImportPath}}`, ".", "./solver/...", "./providers/...", "./internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == endpointPackage || strings.HasPrefix(p, endpointPackage+"/") {
			t.Errorf("the plugin's packages import %s", endpointPackage)
		}
	}
}
