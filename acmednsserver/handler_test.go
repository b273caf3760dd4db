package acmednsserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"golang.org/x/crypto/bcrypt"

	alias "github.com/acme-alias/caddy-dns-alias"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

const endpointZone = "acme.validation.example.org"

func init() { caddy.RegisterModule(&recorder{}) }

// recorder is the endpoint's inner DNS provider in these tests
// (dns.providers.acmednsserver_recorder): it records the calls, which the
// tests read back from recorded.
type recorder struct{}

type recordedCall struct{ op, zone, name, value string }

var recorded struct {
	mu    sync.Mutex
	calls []recordedCall
}

func (*recorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "dns.providers.acmednsserver_recorder", New: func() caddy.Module { return new(recorder) }}
}

func (*recorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func (*recorder) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, record("append", zone, recs)
}

func (*recorder) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, record("delete", zone, recs)
}

func record(op, zone string, recs []libdns.Record) error {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	for _, r := range recs {
		rr := r.RR()
		recorded.calls = append(recorded.calls, recordedCall{op, zone, rr.Name, rr.Data})
	}
	return nil
}

// takeCalls returns the calls recorded since the last take.
func takeCalls() []recordedCall {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	out := recorded.calls
	recorded.calls = nil
	return out
}

const recorderJSON = `{"name":"acmednsserver_recorder"}`

func TestHandlerCaddyfile(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`example.com {
	respond "not an acme-dns path" 404
	acme_dns_server {
		zone `+endpointZone+`
		provider acmednsserver_recorder
		account alice {env.ALICE_KEY_HASH} a1 10.0.0.0/8 192.0.2.1
		account bob {env.BOB_KEY_HASH} b1
		register 10.0.0.0/8
		httpreq
		authoritative_wait 10s
		private_nameservers
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	want := `{"handler":"acme_dns_server","zone":"` + endpointZone + `","provider":` + recorderJSON +
		`,"accounts":[{"username":"alice","key_hash":"{env.ALICE_KEY_HASH}","subdomain":"a1","allow_from":["10.0.0.0/8","192.0.2.1"]},` +
		`{"username":"bob","key_hash":"{env.BOB_KEY_HASH}","subdomain":"b1"}],"register":{"allow_from":["10.0.0.0/8"]},"httpreq":true,"private_nameservers":true,"authoritative_wait":10000000000}`
	var obj any
	json.Unmarshal([]byte(want), &obj)
	sorted, _ := json.Marshal(obj) // the adapter's key order
	want = string(sorted)
	i, j := strings.Index(s, want), strings.Index(s, `"handler":"static_response"`)
	if i < 0 || j < 0 || i > j {
		t.Fatalf("adapted config lacks the handler before respond's (directive order):\n%s\nwant %s", s, want)
	}
	for _, bad := range []string{"acme_dns_server {\n\t\taccount alice hash\n\t}", "acme_dns_server {\n\t\tsecret x\n\t}", "acme_dns_server arg"} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("example.com {\n\t"+bad+"\n}"), nil); err == nil {
			t.Errorf("%q adapted", bad)
		}
	}
}

// endpointConfig is a config whose one HTTP route is the endpoint with
// fields, its storage in dir (none: Caddy's default) and the admin API
// off.
func endpointConfig(fields, dir string) string {
	storage := ""
	if dir != "" {
		storage = fmt.Sprintf(`"storage":{"module":"file_system","root":%q},`, dir)
	}
	return `{"admin":{"disabled":true},` + storage + `"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"acme_dns_server",` + fields + `}]}]}}}}}`
}

func TestHandlerValidate(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("k"), bcrypt.MinCost)
	provider := `"provider":` + recorderJSON
	account := func(extra string) string {
		return fmt.Sprintf(`"accounts":[{"username":"alice","key_hash":%q,"subdomain":"a1"%s}]`, hash, extra)
	}
	for _, tc := range []struct{ name, fields, want string }{
		{"valid", `"zone":"` + endpointZone + `",` + provider + `,` + account(""), ""},
		{"no zone", provider + `,` + account(""), "acme_dns_server: zone: the alias zone the accounts write in is required"},
		{"no provider", `"zone":"` + endpointZone + `",` + account(""), "acme_dns_server: provider: the DNS provider that writes into " + endpointZone + " is required"},
		{"key not hashed", `"zone":"` + endpointZone + `",` + provider + `,"accounts":[{"username":"alice","key_hash":"plain-key","subdomain":"a1"}]`, "accounts[0]: key_hash of alice: not a bcrypt hash"},
		{"bad allow_from", `"zone":"` + endpointZone + `",` + provider + `,` + account(`,"allow_from":["10.0.0.0/33"]`), `accounts[0].allow_from: "10.0.0.0/33"`},
		{"register from nowhere", `"zone":"` + endpointZone + `",` + provider + `,"register":{}`, "acme_dns_server: register: allow_from: at least one network"},
		{"register from a bad network", `"zone":"` + endpointZone + `",` + provider + `,"register":{"allow_from":["10.0.0.0/40"]}`, `acme_dns_server: register.allow_from: "10.0.0.0/40"`},
		{"public suffix zone", `"zone":"com",` + provider, "acme_dns_server: writer for zone com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c caddy.Config
			if err := json.Unmarshal([]byte(endpointConfig(tc.fields, t.TempDir())), &c); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&c)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "plain-key"):
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

// TestHandlerWrites: through the handler of a running config, an
// account's update is written at its own name by the inner provider and
// journalled; the third value removes the first; a wrong key writes
// nothing; the admin listing finds the endpoint through its zone writer.
func TestHandlerWrites(t *testing.T) {
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("alice-key"), bcrypt.MinCost)
	cfg := endpointConfig(fmt.Sprintf(`"zone":%q,"provider":%s,"authoritative_wait":-1,"accounts":[{"username":"alice","key_hash":%q,"subdomain":"a1"}]`,
		endpointZone, recorderJSON, hash), dir)
	t.Cleanup(func() { caddy.Stop() })
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	listing := runningAccounts()
	if len(listing) != 1 || listing[0].Zone != endpointZone || len(listing[0].Accounts) != 1 || listing[0].Accounts[0].Username != "alice" {
		t.Fatalf("admin listing %+v, want the endpoint of %s with alice", listing, endpointZone)
	}
	h := alias.RunningZoneWriters()[0].Owner().(*Handler)
	takeCalls()
	update := func(key, value string) int {
		r := httptest.NewRequest(http.MethodPost, "/update", strings.NewReader(fmt.Sprintf(`{"subdomain":"a1","txt":%q}`, value)))
		r.Header.Set("X-Api-User", "alice")
		r.Header.Set("X-Api-Key", key)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"}))
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			t.Fatal("/update passed on")
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		return rec.Code
	}
	name := "a1." + endpointZone
	if code := update("wrong", digest("0")); code != http.StatusUnauthorized || len(takeCalls()) != 0 {
		t.Fatalf("wrong key: status %d", code)
	}
	for _, v := range []string{"1", "2", "3"} {
		if code := update("alice-key", digest(v)); code != http.StatusOK {
			t.Fatalf("update %s: status %d", v, code)
		}
	}
	calls := takeCalls()
	if len(calls) != 4 || calls[3].op != "delete" || calls[3].value != digest("1") {
		t.Fatalf("calls %+v, want three appends and the delete of the first value", calls)
	}
	for _, c := range calls {
		if c.zone != endpointZone+"." || c.name != "a1" {
			t.Fatalf("call outside %s: %+v", name, calls)
		}
	}
	entries := journalEntries(t, dir)
	if len(entries) != 2 {
		t.Fatalf("journal: %d entries, want the two values held", len(entries))
	}
	for _, e := range entries {
		if e.Name != name || e.Zone != endpointZone {
			t.Errorf("journal entry %+v", e)
		}
	}
	// Other paths go on to the next handler.
	passed := false
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/index.html", nil),
		caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil }))
	if !passed {
		t.Error("/index.html was not passed on")
	}
}

// journalEntries reads the alias journal's entries from the file storage
// at dir.
func journalEntries(t *testing.T, dir string) []solver.JournalEntry {
	t.Helper()
	s := &certmagic.FileStorage{Path: dir}
	ctx := context.Background()
	keys, err := s.List(ctx, "dns_alias/journal", true)
	if err != nil {
		t.Fatal(err)
	}
	var out []solver.JournalEntry
	for _, k := range keys {
		if info, err := s.Stat(ctx, k); err != nil || !info.IsTerminal {
			continue
		}
		data, err := s.Load(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var e solver.JournalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out = append(out, e)
	}
	return out
}
