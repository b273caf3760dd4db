package providers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/libdns/libdns"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// secretKeys are parts of JSON field names whose values are credentials in
// the caddy-dns family (rfc2136 "key", cloudflare "api_token", route53
// "secret_access_key" and "session_token", acme-dns "password", ...).
var secretKeys = []string{"secret", "token", "password", "passwd", "api_key", "apikey", "private", "credential"}

func isSecretField(name string) bool {
	n := strings.ToLower(name)
	if n == "key" || strings.HasSuffix(n, "_key") && n != "key_name" {
		return true
	}
	for _, s := range secretKeys {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Secrets returns the values of the credential fields of a module's JSON
// config, as given and with expand applied ({env.*} placeholders resolved),
// so that errors can be scrubbed of them.
func Secrets(raw json.RawMessage, expand func(string) string) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				walk(k, child)
			}
		case []any:
			for _, child := range x {
				walk(key, child)
			}
		case string:
			if !isSecretField(key) {
				return
			}
			for _, s := range []string{x, expand(x)} {
				if len(s) >= 4 {
					out = append(out, s)
				}
			}
		}
	}
	walk("", v)
	return out
}

// Redact returns err with every secret replaced by [REDACTED]. The result no
// longer unwraps: an error that carried a secret is not passed on.
func Redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "[REDACTED]")
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

// RedactingWriter is a writer whose errors never carry its credentials:
// some providers echo a rejected token in their error.
type RedactingWriter struct {
	solver.Writer
	Secrets []string
}

// AppendRecords appends through the wrapped writer.
func (w RedactingWriter) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := w.Writer.AppendRecords(ctx, zone, recs)
	return out, Redact(err, w.Secrets)
}

// DeleteRecords deletes through the wrapped writer.
func (w RedactingWriter) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := w.Writer.DeleteRecords(ctx, zone, recs)
	return out, Redact(err, w.Secrets)
}
