package acmednsserver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// httpReq serves lego's httpreq API: POST /present and /cleanup with the
// account's user name and key as basic auth, and either {"fqdn", "value"}
// or, in lego's raw mode, {"domain", "token", "keyAuth"}. lego sends the
// name at the end of the CNAME chain (the account's fulldomain) unless its
// CNAME following is off, when it sends _acme-challenge.<domain>: both
// name the account's one name, where the value is written; any other name
// is refused.
func (s *Server) httpReq(w http.ResponseWriter, r *http.Request, op string) {
	user, key, _ := r.BasicAuth()
	do := func(r *http.Request, a *account) (string, *refusal) {
		value, ref := httpReqValue(r, a)
		if ref != nil {
			return "", ref
		}
		if op == "present" {
			return s.values.put(r.Context(), a, value)
		}
		return value, s.drop(r, a, value)
	}
	s.serve(w, r, op, user, key, do, func(w http.ResponseWriter, _ string) { w.WriteHeader(http.StatusOK) })
}

// httpReqValue reads the value of an httpreq body and checks its name.
func httpReqValue(r *http.Request, a *account) (string, *refusal) {
	var body struct {
		FQDN    string `json:"fqdn"`
		Value   string `json:"value"`
		Domain  string `json:"domain"`
		KeyAuth string `json:"keyAuth"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody)).Decode(&body); err != nil {
		return "", &refusal{http.StatusBadRequest, "malformed_json_payload", RefusedValue, fmt.Sprintf("body: %v", err)}
	}
	if body.KeyAuth != "" {
		// Raw mode: the digest is the client's to compute, RFC 8555 8.4.
		sum := sha256.Sum256([]byte(body.KeyAuth))
		body.FQDN, body.Value = "_acme-challenge."+strings.TrimPrefix(body.Domain, "*."), base64.RawURLEncoding.EncodeToString(sum[:])
	}
	name := solver.Normalize(body.FQDN)
	if name != a.name && !strings.HasPrefix(name, "_acme-challenge.") {
		return "", &refusal{http.StatusUnauthorized, "forbidden", RefusedAuth, fmt.Sprintf("fqdn %q is neither the account's %s nor an _acme-challenge name", body.FQDN, a.name)}
	}
	return body.Value, nil
}

// drop removes value from the account's values and its name, if the
// account holds it: a cleanup of a value already pushed out by newer ones,
// or never written, has nothing to do.
func (s *Server) drop(r *http.Request, a *account, value string) *refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	s.values.load(r.Context(), a)
	i := slices.IndexFunc(a.values, func(v heldValue) bool { return v.value == value })
	if i < 0 {
		return nil
	}
	if err := s.records.Remove(r.Context(), a.name, value); err != nil {
		return &refusal{http.StatusInternalServerError, "remove_failed", Failed, err.Error()}
	}
	a.values = slices.Delete(a.values, i, i+1)
	return nil
}
