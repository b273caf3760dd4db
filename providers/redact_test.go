package providers

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"strings"
	"testing"

	"github.com/libdns/libdns"
)

func TestSecrets(t *testing.T) {
	expand := func(s string) string { return strings.ReplaceAll(s, "{env.CF}", "cf-token-value") }
	tests := []struct {
		raw  string
		want []string
	}{
		{`{"name":"rfc2136","key_name":"caddy-key","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.2:53"}`, []string{"c2VjcmV0"}},
		{`{"name":"cloudflare","api_token":"{env.CF}"}`, []string{"{env.CF}", "cf-token-value"}},
		{`{"name":"route53","access_key_id":"AKIA","secret_access_key":"s3cr3t","session_token":"tok-tok","region":"us-east-1"}`, []string{"s3cr3t", "tok-tok"}},
		{`{"name":"x","nested":{"password":"hunter22"}}`, []string{"hunter22"}},
	}
	for _, tt := range tests {
		got := Secrets([]byte(tt.raw), expand)
		for _, w := range tt.want {
			if !contains(got, w) {
				t.Errorf("Secrets(%s) = %v, missing %q", tt.raw, got, w)
			}
		}
		for _, g := range got {
			if g == "caddy-key" || g == "127.0.0.2:53" || g == "us-east-1" || g == "hmac-sha256" {
				t.Errorf("Secrets(%s) treats %q as a secret", tt.raw, g)
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type failingWriter struct{ err error }

func (w failingWriter) AppendRecords(context.Context, string, []libdns.Record) ([]libdns.Record, error) {
	return nil, w.err
}

func (w failingWriter) DeleteRecords(context.Context, string, []libdns.Record) ([]libdns.Record, error) {
	return nil, w.err
}

func TestRedactingWriter(t *testing.T) {
	w := RedactingWriter{Writer: failingWriter{errors.New(`invalid token "cf-token-value" for zone validation.example.org`)}, Secrets: []string{"cf-token-value"}}
	_, err := w.AppendRecords(context.Background(), "validation.example.org.", nil)
	if err == nil || strings.Contains(err.Error(), "cf-token-value") || !strings.Contains(err.Error(), "validation.example.org") {
		t.Errorf("AppendRecords error = %v, want it without the token and with the zone", err)
	}
	_, err = w.DeleteRecords(context.Background(), "validation.example.org.", nil)
	if err == nil || strings.Contains(err.Error(), "cf-token-value") {
		t.Errorf("DeleteRecords error = %v", err)
	}
	plain := errors.New("connection refused")
	if got := Redact(plain, []string{"cf-token-value"}); got != plain {
		t.Error("an error without secrets was rewritten")
	}
}

// TestRedactSpellings: a secret is redacted as it is, quoted (%q, JSON) and
// URL-escaped, as inner providers' errors carry it (a request URL with the
// token in its query, a JSON body echoed back).
func TestRedactSpellings(t *testing.T) {
	const secret = `tok/en+va"lue\ with=space&é`
	for name, msg := range map[string]string{
		"raw":         "rejected " + secret + " for zone x",
		"%q":          fmt.Sprintf("rejected %q for zone x", secret),
		"%+q":         fmt.Sprintf("rejected %+q for zone x", secret),
		"JSON":        `{"error":"rejected","token":` + string(must(json.Marshal(secret))) + `}`,
		"query":       "GET https://api.example/zones?token=" + url.QueryEscape(secret) + ": 403",
		"path":        "GET https://api.example/" + url.PathEscape(secret) + "/zones: 403",
		"%q of query": fmt.Sprintf("Get %q: EOF", "https://api.example/?t="+url.QueryEscape(secret)),
	} {
		got := Redact(errors.New(msg), []string{secret}).Error()
		for _, spelling := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), "en+va", `va\"lue`, "en%2Bva"} {
			if strings.Contains(got, spelling) {
				t.Errorf("%s: Redact(%q) = %q, still shows %q", name, msg, got, spelling)
			}
		}
		if !strings.Contains(got, "[REDACTED]") || !strings.Contains(got, "rejected") && !strings.Contains(got, "api.example") {
			t.Errorf("%s: Redact(%q) = %q", name, msg, got)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRedactByValue: what a config holds as a credential is scrubbed by its
// value, whatever the field's spelling (authKey, auth, pass), a number as
// well as a string, any value a placeholder resolved to, and in the
// encodings and letter cases an echo may carry it in.
func TestRedactByValue(t *testing.T) {
	const token = "Tok3n-Value_xyz"
	expand := func(s string) string {
		return strings.NewReplacer("{env.TOKEN}", token, "{env.ENDPOINT}", "https://user:pw-from-env@api.example").Replace(s)
	}
	raw := `{"name":"x","authKey":"auth-key-value","auth":"plain-auth-value","pass":987654,"zone_id":"zone-1234","password":"p&ss<w>rd",` +
		`"api":{"credentials":["{env.TOKEN}"]},"endpoint":"{env.ENDPOINT}","region":"eu-west-1"}`
	secrets := Secrets([]byte(raw), expand)
	for _, want := range []string{"auth-key-value", "plain-auth-value", "987654", token, "https://user:pw-from-env@api.example"} {
		if !contains(secrets, want) {
			t.Errorf("Secrets = %v, missing %q", secrets, want)
		}
	}
	for _, not := range []string{"zone-1234", "eu-west-1", "x"} {
		if contains(secrets, not) {
			t.Errorf("Secrets = %v treats %q as a secret", secrets, not)
		}
	}
	for name, echo := range map[string]string{
		"upper case":       strings.ToUpper(token),
		"lower case":       strings.ToLower(token),
		"HTML":             html.EscapeString("p&ss<w>rd"),
		"base64":           base64.StdEncoding.EncodeToString([]byte(token)),
		"base64url":        base64.RawURLEncoding.EncodeToString([]byte(token)),
		"hex":              hex.EncodeToString([]byte(token)),
		"number":           "pass 987654 refused",
		"field auth":       "auth plain-auth-value refused",
		"field authKey":    "key AUTH-KEY-VALUE refused",
		"quoted upper hex": fmt.Sprintf("%q", strings.ToUpper(hex.EncodeToString([]byte(token)))),
	} {
		msg := "provider said: " + echo + " for zone validation.example.org"
		got := RedactString(msg, secrets)
		if !strings.Contains(got, "[REDACTED]") || !strings.Contains(got, "validation.example.org") {
			t.Errorf("%s: RedactString(%q) = %q", name, msg, got)
		}
		if strings.Contains(strings.ToLower(got), strings.ToLower(token)) || strings.Contains(got, "987654") || strings.Contains(got, "ss&lt;w") {
			t.Errorf("%s: %q still shows the secret", name, got)
		}
	}
}
