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

// maxCachedRegistered bounds the registered accounts kept in memory after
// their first use (each a few hundred bytes: about 2 MiB at most); past
// it, further registered accounts are refused until the next config load.
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
		s.logger.Info("acme-dns registration refused", zap.Stringer("source", src), zap.String("reason", reason))
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
	allow, err := ParseAllowFrom(body.AllowFrom)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_allowfrom_cidr", fmt.Sprintf("allowfrom: %v", err), RefusedValue)
		return
	}
	select {
	case s.verifying <- struct{}{}: // hashing costs what a key check does
		defer func() { <-s.verifying }()
	default:
		refuse(http.StatusServiceUnavailable, "busy", "every key check slot is taken", RefusedRate)
		return
	}
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
	s.logger.Info("acme-dns account registered", zap.String("account", a.Username), zap.String("subdomain", a.Subdomain), zap.Stringer("source", src))
	out := registration{Username: a.Username, Password: key, FullDomain: a.Subdomain + "." + s.zone, Subdomain: a.Subdomain, AllowFrom: []string{}}
	for _, p := range allow {
		out.AllowFrom = append(out.AllowFrom, p.String())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
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

// lookup returns the account of user: configured, or registered (from
// memory, else from the store), or nil. An account's two newest values
// are kept in memory with it, so a registered account, once used, stays.
func (s *Server) lookup(ctx context.Context, user string) (*account, error) {
	if a := s.accounts[user]; a != nil {
		return a, nil
	}
	if s.reg == nil || !registeredName.MatchString(user) {
		return nil, nil
	}
	s.mu.Lock()
	a := s.registered[user]
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	stored, ok, err := s.reg.Store.Load(ctx, user)
	if err != nil || !ok {
		return nil, err
	}
	if err := stored.validate(s.zone); err != nil || stored.Username != user || !registeredName.MatchString(stored.Subdomain) {
		return nil, fmt.Errorf("stored account %s refused: %v", user, err)
	}
	a = s.newAccount(stored, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cached := s.registered[user]; cached != nil {
		return cached, nil // another request was first
	}
	if len(s.registered) >= maxCachedRegistered {
		return nil, fmt.Errorf("more than %d registered accounts in use since the config was loaded", maxCachedRegistered)
	}
	s.registered[user] = a
	return a, nil
}
