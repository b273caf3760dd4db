package acmednsserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRoutes: the server's routes, and their variants redirected to them
// as acme-dns's router redirects them (301 for GET, 307 otherwise, the
// query kept); a path that is no route's variant is not the server's.
func TestRoutes(t *testing.T) {
	s, _, _, _ := testServer(t, Limits{})
	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/health", 200, ""},
		{"HEAD", "/health", 200, ""},
		{"POST", "/health", 405, ""},
		{"GET", "/update", 405, ""},
		{"GET", "/other", 404, ""},
		{"POST", "//update", 307, "/update"},
		{"POST", "/update/", 307, "/update"},
		{"POST", "//update/?x=1", 307, "/update?x=1"},
		{"POST", "/a/../update", 307, "/update"},
		{"POST", "/UPDATE", 307, "/update"},
		{"GET", "//health", 301, "/health"},
		{"GET", "/health/", 301, "/health"},
		{"POST", "//register", 404, ""}, // off in this server
		{"POST", "//present", 404, ""},  // httpreq off
	} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status || w.Header().Get("Location") != tc.location {
			t.Errorf("%s %s: %d to %q, want %d to %q", tc.method, tc.path, w.Code, w.Header().Get("Location"), tc.status, tc.location)
		}
		if handles := tc.status != 404; s.Handles(strings.SplitN(tc.path, "?", 2)[0]) != handles {
			t.Errorf("Handles(%s) = %v, want %v", tc.path, !handles, handles)
		}
	}
}

// TestBaseURLWithTrailingSlash: a client whose base URL ends in a slash
// (https://acme.example.org/, as certbot-dns-acmedns's README writes it)
// posts to //update; it follows the redirect with its body, and the update
// is written.
func TestBaseURLWithTrailingSlash(t *testing.T) {
	s, recs, _, _ := testServer(t, Limits{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	base := srv.URL + "/"
	req, err := http.NewRequest(http.MethodPost, base+"/update", strings.NewReader(body("a1", digest("v"))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-User", "alice")
	req.Header.Set("X-Api-Key", "alice-key")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/update" || len(recs.at("a1."+zone)) != 1 {
		t.Fatalf("POST %s/update: %d at %s, %d values written", base, resp.StatusCode, resp.Request.URL.Path, len(recs.at("a1."+zone)))
	}
}
