package acmednsserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestOnboardingCheck: the admin API checks a domain against an account's
// fulldomain with the report of `caddy dns-alias check` (the chain, the
// production zone, the record to publish); a CNAME to another account's
// name and no CNAME at all fail with that record; the account is looked
// up among the running endpoints. DNS is the in-process server.
func TestOnboardingCheck(t *testing.T) {
	target := "a1." + endpointZone
	srv := dnstest.Start(t,
		dnstest.Zone{Name: endpointZone},
		dnstest.Zone{Name: "example.com", Records: fmt.Sprintf(`
_acme-challenge.shop CNAME %s.
_acme-challenge.other CNAME b1.%s.
`, target, endpointZone)})
	hash, _ := bcrypt.GenerateFromPassword([]byte("alice-key"), bcrypt.MinCost)
	cfg := endpointConfig(fmt.Sprintf(`"zone":%q,"provider":%s,"resolvers":[%q],"private_nameservers":true,"accounts":[{"username":"alice","key_hash":%q,"subdomain":"a1"}]`,
		endpointZone, recorderJSON, srv.Addr(), hash), t.TempDir())
	t.Cleanup(func() { caddy.Stop() })
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	check := func(query string) (int, []*solver.Report, string) {
		w := httptest.NewRecorder()
		err := AdminAPI{}.handleCheck(w, httptest.NewRequest(http.MethodGet, "/dns-alias/acme-dns/check?"+query, nil))
		if apiErr, ok := err.(caddy.APIError); ok {
			return apiErr.HTTPStatus, nil, apiErr.Err.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		var reps []*solver.Report
		if err := json.Unmarshal(w.Body.Bytes(), &reps); err != nil {
			t.Fatalf("%s: %v", w.Body, err)
		}
		return w.Code, reps, ""
	}
	code, reps, _ := check("account=alice&domain=shop.example.com&domain=other.example.com&domain=missing.example.com")
	if code != 200 || len(reps) != 3 {
		t.Fatalf("status %d, %d reports", code, len(reps))
	}
	for i, tc := range []struct {
		domain  string
		chainOK bool
	}{
		{"shop.example.com", true},
		{"other.example.com", false},
		{"missing.example.com", false},
	} {
		r := reps[i]
		if r.Domain != tc.domain || r.Expected != target || r.Zone != "example.com" && tc.chainOK {
			t.Errorf("report %d: %+v", i, r)
		}
		fix := "_acme-challenge." + tc.domain + ". 300 IN CNAME " + target + "."
		switch {
		case tc.chainOK && (r.Verdict == solver.VerdictBroken || r.Fix != ""):
			t.Errorf("%s, delegated to %s: verdict %s, fix %q, findings %+v", tc.domain, target, r.Verdict, r.Fix, r.Findings)
		case !tc.chainOK && (r.OK || r.Fix != fix):
			t.Errorf("%s: ok %v, fix %q; want it told to publish %q", tc.domain, r.OK, r.Fix, fix)
		}
	}
	for _, tc := range []struct{ query, want string }{
		{"account=mallory&domain=shop.example.com", `no acme_dns_server of the running config has an account "mallory"`},
		{"domain=shop.example.com", "give ?account=<username> and at least one ?domain="},
		{"account=alice&domain=192.0.2.1", "an IP address has no DNS challenge"},
	} {
		if code, _, msg := check(tc.query); code < 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want an error containing %q", tc.query, code, msg, tc.want)
		}
	}
}
