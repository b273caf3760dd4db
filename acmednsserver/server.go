package acmednsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// Records is the server's one way to DNS: confined, journalled writes and
// deletes of TXT values at a name of the alias zone (the alias provider's
// zone writer, adapted in the Caddy handler module). The values it holds
// outlive the process: they stay in DNS and in the journal until Remove,
// or until nobody renews them (Keep) within their lease.
type Records interface {
	// Present writes value at name, leased for lease, and waits, as long
	// as ctx allows, until every authoritative server of the zone serves
	// it; served says whether they all did. No error: the value is
	// written.
	Present(ctx context.Context, name, value string, lease time.Duration) (served bool, err error)
	// Remove deletes value at name, record and journal entry.
	Remove(ctx context.Context, name, value string) error
	// Held lists the values held at the zone's names, whoever wrote them
	// (this process, the one before it, another instance on the same
	// storage).
	Held(ctx context.Context) ([]Held, error)
	// Keep renews a held value's lease from now.
	Keep(ctx context.Context, h Held, lease time.Duration) error
}

// Held is a value held at a name: when it was written, and when its lease
// was last renewed.
type Held struct {
	Name, Value   string
	Written, Seen time.Time
}

// Outcome is what became of an update, for metrics.
type Outcome string

const (
	Written      Outcome = "written"
	RefusedAuth  Outcome = "refused_auth"  // unknown user, wrong key, subdomain or source
	RefusedValue Outcome = "refused_value" // not a DNS-01 digest, malformed request
	RefusedRate  Outcome = "refused_rate"  // over the account's or the source's rate or failed key checks, or no key check slot in time
	Failed       Outcome = "failed"        // the write failed
	Registered   Outcome = "registered"    // a new account (POST /register)
	Removed      Outcome = "removed"       // a value removed (httpreq's /cleanup)
)

// Observer is told of every update and registration, for metrics. account
// is a configured user name, "registered" for every registered account, or
// "" for a request that named none: series stay bounded by the accounts
// configured, whatever clients send.
type Observer interface {
	Updated(account string, o Outcome)
}

// Config configures a Server.
type Config struct {
	// Zone is the alias zone; account subdomain s writes at s.Zone.
	Zone     string
	Accounts []Account
	Records  Records
	Logger   *zap.Logger
	Observer Observer
	// ClientIP returns the request's source address; default: the
	// address of RemoteAddr.
	ClientIP func(*http.Request) (netip.Addr, error)
	Limits   Limits
	// Register, if set, turns POST /register on.
	Register *Register
	// HTTPReq turns lego's httpreq API on (POST /present and /cleanup
	// with basic auth), for clients that clean up after themselves.
	HTTPReq bool
	// Values are the rules of the values an account holds: how long each
	// stays, how many at most, and how long an update may take.
	Values ValueRules
}

// Server serves the acme-dns API for the configured accounts and, with
// Register, the registered ones.
type Server struct {
	zone     string
	accounts map[string]*account // by user name
	records  Records
	logger   *zap.Logger
	observer Observer
	clientIP func(*http.Request) (netip.Addr, error)
	sources  *sourceLimits
	reg      *Register
	httpreq  bool
	limits   Limits
	values   valueKeeper
	routes   routes
	auth     *keyAuth
	refusals *refusallog.Log
	// registered holds the registered accounts whose key checked out
	// since the config was loaded, the least recently used giving way
	// past maxCachedRegistered.
	mu         sync.Mutex
	registered *lru[string, *account]
	// tending holds a token for the Tend round under way.
	tending chan struct{}
}

// account is an Account and the values it holds, oldest first.
type account struct {
	Account
	name  string // Subdomain.zone
	label string // for metrics
	limit *limiter
	mu    sync.Mutex
	// values are the account's values, oldest first; loaded is set once
	// they were read from the journal (Records.Held).
	values []heldValue
	loaded bool
	// verified is the MAC of the key the account's last key check
	// accepted (keyAuth.mac).
	verified atomic.Pointer[[]byte]
}

// maxBody bounds an update's body: {"subdomain":"<36>","txt":"<43>"} is
// about 100 bytes.
const maxBody = 1 << 10

// New validates cfg and returns its server. Errors name the account and
// field.
func New(cfg Config) (*Server, error) {
	zone := solver.Normalize(cfg.Zone)
	if err := solver.ValidZone(zone); err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	if cfg.Records == nil {
		return nil, errors.New("no records writer")
	}
	limits := cfg.Limits.withDefaults()
	s := &Server{
		zone:       zone,
		accounts:   make(map[string]*account, len(cfg.Accounts)),
		records:    cfg.Records,
		logger:     cfg.Logger,
		observer:   cfg.Observer,
		clientIP:   cfg.ClientIP,
		sources:    newSourceLimits(limits),
		reg:        cfg.Register,
		httpreq:    cfg.HTTPReq,
		limits:     limits,
		registered: newLRU[string, *account](maxCachedRegistered),
		tending:    make(chan struct{}, 1),
	}
	if s.reg != nil && (len(s.reg.AllowFrom) == 0 || s.reg.Store == nil) {
		return nil, errors.New("register: allow_from: at least one network may register (an open registration would let anyone take names in the zone)")
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	s.refusals = refusallog.New(s.logger)
	s.routes = routes{register: s.reg != nil, httpreq: s.httpreq}
	s.values = valueKeeper{records: cfg.Records, rules: cfg.Values.withDefaults(), logger: s.logger}
	if err := s.values.rules.validate(); err != nil {
		return nil, err
	}
	if s.clientIP == nil {
		s.clientIP = remoteAddr
	}
	subdomains := map[string]string{}
	for i, a := range cfg.Accounts {
		if err := a.validate(zone); err != nil {
			return nil, fmt.Errorf("accounts[%d]: %w", i, err)
		}
		if s.accounts[a.Username] != nil {
			return nil, fmt.Errorf("accounts[%d]: username %q appears twice", i, a.Username)
		}
		if other, ok := subdomains[a.Subdomain]; ok {
			return nil, fmt.Errorf("accounts[%d]: subdomain %q is %s's already: an account writes only at its own name", i, a.Subdomain, other)
		}
		subdomains[a.Subdomain] = a.Username
		s.accounts[a.Username] = s.newAccount(a, false)
	}
	lowest, highest := s.costs()
	auth, err := newKeyAuth(zone, lowest, highest, limits)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	return s, nil
}

// costs are the lowest and highest bcrypt costs of the configured accounts
// and of registration. An unknown user's check costs the highest, so that
// its answer's time does not tell that no such user exists, and so does a
// failed check of a cheaper account (keyAuth.padding).
func (s *Server) costs() (lowest, highest int) {
	lowest, highest = bcrypt.MaxCost, bcrypt.MinCost
	add := func(c int) {
		lowest, highest = min(lowest, c), max(highest, c)
	}
	if s.reg != nil {
		add(s.reg.cost())
	}
	for _, a := range s.accounts {
		if c, err := bcrypt.Cost([]byte(a.KeyHash)); err == nil {
			add(c)
		}
	}
	return min(lowest, highest), highest
}

func (s *Server) newAccount(a Account, registered bool) *account {
	label := a.Username
	if registered {
		label = registeredLabel
	}
	return &account{Account: a, name: a.Subdomain + "." + s.zone, label: label, limit: newLimiter(s.limits.AccountRate, s.limits.AccountBurst)}
}

func remoteAddr(r *http.Request) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err
}

// refusal is an update refused: what the client is told (acme-dns's own
// error strings) and, for the log, why.
type refusal struct {
	status  int
	code    string
	outcome Outcome
	reason  string
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, "update", r.Header.Get("X-Api-User"), r.Header.Get("X-Api-Key"), s.write,
		func(w http.ResponseWriter, value string) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"txt": value})
		})
}

// serve authorizes a request of op (update; present or cleanup for
// httpreq) as user with key, runs do on the account, and answers: ok on
// success, an acme-dns error otherwise. It logs and counts either.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, op, user, key string,
	do func(*http.Request, *account) (string, *refusal), ok func(http.ResponseWriter, string)) {
	src, err := s.clientIP(r)
	a, ref := s.authorize(r.Context(), user, key, src, err)
	var value string
	if ref == nil {
		value, ref = do(r, a)
	}
	name, label := "", ""
	if a != nil {
		name, label = a.Username, a.label
	}
	if ref != nil {
		s.observe(label, ref.outcome)
		// The key is never logged; the user name is logged only if an
		// account has it (a key pasted into the user field stays out).
		s.refusals.Write(zap.InfoLevel, ref.reason+" "+src.String(), "acme-dns update refused",
			zap.String("op", op), zap.String("account", name), zap.Stringer("source", src), zap.String("reason", ref.reason))
		reply(w, ref.status, ref.code)
		return
	}
	outcome, msg := Written, "acme-dns update written"
	if op == "cleanup" {
		outcome, msg = Removed, "acme-dns value removed"
	}
	s.observe(label, outcome)
	s.logger.Info(msg, zap.String("op", op), zap.String("account", name), zap.String("name", a.name),
		zap.String("value", value), zap.Stringer("source", src))
	ok(w, value)
}

func (s *Server) observe(account string, o Outcome) {
	if s.observer != nil {
		s.observer.Updated(account, o)
	}
}

// write checks the update's body and writes its value at the account's
// name.
func (s *Server) write(r *http.Request, a *account) (string, *refusal) {
	var body struct {
		Subdomain string `json:"subdomain"`
		TXT       string `json:"txt"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	if err := dec.Decode(&body); err != nil {
		// acme-dns reads a body it cannot decode as one naming no
		// subdomain, not the account's: 401 forbidden.
		return "", &refusal{http.StatusUnauthorized, "forbidden", RefusedValue, fmt.Sprintf("body: %v", err)}
	}
	if body.Subdomain != a.Subdomain {
		return "", &refusal{http.StatusUnauthorized, "forbidden", RefusedAuth, fmt.Sprintf("subdomain %q is not the account's", body.Subdomain)}
	}
	return s.values.put(r.Context(), a, body.TXT)
}

// Accounts lists the configured accounts and the registered ones used
// since the config was loaded, without their key hashes, by user name.
func (s *Server) Accounts() []AccountInfo {
	all := s.known()
	out := make([]AccountInfo, 0, len(all))
	for _, a := range all {
		a.mu.Lock()
		n := len(a.values)
		a.mu.Unlock()
		info := AccountInfo{Username: a.Username, Subdomain: a.Subdomain, FullDomain: a.name, Registered: a.label == registeredLabel, Values: n}
		for _, p := range a.AllowFrom {
			info.AllowFrom = append(info.AllowFrom, p.String())
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	return out
}

func reply(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}
