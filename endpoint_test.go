package alias

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"golang.org/x/crypto/bcrypt"
)

const endpointZone = "acme.validation.example.org"

func TestACMEDNSServerCaddyfile(t *testing.T) {
	out, err := adapt(t, `example.com {
	respond "not an acme-dns path" 404
	acme_dns_server {
		zone `+endpointZone+`
		`+rfc2136Block+`
		account alice {env.ALICE_KEY_HASH} a1 10.0.0.0/8 192.0.2.1
		account bob {env.BOB_KEY_HASH} b1
		register 10.0.0.0/8
		httpreq
		authoritative_wait 10s
		private_nameservers
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	want := `{"handler":"acme_dns_server","zone":"` + endpointZone + `","provider":` + rfc2136JSON +
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
		if _, err := adapt(t, "example.com {\n\t"+bad+"\n}"); err == nil {
			t.Errorf("%q adapted", bad)
		}
	}
}

func endpointConfig(fields string) string {
	return `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"acme_dns_server",` + fields + `}]}]}}}}}`
}

func TestACMEDNSServerValidate(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("k"), bcrypt.MinCost)
	provider := `"provider":` + rfc2136JSON
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
		{"public suffix zone", `"zone":"com",` + provider, "acme_dns_server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(endpointConfig(tc.fields))
			checkErr(t, err, tc.want)
			if err != nil && strings.Contains(err.Error(), "plain-key") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

// TestACMEDNSServerWrites: through the handler, an account's update is
// written at its own name by the inner provider and journalled; the third
// value removes the first; a wrong key writes nothing.
func TestACMEDNSServerWrites(t *testing.T) {
	ctx, app := standalone(t)
	app.journal = &storageJournal{storage: &certmagic.FileStorage{Path: t.TempDir()}}
	hash, _ := bcrypt.GenerateFromPassword([]byte("alice-key"), bcrypt.MinCost)
	h := &ACMEDNSServer{Zone: endpointZone, ProviderRaw: json.RawMessage(rfc2136JSON), AuthoritativeWait: -1,
		Accounts: []ACMEDNSServerAccount{{Username: "alice", KeyHash: string(hash), Subdomain: "a1"}}}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	w := &sweepWriter{}
	h.writer.writer.Mapper.Default.Writer = w
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
	if code := update("wrong", digest("0")); code != http.StatusUnauthorized || len(w.take()) != 0 {
		t.Fatalf("wrong key: status %d", code)
	}
	for _, v := range []string{"1", "2", "3"} {
		if code := update("alice-key", digest(v)); code != http.StatusOK {
			t.Fatalf("update %s: status %d", v, code)
		}
	}
	calls := w.take()
	var got []string
	for _, c := range calls {
		got = append(got, fmt.Sprintf("%s %s %s", c.op, c.zone, c.rr.Name))
	}
	if len(calls) != 4 || calls[3].op != "delete" || calls[3].rr.Data != digest("1") {
		t.Fatalf("calls %v, want three appends and the delete of the first value", got)
	}
	for _, c := range calls {
		if c.zone != endpointZone+"." || c.rr.Name != "a1" {
			t.Fatalf("call outside %s: %v", name, got)
		}
	}
	entries, err := app.journal.List(context.Background())
	if err != nil || len(entries) != 2 {
		t.Fatalf("journal: %d entries (%v), want the two values held", len(entries), err)
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
