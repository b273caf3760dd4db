package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libdns/libdns"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// ACMEDNSAccount is an account on an acme-dns server, as its /register
// endpoint returns it. The challenge TXT record of every domain that uses the
// account lives at FullDomain, which the domain's _acme-challenge CNAME must
// point at.
type ACMEDNSAccount struct {
	// The server's API base URL, e.g. "https://auth.acme-dns.io".
	Server string `json:"server,omitempty"`
	// The account's credentials (X-Api-User, X-Api-Key).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// The account's subdomain (a UUID) and the full name the server serves
	// its TXT records at: <subdomain>.<the server's domain>.
	Subdomain  string `json:"subdomain,omitempty"`
	FullDomain string `json:"fulldomain,omitempty"`
}

// Validate checks that every field is set and that Server is an http(s) URL.
// Errors start with the offending field's name and never contain the
// password.
func (a ACMEDNSAccount) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"server", a.Server}, {"username", a.Username}, {"password", a.Password},
		{"subdomain", a.Subdomain}, {"fulldomain", a.FullDomain},
	} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%s: missing (every field of an acme-dns account is needed: server, username, password, subdomain, fulldomain)", f.name)
		}
	}
	u, err := url.Parse(a.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server: %q is not an http:// or https:// URL", redactURL(a.Server))
	}
	if u.User != nil {
		return fmt.Errorf("server: %q carries credentials; give them as username and password", redactURL(a.Server))
	}
	if err := solver.ValidName(a.FullDomain); err != nil {
		return fmt.Errorf("fulldomain: %w", err)
	}
	first, _, _ := strings.Cut(solver.Normalize(a.FullDomain), ".")
	if first != strings.ToLower(strings.TrimSpace(a.Subdomain)) {
		return fmt.Errorf("fulldomain: %q does not start with the subdomain %q (acme-dns serves <subdomain>.<its domain>)",
			solver.Normalize(a.FullDomain), a.Subdomain)
	}
	return nil
}

// isLoopback reports whether host (of a URL, without port) is a loopback
// address or localhost.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return strings.EqualFold(host, "localhost")
}

// redactURL strips any userinfo from a URL-ish string for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return s
}

// ACMEDNSName is the writer's short name in messages.
const ACMEDNSName = "acme_dns"

// ACMEDNSValueLen is the length acme-dns demands of a TXT value: that of an
// ACME DNS-01 key authorization digest (unpadded base64url SHA-256).
const ACMEDNSValueLen = 43

// ACMEDNSWriter writes ACME challenge TXT records through an acme-dns
// account's /update API. It implements solver.Writer.
//
// acme-dns serves the two newest values of an account and cannot delete, so
// DeleteRecords sends nothing. A new value evicts the older of the two the
// server holds; the writer therefore lets a value be written only once the
// value it evicts is no longer needed (its DeleteRecords came), so that at
// most two challenges per account are in flight and none loses its value
// to a third. The bookkeeping is shared by every writer of the same account
// (server and subdomain) in the process.
type ACMEDNSWriter struct {
	account ACMEDNSAccount
	update  string // the /update URL
	full    string // normalized FullDomain
	state   *acmeDNSState
	// stateKey names state in acmeDNSStates; closed is set once Close
	// gave it back.
	stateKey string
	closed   atomic.Bool
	client   *http.Client
	logger   *zap.Logger
}

// NewACMEDNSWriter validates account and returns its writer. client may be
// nil (an HTTP client with a 30 s timeout is used), logger too.
func NewACMEDNSWriter(account ACMEDNSAccount, client *http.Client, logger *zap.Logger) (*ACMEDNSWriter, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	// Go's client sends the request's headers, X-Api-Key among them, on
	// to wherever a redirect points: a redirect is answered as an error.
	noRedirects := *client
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &noRedirects
	if logger == nil {
		logger = zap.NewNop()
	}
	base := strings.TrimRight(strings.TrimSpace(account.Server), "/")
	if u, _ := url.Parse(base); u.Scheme == "http" && !isLoopback(u.Hostname()) {
		// Legitimate on a private network, so not refused; but the key
		// crosses it readable.
		logger.Warn("acme-dns server is plain http:// on a non-loopback address: the account's password crosses the network unencrypted; use https://",
			zap.String("fulldomain", solver.Normalize(account.FullDomain)), zap.String("server", redactURL(base)))
	}
	return &ACMEDNSWriter{
		account:  account,
		update:   base + "/update",
		full:     solver.Normalize(account.FullDomain),
		state:    acmeDNSAccountState(acmeDNSKey(base, account.Subdomain)),
		stateKey: acmeDNSKey(base, account.Subdomain),
		client:   client,
		logger:   logger,
	}, nil
}

// FullDomain returns the account's fulldomain, normalized.
func (w *ACMEDNSWriter) FullDomain() string { return w.full }

// AppendRecords writes each TXT value through /update. Every record must be a
// TXT record at exactly the account's fulldomain with a 43-character value;
// otherwise nothing is sent. A value waits (as long as ctx allows) until
// writing it cannot evict a value still in use.
func (w *ACMEDNSWriter) AppendRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	for _, rec := range records {
		if err := w.check(zone, rec.RR()); err != nil {
			return nil, err
		}
	}
	var held []*acmeDNSSlot
	for _, rec := range records {
		slot, err := w.write(ctx, rec.RR().Data)
		if err != nil {
			// The caller gets no record to delete: give back what this
			// call holds.
			for _, s := range held {
				w.state.release(s)
			}
			return nil, err
		}
		held = append(held, slot)
	}
	return records, nil
}

func (w *ACMEDNSWriter) check(zone string, rr libdns.RR) error {
	name := solver.Normalize(libdns.AbsoluteName(rr.Name, zone))
	if rr.Type != "TXT" {
		return fmt.Errorf("acme-dns account %s at %s can only serve TXT records, not %s %s; nothing was sent",
			w.full, redactURL(w.account.Server), rr.Type, name)
	}
	if name != w.full {
		return fmt.Errorf("TXT %s is not the acme-dns account's fulldomain %s (server %s); nothing was sent",
			name, w.full, redactURL(w.account.Server))
	}
	if n := utf8.RuneCountInString(rr.Data); n != ACMEDNSValueLen {
		return fmt.Errorf("TXT value for %s is %d characters long; acme-dns (%s) accepts only %d-character values (ACME DNS-01 digests); nothing was sent",
			w.full, n, redactURL(w.account.Server), ACMEDNSValueLen)
	}
	if !base64URL(rr.Data) {
		return fmt.Errorf("TXT value for %s has characters outside A-Z a-z 0-9 - _; acme-dns (%s) refuses it; nothing was sent",
			w.full, redactURL(w.account.Server))
	}
	return nil
}

// base64URL reports whether v is made of the unpadded base64url alphabet only,
// as acme-dns demands of TXT values.
func base64URL(v string) bool {
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// write waits for its turn and a free slot, then sends value.
func (w *ACMEDNSWriter) write(ctx context.Context, value string) (*acmeDNSSlot, error) {
	st := w.state
	if err := st.lock(ctx); err != nil {
		return nil, w.waitErr(err)
	}
	defer st.unlock()
	if busy, n := st.busy(); busy {
		w.logger.Debug("acme-dns account busy: waiting until the challenge of the older value it serves is over",
			zap.String("fulldomain", w.full), zap.Int("in_flight", n))
	}
	stale, err := st.waitEvictable(ctx)
	if err != nil {
		return nil, w.waitErr(err)
	}
	if stale {
		w.logger.Warn("an acme-dns value was in use longer than a challenge can take without its delete; writing over it",
			zap.String("fulldomain", w.full), zap.Duration("after", st.slotTTL))
	}
	// acme-dns orders values by a timestamp in whole seconds: two updates in
	// one second would make "the older one" ambiguous to the server.
	if err := st.waitNextSecond(ctx); err != nil {
		return nil, w.waitErr(err)
	}
	err = w.post(ctx, value)
	// Sent or not, the update may have reached the server: it takes the
	// newest place either way. A failed one is not in use.
	slot, n := st.push(value, err == nil)
	if err != nil {
		return nil, err
	}
	w.logger.Debug("acme-dns update sent",
		zap.String("fulldomain", w.full),
		zap.String("server", redactURL(w.account.Server)),
		zap.Int("in_flight", n))
	return slot, nil
}

func (w *ACMEDNSWriter) waitErr(err error) error {
	return fmt.Errorf("waiting for a free value of acme-dns account %s at %s (it serves two values; two challenges are in flight): %w",
		w.full, redactURL(w.account.Server), err)
}

func (w *ACMEDNSWriter) post(ctx context.Context, value string) error {
	body, err := json.Marshal(struct {
		Subdomain string `json:"subdomain"`
		TXT       string `json:"txt"`
	}{w.account.Subdomain, value})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.update, bytes.NewReader(body))
	if err != nil {
		return w.redact(fmt.Errorf("acme-dns update of %s at %s: %w", w.full, redactURL(w.account.Server), err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-User", w.account.Username)
	req.Header.Set("X-Api-Key", w.account.Password)
	resp, err := w.client.Do(req)
	if err != nil {
		return w.redact(fmt.Errorf("acme-dns update of %s at %s: %w", w.full, redactURL(w.account.Server), err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	msg := fmt.Sprintf("acme-dns update of %s at %s: HTTP status %s", w.full, redactURL(w.account.Server), solver.Printable(resp.Status))
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return w.redact(fmt.Errorf("%s, a redirect to %s, not followed so that the account's key goes nowhere else; set server to the URL the acme-dns API answers at",
			msg, solver.Printable(redactURL(resp.Header.Get("Location")))))
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		// Redacted before it is cut short and quoted, either of which
		// would hide the password from redaction.
		e.Error = w.redactString(e.Error)
		if len(e.Error) > 100 {
			e.Error = strings.ToValidUTF8(e.Error[:100], "") + "..."
		}
		msg += fmt.Sprintf(" (%q)", e.Error)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		msg += "; check the account's username and password, and that this host's address is in its allowfrom list"
	case http.StatusBadRequest:
		msg += "; the server refused the subdomain or the TXT value"
	}
	return w.redact(errors.New(msg))
}

// redact removes the password from err's text, should anything (a proxy's
// error page, a transport error) have echoed it.
func (w *ACMEDNSWriter) redact(err error) error {
	return Redact(err, []string{w.account.Password})
}

func (w *ACMEDNSWriter) redactString(msg string) string {
	return RedactString(msg, []string{w.account.Password})
}

// DeleteRecords deletes nothing: acme-dns has no delete, and its older value
// is replaced by the next update. It frees the account's slot of each value
// AppendRecords wrote (once per write; a value it did not write frees
// nothing) and returns the records.
func (w *ACMEDNSWriter) DeleteRecords(_ context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	for _, rec := range records {
		rr := rec.RR()
		freed := w.state.releaseValue(rr.Data)
		w.logger.Debug("acme-dns has no delete; the value stays until two newer ones replace it",
			zap.String("name", solver.Normalize(libdns.AbsoluteName(rr.Name, zone))),
			zap.String("fulldomain", w.full),
			zap.Bool("slot_freed", freed))
	}
	return records, nil
}

var _ solver.Writer = (*ACMEDNSWriter)(nil)
