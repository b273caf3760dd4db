package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/internal/configwalk"
	"github.com/acme-alias/caddy-dns-alias/internal/readme"
)

// aliasPolicyConfig is a whole config whose one ACME policy uses the alias
// provider with the given fields (the object's body without "name").
func aliasPolicyConfig(providerFields string) string {
	return `{"apps":{"tls":{"automation":{"policies":[{"subjects":["example.com"],"issuers":[{"module":"acme","challenges":{"dns":{"provider":{"name":"alias",` + providerFields + `}}}}]}]}}}}`
}

// validate provisions a JSON config the way `caddy validate` does, with the
// admin endpoint off.
func validate(cfg string) error {
	var c caddy.Config
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		return err
	}
	c.Admin = &caddy.AdminConfig{Disabled: true}
	return caddy.Validate(&c)
}

// checkErr fails t unless err is nil (want "") or contains want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("valid config refused: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
}

// readmeBlocks returns the first ```caddyfile block of the section of
// README.md or docs/ whose heading starts with heading, and the ```json
// block shown right after it.
func readmeBlocks(t *testing.T, heading string) (caddyfile, jsonText string) {
	t.Helper()
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range doc.In(heading) {
		if b.Lang != "caddyfile" {
			continue
		}
		j, ok := doc.JSONAfter(b)
		if !ok {
			t.Fatalf("%s has no ```json block after it", b)
		}
		return b.Text, j.Text
	}
	t.Fatalf("the docs' %q section has no ```caddyfile block", heading)
	return "", ""
}

// checkAliasProvider fails t unless the adapted config holds exactly one
// alias provider, equal to the JSON object want.
func checkAliasProvider(t *testing.T, adapted []byte, want string) {
	t.Helper()
	var cfg, w any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	got := configwalk.AliasProviders(cfg)
	if len(got) != 1 || !reflect.DeepEqual(got[0], w) {
		g, _ := json.Marshal(got)
		t.Errorf("alias provider:\n got %s\nwant %s", g, want)
	}
}

// standalone returns a context outside any config, whose alias providers and
// permission modules register with a new app (as in the check command), and
// that app. Set its policies with setPolicies once they are provisioned.
func standalone(t testing.TB) (caddy.Context, *App) {
	t.Helper()
	app := newApp()
	app.logger = zap.NewNop()
	app.caa.client = offlineDirectory
	ctx, cancel := caddy.NewContext(caddy.Context{Context: withApp(context.Background(), app)})
	t.Cleanup(cancel)
	return ctx, app
}

// TestMain sets the secrets the tests' configs name as {env.*}: an empty
// one fails provisioning (providers.EmptySecret), as it would in Caddy.
func TestMain(m *testing.M) {
	for _, v := range []string{"TSIG_SECRET", "TSIG_SECRET_2"} {
		if os.Getenv(v) == "" {
			os.Setenv(v, "dGVzdC1zZWNyZXQtb2YtdGhlLXVuaXQtdGVzdHM=")
		}
	}
	offline := &loopbackOnly{next: http.DefaultTransport}
	http.DefaultTransport = offline
	code := m.Run()
	if offline.tried.Load() != nil {
		fmt.Fprintf(os.Stderr, "a hermetic test asked %s: it must reach no network\n", *offline.tried.Load())
		code = 1
	}
	os.Exit(code)
}

// loopbackOnly refuses every HTTP request to a host other than loopback
// and remembers it: the hermetic tests reach no network (a test app's
// check would otherwise ask Let's Encrypt for its CAA identities).
type loopbackOnly struct {
	next  http.RoundTripper
	tried atomic.Pointer[string]
}

func (l *loopbackOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
		return l.next.RoundTrip(r)
	}
	url := r.URL.String()
	l.tried.Store(&url)
	return nil, errors.New("hermetic test: no network")
}

// offlineDirectory is a test app's CAA directory client: no CA's directory
// is reachable from the hermetic tests.
func offlineDirectory([]string) (*http.Client, error) {
	return nil, errors.New("hermetic test: no CA directory")
}

// loadConfig runs cfg as Caddy's config until the test ends and returns
// its dns_alias app.
func loadConfig(t *testing.T, cfg []byte) *App {
	t.Helper()
	t.Cleanup(func() { caddy.Stop() })
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	return runningAppOf(t)
}

// runningAppOf returns the dns_alias app of the running config.
func runningAppOf(t *testing.T) *App {
	t.Helper()
	app, err := runningApp()
	if err != nil {
		t.Fatalf("the running config has no dns_alias app: %v", err)
	}
	return app
}
