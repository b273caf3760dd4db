package acmednsserver

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func httpReq(s *Server, path, user, key, body string) int {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.1:40000"
	r.SetBasicAuth(user, key)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code
}

func TestHTTPReq(t *testing.T) {
	name := "a1." + zone
	v := digest("v")
	keyAuth := "token.thumbprint"
	sum := sha256.Sum256([]byte(keyAuth))
	raw := base64.RawURLEncoding.EncodeToString(sum[:])
	for _, tc := range []struct {
		name, path, key, body string
		status                int
		want                  []string // values at the account's name after
	}{
		{"present at the fulldomain", "/present", "alice-key", fmt.Sprintf(`{"fqdn":"%s.","value":%q}`, name, v), 200, []string{v}},
		{"present at the challenge name", "/present", "alice-key", fmt.Sprintf(`{"fqdn":"_acme-challenge.example.com.","value":%q}`, v), 200, []string{v}},
		{"raw mode", "/present", "alice-key", fmt.Sprintf(`{"domain":"*.example.com","token":"token","keyAuth":%q}`, keyAuth), 200, []string{raw}},
		{"another name", "/present", "alice-key", fmt.Sprintf(`{"fqdn":"b1.%s.","value":%q}`, zone, v), 401, nil},
		{"wrong key", "/present", "bob-key", fmt.Sprintf(`{"fqdn":"%s.","value":%q}`, name, v), 401, nil},
		{"not a digest", "/present", "alice-key", fmt.Sprintf(`{"fqdn":"%s.","value":"x"}`, name), 400, nil},
		{"cleanup of nothing", "/cleanup", "alice-key", fmt.Sprintf(`{"fqdn":"%s.","value":%q}`, name, v), 200, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, recs, _, _ := testServer(t, Limits{})
			s.httpreq = true
			if got := httpReq(s, tc.path, "alice", tc.key, tc.body); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if got := recs.at(name); !slices.Equal(got, tc.want) {
				t.Fatalf("%s holds %v, want %v", name, got, tc.want)
			}
		})
	}
	t.Run("present then cleanup", func(t *testing.T) {
		s, recs, _, obs := testServer(t, Limits{})
		s.httpreq = true
		body := fmt.Sprintf(`{"fqdn":"%s.","value":%q}`, name, v)
		if httpReq(s, "/present", "alice", "alice-key", body) != 200 || httpReq(s, "/cleanup", "alice", "alice-key", body) != 200 {
			t.Fatal("present or cleanup failed")
		}
		if got := recs.at(name); len(got) != 0 || obs.got["alice/written"] != 1 || obs.got["alice/removed"] != 1 {
			t.Fatalf("%s holds %v; outcomes %v", name, got, obs.got)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		s, _, _, _ := testServer(t, Limits{})
		if got := httpReq(s, "/present", "alice", "alice-key", "{}"); got != http.StatusNotFound {
			t.Fatalf("status %d", got)
		}
	})
}
