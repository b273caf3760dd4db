package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
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
	var out []string
	secretFields(raw, func(_, v string) {
		for _, s := range []string{v, expand(v)} {
			if len(s) >= 4 {
				out = append(out, s)
			}
		}
	})
	return out
}

// EmptySecret returns an error naming the first credential field of a
// module's JSON config whose placeholders expand to nothing: a
// `key {env.TSIG_SECRET}` with the variable unset, which the inner module
// would accept and which would fail only at the first certificate.
func EmptySecret(raw json.RawMessage, expand func(string) string) error {
	var err error
	secretFields(raw, func(path, v string) {
		if err == nil && strings.Contains(v, "{") && strings.TrimSpace(expand(v)) == "" {
			err = fmt.Errorf("%s: %s is empty (an environment variable unset or empty?); the inner provider cannot authenticate without it", path, v)
		}
	})
	return err
}

// secretFields calls fn with the dotted path and the value of every string
// in a credential field of a module's JSON config, in a stable order.
func secretFields(raw json.RawMessage, fn func(path, value string)) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return
	}
	var walk func(path, key string, v any)
	walk = func(path, key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(strings.TrimPrefix(path+"."+k, "."), k, x[k])
			}
		case []any:
			for i, child := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), key, child)
			}
		case string:
			if isSecretField(key) {
				fn(path, x)
			}
		}
	}
	walk("", "", v)
}

// Redact returns err with every secret replaced by [REDACTED], in each of
// the spellings an error message may carry it in: as it is, quoted (Go's
// %q, JSON) and URL-escaped (query and path). The result no longer unwraps:
// an error that carried a secret is not passed on.
func Redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := RedactString(msg, secrets)
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

// RedactString is Redact for a message. Redact before cutting a message
// short: a cut secret no longer matches.
func RedactString(msg string, secrets []string) string {
	var spellings []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		q, _ := json.Marshal(s)
		spellings = append(spellings, s, strings.Trim(strconv.Quote(s), `"`), strings.Trim(strconv.QuoteToASCII(s), `"`),
			strings.Trim(string(q), `"`), url.QueryEscape(s), url.PathEscape(s))
	}
	// Longest first: a spelling may contain a shorter one.
	sort.SliceStable(spellings, func(i, j int) bool { return len(spellings[i]) > len(spellings[j]) })
	for _, s := range spellings {
		msg = strings.ReplaceAll(msg, s, "[REDACTED]")
	}
	return msg
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
