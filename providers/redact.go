package providers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/libdns/libdns"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// secretKeys are parts of JSON field names (lower case, without '_' and
// '-') whose values are credentials in the caddy-dns family (rfc2136 "key",
// cloudflare "api_token", route53 "secret_access_key" and "session_token",
// acme-dns "password", others' "authKey", "auth", "pass").
var secretKeys = []string{"secret", "token", "pass", "private", "credential"}

func isSecretField(name string) bool {
	n := strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(name))
	if strings.HasSuffix(n, "key") || n == "auth" {
		return true
	}
	for _, s := range secretKeys {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Secrets returns what a module's JSON config holds that may be a
// credential, so that errors can be scrubbed of it by value: the value of
// every credential field (numbers too), as given and expanded, and every
// value a placeholder ({env.*}, {file.*}) resolved to, whatever its field:
// that is where operators keep credentials.
func Secrets(raw json.RawMessage, expand func(string) string) []string {
	var out []string
	add := func(s string) {
		if len(s) >= minSecretLen {
			out = append(out, s)
		}
	}
	walkFields(raw, func(path, key, v string) {
		if isSecretField(key) {
			add(v)
			add(expand(v))
		} else if x := expand(v); x != v {
			add(x)
		}
	})
	return out
}

// minSecretLen is the shortest value redacted: shorter ones ("53", "on")
// would scrub ordinary words and numbers out of every message.
const minSecretLen = 4

// EmptySecret returns an error naming the first credential field of a
// module's JSON config whose placeholders expand to nothing: a
// `key {env.TSIG_SECRET}` with the variable unset, which the inner module
// would accept and which would fail only at the first certificate.
func EmptySecret(raw json.RawMessage, expand func(string) string) error {
	var err error
	walkFields(raw, func(path, key, v string) {
		if err == nil && isSecretField(key) && strings.Contains(v, "{") && strings.TrimSpace(expand(v)) == "" {
			err = fmt.Errorf("%s: %s is empty (an environment variable unset or empty?); the inner provider cannot authenticate without it", path, v)
		}
	})
	return err
}

// walkFields calls fn with the dotted path, the field name and the value of
// every string and number of a module's JSON config, in a stable order.
func walkFields(raw json.RawMessage, fn func(path, key, value string)) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
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
			fn(path, key, x)
		case json.Number:
			fn(path, key, x.String())
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
// short: a cut secret no longer matches. Each secret is matched in the
// spellings a message may carry it in, in any letter case: as it is,
// quoted (Go's %q, JSON), URL-escaped (query and path), HTML-escaped,
// base64 (standard and URL alphabets, padded or not) and hex.
func RedactString(msg string, secrets []string) string {
	var spellings []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		q, _ := json.Marshal(s)
		b := []byte(s)
		spellings = append(spellings, s, strings.Trim(strconv.Quote(s), `"`), strings.Trim(strconv.QuoteToASCII(s), `"`),
			strings.Trim(string(q), `"`), url.QueryEscape(s), url.PathEscape(s), html.EscapeString(s),
			base64.StdEncoding.EncodeToString(b), base64.URLEncoding.EncodeToString(b),
			base64.RawStdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(b))
	}
	if len(spellings) == 0 {
		return msg
	}
	// Longest first: a spelling may contain a shorter one, and the
	// alternation takes the first that matches.
	slices.SortStableFunc(spellings, func(a, b string) int { return len(b) - len(a) })
	for i, s := range spellings {
		spellings[i] = regexp.QuoteMeta(s)
	}
	return regexp.MustCompile("(?i)"+strings.Join(spellings, "|")).ReplaceAllLiteralString(msg, "[REDACTED]")
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
