// Package acmednstest is a stand-in acme-dns server for tests: the real one
// (github.com/joohoi/acme-dns) cannot be installed on the lab machines.
//
// It implements acme-dns's documented HTTP API as the server does:
//
//   - POST /register, optional body {"allowfrom": ["CIDR", ...]}: 201 with
//     {"username","password","fulldomain","subdomain","allowfrom"}; a malformed
//     body or CIDR is 400 ("malformed_json_payload", "invalid_allowfrom_cidr").
//   - POST /update with headers X-Api-User (the username, a UUID) and
//     X-Api-Key (the 40-character password) and body {"subdomain","txt"}: an
//     unknown user, a wrong key, a subdomain that is not the user's or a
//     client address outside the account's allowfrom CIDRs is 401
//     {"error":"forbidden"}; a TXT value that is not 43 characters of the
//     base64url alphabet is 400 {"error":"bad_txt"}; otherwise the value
//     replaces the older of the account's two values: 200 {"txt": value}.
//   - GET /health: 200.
//
// and serves DNS (UDP and TCP) authoritatively for its zone: TXT at
// <subdomain>.<zone> answers the account's current values (TTL 1, as
// acme-dns), the zone apex has SOA and NS (ns1.<zone>, with an A record of
// the DNS listener's address), other names are NXDOMAIN and names outside the
// zone REFUSED.
package acmednstest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Config says where the stand-in listens and what it serves.
type Config struct {
	// Zone is the domain the server serves accounts under (acme-dns's
	// general.domain). Default: auth.acme-dns.example.
	Zone string
	// DNSAddr is where DNS is served, UDP and TCP, e.g. "127.0.0.4:53".
	// Default: "127.0.0.1:0" (a free port, the same for UDP and TCP).
	DNSAddr string
	// HTTPAddr is where the API is served. Default: "127.0.0.1:0".
	HTTPAddr string
	// HeaderName, if set, takes the client address for allowfrom checks
	// from this header (acme-dns's api.use_header / api.header_name)
	// instead of the connection.
	HeaderName string
}

// Account is what /register returns.
type Account struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	FullDomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

// Update is one POST /update the server received.
type Update struct {
	Time       time.Time
	RemoteAddr string
	Username   string // X-Api-User as sent
	Subdomain  string // as sent in the body
	TXT        string // as sent in the body
	Status     int    // the HTTP status answered
	Error      string // the error code answered, "" on success
}

type account struct {
	Account
	nets   []*net.IPNet
	values [2]txtRow
}

// txtRow is one of the two TXT rows acme-dns keeps per account.
type txtRow struct {
	value string
	seq   uint64 // order of the update that wrote it; 0: never written
}

// Server is a running stand-in.
type Server struct {
	cfg  Config
	zone string // normalized, with trailing dot

	mu       sync.Mutex
	byUser   map[string]*account
	bySub    map[string]*account
	updates  []Update
	seq      uint64
	dnsQuery int

	httpLn  net.Listener
	httpSrv *http.Server
	udp     *dns.Server
	tcp     *dns.Server
	dnsAddr *net.UDPAddr
	wg      sync.WaitGroup
}

// Start starts the stand-in. Close it when done.
func Start(cfg Config) (*Server, error) {
	if cfg.Zone == "" {
		cfg.Zone = "auth.acme-dns.example"
	}
	if cfg.DNSAddr == "" {
		cfg.DNSAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if _, ok := dns.IsDomainName(cfg.Zone); !ok {
		return nil, fmt.Errorf("acmednstest: zone %q is not a domain name", cfg.Zone)
	}
	s := &Server{
		cfg:    cfg,
		zone:   dns.CanonicalName(cfg.Zone),
		byUser: map[string]*account{},
		bySub:  map[string]*account{},
	}
	if err := s.listenDNS(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		s.closeDNS()
		return nil, fmt.Errorf("acmednstest: HTTP listener: %w", err)
	}
	s.httpLn = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/register", s.handleRegister)
	mux.HandleFunc("/update", s.handleUpdate)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(ln)
	}()
	return s, nil
}

func (s *Server) listenDNS() error {
	var lastErr error
	// With port 0, UDP picks a port and TCP must get the same one: retry
	// a few times if TCP finds it taken.
	for range 10 {
		pc, err := net.ListenPacket("udp", s.cfg.DNSAddr)
		if err != nil {
			return fmt.Errorf("acmednstest: DNS (UDP) listener on %s: %w", s.cfg.DNSAddr, err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr)
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			pc.Close()
			lastErr = err
			if strings.HasSuffix(s.cfg.DNSAddr, ":0") {
				continue
			}
			return fmt.Errorf("acmednstest: DNS (TCP) listener on %s: %w", addr, err)
		}
		s.dnsAddr = addr
		handler := dns.HandlerFunc(s.serveDNS)
		s.udp = &dns.Server{PacketConn: pc, Handler: handler}
		s.tcp = &dns.Server{Listener: ln, Handler: handler}
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_ = srv.ActivateAndServe()
			}()
			<-started
		}
		return nil
	}
	return fmt.Errorf("acmednstest: DNS (TCP) listener: %w", lastErr)
}

func (s *Server) closeDNS() {
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			_ = srv.Shutdown()
		}
	}
}

// Close stops every listener.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.httpSrv.Shutdown(ctx)
	s.closeDNS()
	s.wg.Wait()
	return err
}

// URL is the API's base URL, e.g. "http://127.0.0.1:40123".
func (s *Server) URL() string { return "http://" + s.httpLn.Addr().String() }

// Client returns an HTTP client that hands each request to the server's API
// handler in the calling goroutine, without the network, as if it came from
// 127.0.0.1 (the URL's host is not looked at). A test can use it inside a
// testing/synctest bubble, where the network would keep the bubble's clock
// from advancing.
func (s *Server) Client() *http.Client { return InProcessClient(s.httpSrv.Handler) }

// InProcessClient returns an HTTP client that serves each request with h in
// the calling goroutine, as if it came from 127.0.0.1, and never dials.
func InProcessClient(h http.Handler) *http.Client {
	return &http.Client{Transport: inProcess{h}}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	in := req.Clone(req.Context())
	in.RemoteAddr = "127.0.0.1:1"
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// DNSAddr is the address DNS is served on (UDP and TCP), e.g. "127.0.0.4:53".
func (s *Server) DNSAddr() string { return s.dnsAddr.String() }

// Zone is the served zone, without trailing dot.
func (s *Server) Zone() string { return strings.TrimSuffix(s.zone, ".") }

// Register registers an account through the API, as a client would.
func (s *Server) Register(ctx context.Context, allowFrom ...string) (Account, error) {
	return Register(ctx, s.URL(), allowFrom...)
}

// Register calls POST /register on an acme-dns server at base.
func Register(ctx context.Context, base string, allowFrom ...string) (Account, error) {
	var body io.Reader
	if len(allowFrom) > 0 {
		data, err := json.Marshal(map[string][]string{"allowfrom": allowFrom})
		if err != nil {
			return Account{}, err
		}
		body = strings.NewReader(string(data))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/register", body)
	if err != nil {
		return Account{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Account{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return Account{}, fmt.Errorf("acme-dns register: %s: %s", resp.Status, data)
	}
	var a Account
	if err := json.Unmarshal(data, &a); err != nil {
		return Account{}, fmt.Errorf("acme-dns register: %w", err)
	}
	return a, nil
}

// Values returns the TXT values DNS serves for an account's subdomain now,
// newest first (at most two).
func (s *Server) Values(subdomain string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.bySub[strings.ToLower(subdomain)]
	if a == nil {
		return nil
	}
	return a.current()
}

func (a *account) current() []string {
	rows := a.values
	if rows[0].seq < rows[1].seq {
		rows[0], rows[1] = rows[1], rows[0]
	}
	var out []string
	for _, r := range rows {
		if r.value != "" {
			out = append(out, r.value)
		}
	}
	return out
}

// Updates returns every POST /update received so far, in order.
func (s *Server) Updates() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Update(nil), s.updates...)
}

// DNSQueries returns how many DNS queries the server answered.
func (s *Server) DNSQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dnsQuery
}

// ---------------------------------------------------------------------------
// HTTP API

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func jsonError(code string) []byte { return []byte(fmt.Sprintf(`{"error": "%s"}`, code)) }

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		AllowFrom []string `json:"allowfrom"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if len(data) > 0 {
		if err := json.Unmarshal(data, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, jsonError("malformed_json_payload"))
			return
		}
	}
	a := &account{}
	for _, c := range req.AllowFrom {
		_, n, err := net.ParseCIDR(strings.NewReplacer("[", "", "]", "").Replace(c))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, jsonError("invalid_allowfrom_cidr"))
			return
		}
		a.nets = append(a.nets, n)
		a.AllowFrom = append(a.AllowFrom, c)
	}
	if a.AllowFrom == nil {
		a.AllowFrom = []string{}
	}
	a.Username = newUUID()
	a.Password = newPassword(40)
	a.Subdomain = newUUID()
	a.FullDomain = a.Subdomain + "." + strings.TrimSuffix(s.zone, ".")
	s.mu.Lock()
	s.byUser[a.Username] = a
	s.bySub[a.Subdomain] = a
	s.mu.Unlock()
	body, _ := json.Marshal(a.Account)
	writeJSON(w, http.StatusCreated, body)
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var post struct {
		Subdomain string `json:"subdomain"`
		TXT       string `json:"txt"`
	}
	up := Update{Time: time.Now(), RemoteAddr: r.RemoteAddr, Username: r.Header.Get("X-Api-User")}
	status, code := func() (int, string) {
		s.mu.Lock()
		a := s.user(r.Header.Get("X-Api-User"), r.Header.Get("X-Api-Key"))
		s.mu.Unlock()
		if a == nil || !a.allowed(s.clientIPs(r)) {
			return http.StatusUnauthorized, "forbidden"
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&post)
		up.Subdomain, up.TXT = post.Subdomain, post.TXT
		if post.Subdomain != a.Subdomain {
			return http.StatusUnauthorized, "forbidden"
		}
		if !validUUID(post.Subdomain) {
			return http.StatusBadRequest, "bad_subdomain"
		}
		if !validTXT(post.TXT) {
			return http.StatusBadRequest, "bad_txt"
		}
		s.mu.Lock()
		s.seq++
		// acme-dns: UPDATE the row of the subdomain with the oldest
		// LastUpdate.
		i := 0
		if a.values[1].seq < a.values[0].seq {
			i = 1
		}
		a.values[i] = txtRow{value: post.TXT, seq: s.seq}
		s.mu.Unlock()
		return http.StatusOK, ""
	}()
	up.Status, up.Error = status, code
	s.mu.Lock()
	s.updates = append(s.updates, up)
	s.mu.Unlock()
	if status == http.StatusOK {
		body, _ := json.Marshal(map[string]string{"txt": post.TXT})
		writeJSON(w, status, body)
		return
	}
	writeJSON(w, status, jsonError(code))
}

// user returns the account whose username and key these are, or nil. s.mu
// is held.
func (s *Server) user(username, key string) *account {
	if !validUUID(username) || !validKey(key) {
		return nil
	}
	a := s.byUser[strings.ToLower(username)]
	if a == nil || subtle.ConstantTimeCompare([]byte(a.Password), []byte(key)) != 1 {
		return nil
	}
	return a
}

func (s *Server) clientIPs(r *http.Request) []string {
	if s.cfg.HeaderName != "" {
		var ips []string
		for _, v := range strings.Split(r.Header.Get(s.cfg.HeaderName), ",") {
			if v = strings.TrimSpace(v); v != "" {
				ips = append(ips, v)
			}
		}
		return ips
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = ""
	}
	return []string{host}
}

// allowed is acme-dns's allowfrom rule: no CIDRs allows everyone, otherwise
// one of the client's addresses must be inside one of them.
func (a *account) allowed(ips []string) bool {
	if len(a.nets) == 0 {
		return true
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		for _, n := range a.nets {
			if ip != nil && n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// base64url is the alphabet of ACME digests and acme-dns passwords.
const base64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func onlyBase64URL(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune(base64url, r) {
			return false
		}
	}
	return true
}

func validTXT(s string) bool { return len(s) == 43 && onlyBase64URL(s) }
func validKey(s string) bool { return len(s) == 40 && onlyBase64URL(s) }

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newPassword(n int) string {
	out := make([]byte, n)
	max := big.NewInt(int64(len(base64url)))
	for i := range out {
		c, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		out[i] = base64url[c.Int64()]
	}
	return string(out)
}

// ---------------------------------------------------------------------------
// DNS

func (s *Server) nsName() string { return "ns1." + s.zone }

func (s *Server) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns:      s.nsName(),
		Mbox:    "hostmaster." + s.zone,
		Serial:  1,
		Refresh: 28800, Retry: 7200, Expire: 604800, Minttl: 1,
	}
}

func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(1232, false)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			_ = w.WriteMsg(m)
			return
		}
	}
	s.mu.Lock()
	s.dnsQuery++
	s.mu.Unlock()
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.Rcode = dns.RcodeNotImplemented
		_ = w.WriteMsg(m)
		return
	}
	s.answer(m, r.Question[0])
	_ = w.WriteMsg(m)
}

func (s *Server) answer(m *dns.Msg, q dns.Question) {
	name := dns.CanonicalName(q.Name)
	if !dns.IsSubDomain(s.zone, name) {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	hdr := func(t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	nsA := &dns.A{Hdr: dns.RR_Header{Name: s.nsName(), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: s.dnsAddr.IP}
	switch {
	case name == s.zone:
		switch q.Qtype {
		case dns.TypeSOA:
			soa := s.soa()
			soa.Hdr.Name = q.Name
			m.Answer = append(m.Answer, soa)
		case dns.TypeNS:
			m.Answer = append(m.Answer, &dns.NS{Hdr: hdr(dns.TypeNS, 60), Ns: s.nsName()})
			m.Extra = append(m.Extra, nsA)
		}
	case name == s.nsName():
		if q.Qtype == dns.TypeA {
			a := *nsA
			a.Hdr.Name = q.Name
			m.Answer = append(m.Answer, &a)
		}
	default:
		label, parent, _ := strings.Cut(name, ".")
		s.mu.Lock()
		a := s.bySub[label]
		var values []string
		if a != nil {
			values = a.current()
		}
		s.mu.Unlock()
		if a == nil || parent != s.zone {
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, s.soa())
			return
		}
		if q.Qtype == dns.TypeTXT {
			for _, v := range values {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT, 1), Txt: []string{v}})
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa())
	}
}
