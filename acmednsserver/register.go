package acmednsserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// AccountStore keeps registered accounts where every instance of a cluster
// finds them (Caddy's storage).
type AccountStore interface {
	// Load returns the account registered as username; ok is false if
	// there is none.
	Load(ctx context.Context, username string) (a Account, ok bool, err error)
	// Save stores a new account.
	Save(ctx context.Context, a Account) error
}

// Register configures POST /register; nil (the default) leaves it off.
type Register struct {
	// AllowFrom are the networks registrations may come from; at least
	// one: an open registration would let anyone take names in the zone.
	AllowFrom []netip.Prefix
	Store     AccountStore
	// Cost is the bcrypt cost of new accounts' key hashes; default
	// bcrypt.DefaultCost.
	Cost int
}

func (r *Register) cost() int {
	if r.Cost == 0 {
		return bcrypt.DefaultCost
	}
	return r.Cost
}

// maxCachedRegistered bounds the registered accounts kept in memory (each
// a few hundred bytes: about 2 MiB at most). Only an account whose key
// checked out is kept; past the bound, the one used least recently gives
// way (and is read from the store again when it is next used).
const maxCachedRegistered = 10_000

// registeredLabel is the metrics label of every registered account: their
// number is not bounded by the config, so they share one series per
// outcome.
const registeredLabel = "registered"

// registeredName matches the user names and subdomains registration makes
// (a UUID's shape, as acme-dns's): the store is asked only about those.
var registeredName = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// registration is /register's answer, as acme-dns gives it.
type registration struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	FullDomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

// register makes a new account with a random user name, key and
// subdomain, restricted to the request's allowfrom networks if it gives
// any, and stores it.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	src, err := s.clientIP(r)
	refuse := func(status int, code, reason string, o Outcome) {
		s.observe(registeredLabel, o)
		s.refusals.Write(zap.InfoLevel, reason+" "+src.String(), "acme-dns registration refused", zap.Stringer("source", src), zap.String("reason", reason))
		reply(w, status, code)
	}
	switch {
	case err != nil:
		refuse(http.StatusBadRequest, "bad_source", fmt.Sprintf("no source address: %v", err), RefusedAuth)
		return
	case !s.sources.allow(src):
		refuse(http.StatusTooManyRequests, "too_many_requests", "over the source's rate", RefusedRate)
		return
	case !Account{AllowFrom: s.reg.AllowFrom}.allowed(src):
		refuse(http.StatusForbidden, "forbidden", "source not in register's allow_from", RefusedAuth)
		return
	}
	var body struct {
		AllowFrom []string `json:"allowfrom"`
	}
	// An empty body is acme-dns's plain registration.
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		refuse(http.StatusBadRequest, "malformed_json_payload", fmt.Sprintf("body: %v", err), RefusedValue)
		return
	}
	allow, echo, err := registerAllowFrom(body.AllowFrom)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_allowfrom_cidr", fmt.Sprintf("allowfrom: %v", err), RefusedValue)
		return
	}
	release, ok := s.auth.checks.acquire(r.Context(), src, false) // hashing costs what a key check does
	if !ok {
		refuse(http.StatusServiceUnavailable, "busy", "no key check slot free in time", RefusedRate)
		return
	}
	defer release()
	key := randomKey()
	hash, err := bcrypt.GenerateFromPassword([]byte(key), s.reg.cost())
	if err != nil {
		refuse(http.StatusInternalServerError, "register_failed", err.Error(), Failed)
		return
	}
	a := Account{Username: randomUUID(), KeyHash: string(hash), Subdomain: randomUUID(), AllowFrom: allow}
	if err := s.reg.Store.Save(r.Context(), a); err != nil {
		refuse(http.StatusInternalServerError, "register_failed", fmt.Sprintf("storing the account: %v", err), Failed)
		return
	}
	s.observe(registeredLabel, Registered)
	// The one record every domain that uses the account must publish;
	// `caddy acme-dns check --account <username> <domain>` checks it.
	s.logger.Info("acme-dns account registered", zap.String("account", a.Username), zap.String("subdomain", a.Subdomain), zap.Stringer("source", src),
		zap.String("publish", "_acme-challenge.<domain> CNAME "+a.Subdomain+"."+s.zone+"."))
	out := registration{Username: a.Username, Password: key, FullDomain: a.Subdomain + "." + s.zone, Subdomain: a.Subdomain, AllowFrom: echo}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
}

// registerAllowFrom reads /register's allowfrom as acme-dns does: each
// entry a network in CIDR notation (brackets around an IPv6 address
// dropped), a bare address refused; the entries are echoed as sent, not
// normalised.
func registerAllowFrom(entries []string) ([]netip.Prefix, []string, error) {
	allow, echo := make([]netip.Prefix, 0, len(entries)), make([]string, 0, len(entries))
	for _, e := range entries {
		e = strings.NewReplacer("[", "", "]", "").Replace(e)
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, nil, fmt.Errorf("%q is not a network in CIDR notation (a single address is written /32 or /128)", e)
		}
		allow, echo = append(allow, p.Masked()), append(echo, e)
	}
	return allow, echo, nil
}

// randomKey is a new account's key: 40 characters of base64url, as
// acme-dns's.
func randomKey() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, 40)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b)
}

// inMemory returns the account of user if it is configured or a
// registered one kept in memory, or nil.
func (s *Server) inMemory(user string) *account {
	if a := s.accounts[user]; a != nil {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, _ := s.registered.get(user)
	return a
}

// lookup returns the account of user: configured, or registered (from
// memory, else from the store), or nil. A registered account read from the
// store is kept in memory only once its key checks out (remember).
func (s *Server) lookup(ctx context.Context, user string) (*account, error) {
	if a := s.inMemory(user); a != nil {
		return a, nil
	}
	if s.reg == nil || !registeredName.MatchString(user) {
		return nil, nil
	}
	stored, ok, err := s.reg.Store.Load(ctx, user)
	if err != nil || !ok {
		return nil, err
	}
	if err := stored.validate(s.zone); err != nil || stored.Username != user || !registeredName.MatchString(stored.Subdomain) {
		return nil, fmt.Errorf("stored account %s refused: %v", user, err)
	}
	return s.newAccount(stored, true), nil
}

// remember keeps a registered account whose key checked out in memory, with
// the two newest values it will hold, and returns the one kept (another
// request's, if that was first).
func (s *Server) remember(a *account) *account {
	if a.label != registeredLabel {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept, ok := s.registered.get(a.Username); ok {
		return kept
	}
	s.registered.add(a.Username, a)
	return a
}
