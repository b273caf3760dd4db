// Package dnstest runs an in-process DNS server for tests.
//
// A Server listens on 127.0.0.1 on one random port for both UDP and TCP. It
// is authoritative for the zones it is started with and answers queries for
// them the way a recursive resolver would (RA set, CNAME chains chased inside
// its own zones with the whole chain in the answer, wildcards synthesised,
// SOA with a negative TTL of 1 in the authority section of NXDOMAIN and
// NODATA answers), so that it can stand in for both the authoritative servers
// and the resolver that certmagic and the alias provider are pointed at.
// Names outside every zone do not exist (NXDOMAIN).
//
// Zones marked Updatable accept RFC 2136 UPDATE messages signed with the
// server's TSIG key (hmac-sha256), as sent by libdns/rfc2136: add RR, delete
// RR (exact value), delete RRset, delete name, with the RFC 2136
// prerequisites. Every UPDATE received, accepted or not, is logged for
// assertions, and so is every query.
//
// Owner names are stored and logged in lower case; logged names carry no
// trailing dot. A Server is safe for concurrent use.
package dnstest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DefaultTTL is the TTL of records given without one.
const DefaultTTL = 60

// KeyAlgorithm is the TSIG algorithm of every Server's key, in the form that
// libdns/rfc2136's KeyAlg (and caddy-dns/rfc2136's key_alg) expects.
const KeyAlgorithm = "hmac-sha256"

// maxChase caps the CNAME hops chased for one query, like a resolver's
// restart limit. A longer chain or a loop answers SERVFAIL.
const maxChase = 16

// Zone is a zone the server is authoritative for.
type Zone struct {
	// Name is the zone's apex, e.g. "example.com" (trailing dot optional).
	Name string
	// Records is zone-file text; relative owner names are relative to Name
	// and records without a TTL get DefaultTTL. An SOA (TTL 1, negative TTL
	// 1, refresh 1) and an NS record at the apex are added when missing.
	Records string
	// Updatable zones accept TSIG-signed RFC 2136 UPDATEs.
	Updatable bool
}

// TSIGKey is the key that UPDATEs must be signed with.
type TSIGKey struct {
	Name      string // key name, fully qualified, e.g. "dnstest-key."
	Algorithm string // KeyAlgorithm
	Secret    string // base64
}

// Update operations as logged.
const (
	OpAdd          = "add"          // class IN: add RR
	OpDelete       = "delete"       // class NONE: delete the RR with exactly this value
	OpDeleteRRset  = "delete-rrset" // class ANY, type T: delete every RR of type T at the name
	OpDeleteName   = "delete-name"  // class ANY, type ANY: delete every RR at the name
	OpNone         = "none"         // an UPDATE message without update RRs
	OpUnrecognised = "unrecognised" // an update RR of another class
)

// Update is one update RR of one UPDATE message received.
type Update struct {
	Msg   int    // sequence number of the UPDATE message, from 1
	Zone  string // zone section, lower case, no trailing dot
	Op    string // OpAdd, OpDelete, ...
	Name  string // owner name, lower case, no trailing dot
	Type  string // "TXT", ...; "ANY" for OpDeleteName
	Value string // RDATA in presentation form (TXT: the strings joined); "" for RRset and name deletes
	TTL   uint32
	Key   string // name of the TSIG key the message carried, "" if unsigned
	Rcode int    // the answer to the whole message (dns.RcodeSuccess: applied)
}

// Accepted reports whether the message the update came in was applied.
func (u Update) Accepted() bool { return u.Rcode == dns.RcodeSuccess }

func (u Update) String() string {
	return fmt.Sprintf("#%d %s zone=%s %s %s %q ttl=%d key=%q -> %s", u.Msg, u.Op, u.Zone, u.Name, u.Type, u.Value, u.TTL, u.Key, dns.RcodeToString[u.Rcode])
}

// Query is one query received.
type Query struct {
	Name string // lower case, no trailing dot
	Type string // "TXT", "CNAME", ...
	Net  string // "udp" or "tcp"
	// Direct: recursion not desired, as when a nameserver of a zone is
	// asked directly rather than through a resolver.
	Direct bool
}

// TXT is one TXT record of a zone.
type TXT struct {
	Name  string // lower case, no trailing dot
	Value string // the strings joined
	TTL   uint32
}

// Server is a running in-process DNS server.
type Server struct {
	t    testing.TB
	addr string
	key  TSIGKey
	udp  *dns.Server
	tcp  *dns.Server

	closeOnce sync.Once

	mu      sync.Mutex
	zones   map[string]*zone // by canonical apex
	updates []Update
	nUpdate int
	queries []Query
}

type zone struct {
	name      string // canonical apex, lower case with trailing dot
	updatable bool
	rrs       []dns.RR // owner names in lower case
}

// Start starts a server for zones and stops it when the test ends. It fails
// the test if a zone does not parse or the server cannot listen.
func Start(t testing.TB, zones ...Zone) *Server {
	t.Helper()
	s := &Server{t: t, zones: make(map[string]*zone)}
	for _, zc := range zones {
		z, err := newZone(zc)
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		if _, dup := s.zones[z.name]; dup {
			t.Fatalf("dnstest: zone %s given twice", z.name)
		}
		s.zones[z.name] = z
	}

	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("dnstest: TSIG key: %v", err)
	}
	s.key = TSIGKey{Name: "dnstest-key.", Algorithm: KeyAlgorithm, Secret: base64.StdEncoding.EncodeToString(secret)}

	pc, l, err := listen()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	tsig := map[string]string{s.key.Name: s.key.Secret}
	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: s, TsigSecret: tsig, MsgAcceptFunc: accept, NotifyStartedFunc: func() { close(udpStarted) }}
	s.tcp = &dns.Server{Listener: l, Handler: s, TsigSecret: tsig, MsgAcceptFunc: accept, NotifyStartedFunc: func() { close(tcpStarted) }}
	errs := make(chan error, 2)
	go func() { errs <- s.udp.ActivateAndServe() }()
	go func() { errs <- s.tcp.ActivateAndServe() }()
	for _, started := range []chan struct{}{udpStarted, tcpStarted} {
		select {
		case <-started:
		case err := <-errs:
			t.Fatalf("dnstest: serving: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("dnstest: server did not start")
		}
	}
	t.Cleanup(s.Close)
	return s
}

// accept lets every request through to ServeDNS (miekg/dns's default turns
// UPDATEs away), which then answers FORMERR or NOTIMP itself.
func accept(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// listen opens UDP and TCP sockets on one random port of 127.0.0.1.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP: %w", lastErr)
}

func newZone(zc Zone) (*zone, error) {
	if strings.TrimSpace(zc.Name) == "" {
		return nil, fmt.Errorf("zone without a name")
	}
	z := &zone{name: canonical(zc.Name), updatable: zc.Updatable}
	rrs, err := parse(zc.Records, z.name)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", z.name, err)
	}
	for _, rr := range rrs {
		if !dns.IsSubDomain(z.name, rr.Header().Name) {
			return nil, fmt.Errorf("zone %s: record %s lies outside the zone", z.name, rr)
		}
	}
	z.rrs = rrs
	if len(z.rrset(z.name, dns.TypeSOA)) == 0 {
		soa, _ := dns.NewRR(z.name + " 1 IN SOA ns.dnstest. hostmaster.dnstest. 1 1 1 1 1")
		z.rrs = append([]dns.RR{soa}, z.rrs...)
	}
	if len(z.rrset(z.name, dns.TypeNS)) == 0 {
		ns, _ := dns.NewRR(z.name + " 1 IN NS ns.dnstest.")
		z.rrs = append(z.rrs, ns)
	}
	return z, nil
}

// parse reads zone-file text relative to origin, lower-casing owner names.
func parse(text, origin string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(DefaultTTL)
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rr.Header().Name = canonical(rr.Header().Name)
		out = append(out, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Addr is the server's address, "127.0.0.1:port", for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Key is the TSIG key that UPDATEs must be signed with.
func (s *Server) Key() TSIGKey { return s.key }

// Close stops the server. Start arranges for it to be called when the test
// ends; calling it again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
}

// Add adds records given as zone-file lines with absolute owner names (the
// trailing dot is optional; a missing TTL is DefaultTTL) to the zones they
// lie in. It fails the test, so call it from the test's goroutine, if a line
// does not parse or lies in no zone.
func (s *Server) Add(records ...string) {
	s.t.Helper()
	rrs, err := parse(strings.Join(records, "\n"), ".")
	if err != nil {
		s.t.Fatalf("dnstest: Add: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		z := s.zoneFor(rr.Header().Name)
		if z == nil {
			s.t.Fatalf("dnstest: Add: %s lies in no zone of this server", rr)
		}
		z.rrs = append(z.rrs, rr)
		z.bumpSerial()
	}
}

// Remove removes records given as in Add, each matched by owner, type and
// exact value (not TTL). It fails the test if one is not there.
func (s *Server) Remove(records ...string) {
	s.t.Helper()
	rrs, err := parse(strings.Join(records, "\n"), ".")
	if err != nil {
		s.t.Fatalf("dnstest: Remove: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		z := s.zoneFor(rr.Header().Name)
		if z == nil {
			s.t.Fatalf("dnstest: Remove: %s lies in no zone of this server", rr)
		}
		before := len(z.rrs)
		z.rrs = slices.DeleteFunc(z.rrs, func(have dns.RR) bool { return sameRR(have, rr) })
		if len(z.rrs) == before {
			s.t.Fatalf("dnstest: Remove: %s is not in zone %s", rr, z.name)
		}
		z.bumpSerial()
	}
}

// Records lists the records of zone in presentation form, sorted. It fails
// the test if the server has no such zone.
func (s *Server) Records(zoneName string) []string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[canonical(zoneName)]
	if z == nil {
		s.t.Fatalf("dnstest: no zone %s", zoneName)
	}
	out := make([]string, 0, len(z.rrs))
	for _, rr := range z.rrs {
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

// TXT lists the TXT records of zone, sorted by name and value. It fails the
// test if the server has no such zone.
func (s *Server) TXT(zoneName string) []TXT {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[canonical(zoneName)]
	if z == nil {
		s.t.Fatalf("dnstest: no zone %s", zoneName)
	}
	var out []TXT
	for _, rr := range z.rrs {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, TXT{Name: bare(txt.Hdr.Name), Value: strings.Join(txt.Txt, ""), TTL: txt.Hdr.Ttl})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// TXTValues lists the values of the TXT records owned by exactly name (no
// CNAME chasing), sorted; nil if there are none or name lies in no zone.
func (s *Server) TXTValues(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(canonical(name))
	if z == nil {
		return nil
	}
	var out []string
	for _, rr := range z.rrset(canonical(name), dns.TypeTXT) {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	sort.Strings(out)
	return out
}

// Updates returns every update RR received so far, in order.
func (s *Server) Updates() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.updates)
}

// Queries returns every query received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// ServeDNS answers one message; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	switch req.Opcode {
	case dns.OpcodeQuery:
		s.query(w, req, resp)
	case dns.OpcodeUpdate:
		s.update(w, req, resp)
	default:
		resp.SetRcode(req, dns.RcodeNotImplemented)
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), false)
	}
	// A signed NOTAUTH reads as a TSIG failure to miekg/dns clients (and so
	// to libdns/rfc2136): NOTAUTH goes out unsigned.
	if t := req.IsTsig(); t != nil && w.TsigStatus() == nil && resp.Rcode != dns.RcodeNotAuth {
		resp.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	} else if w.LocalAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// query answers like a recursive resolver whose view of the world is this
// server's zones.
func (s *Server) query(w dns.ResponseWriter, req *dns.Msg, resp *dns.Msg) {
	if len(req.Question) != 1 {
		resp.SetRcodeFormatError(req)
		return
	}
	resp.SetReply(req)
	resp.RecursionAvailable = true
	q := req.Question[0]

	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, Query{Name: bare(q.Name), Type: dns.TypeToString[q.Qtype], Net: w.LocalAddr().Network(), Direct: !req.RecursionDesired})

	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return
	}
	asked := q.Name
	name := canonical(q.Name)
	seen := map[string]bool{name: true}
	for hop := 0; ; hop++ {
		z := s.zoneFor(name)
		if z == nil {
			resp.Rcode = dns.RcodeNameError
			return
		}
		if hop == 0 {
			resp.Authoritative = true
		}
		answer, cname, exists := z.lookup(name, q.Qtype)
		if hop == 0 {
			// echo the question's spelling, as resolvers do
			for _, rr := range answer {
				rr.Header().Name = asked
			}
			if cname != nil {
				cname.Hdr.Name = asked
			}
		}
		if len(answer) > 0 {
			resp.Answer = append(resp.Answer, answer...)
			return
		}
		if cname == nil {
			if !exists {
				resp.Rcode = dns.RcodeNameError
			}
			resp.Ns = append(resp.Ns, z.negativeSOA())
			return
		}
		resp.Answer = append(resp.Answer, cname)
		target := canonical(cname.Target)
		if seen[target] || hop+1 >= maxChase {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		seen[target] = true
		name = target
	}
}

// zoneFor returns the closest zone that contains name, or nil.
func (s *Server) zoneFor(name string) *zone {
	name = canonical(name)
	for _, i := range dns.Split(name) {
		if z := s.zones[name[i:]]; z != nil {
			return z
		}
	}
	return s.zones["."]
}

// lookup returns copies of the records of qtype at name (synthesised from a
// wildcard if name does not exist), or else the CNAME at name, and whether
// name exists.
func (z *zone) lookup(name string, qtype uint16) (answer []dns.RR, cname *dns.CNAME, exists bool) {
	rrs := z.at(name)
	exists = len(rrs) > 0 || z.hasBelow(name)
	if !exists {
		if enc := z.closestEncloser(name); enc != "" {
			rrs = z.at("*." + enc)
			exists = len(rrs) > 0
		}
	}
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Name = name
		if qtype == dns.TypeANY || rr.Header().Rrtype == qtype {
			answer = append(answer, rr)
		} else if c, ok := rr.(*dns.CNAME); ok {
			cname = c
		}
	}
	return answer, cname, exists
}

// at returns the records owned by name (not copies).
func (z *zone) at(name string) []dns.RR {
	var out []dns.RR
	for _, rr := range z.rrs {
		if rr.Header().Name == name {
			out = append(out, rr)
		}
	}
	return out
}

func (z *zone) rrset(name string, rrtype uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range z.at(name) {
		if rr.Header().Rrtype == rrtype {
			out = append(out, rr)
		}
	}
	return out
}

// hasBelow reports whether some record lies below name (an empty
// non-terminal exists).
func (z *zone) hasBelow(name string) bool {
	for _, rr := range z.rrs {
		if strings.HasSuffix(rr.Header().Name, "."+name) {
			return true
		}
	}
	return false
}

// closestEncloser is the longest existing ancestor of name (which does not
// exist) within the zone; the apex always exists.
func (z *zone) closestEncloser(name string) string {
	for _, i := range dns.Split(name)[1:] {
		p := name[i:]
		if !dns.IsSubDomain(z.name, p) {
			return ""
		}
		if len(z.at(p)) > 0 || z.hasBelow(p) {
			return p
		}
	}
	return ""
}

func (z *zone) soa() *dns.SOA {
	for _, rr := range z.rrset(z.name, dns.TypeSOA) {
		return rr.(*dns.SOA)
	}
	return nil
}

// negativeSOA is the SOA for the authority section of a negative answer,
// with its TTL lowered to the negative TTL (RFC 2308).
func (z *zone) negativeSOA() dns.RR {
	soa := dns.Copy(z.soa()).(*dns.SOA)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}

func (z *zone) bumpSerial() {
	if soa := z.soa(); soa != nil {
		soa.Serial++
	}
}

// canonical lower-cases name and adds the trailing dot.
func canonical(name string) string {
	return dns.CanonicalName(strings.TrimSpace(name))
}

// bare lower-cases name and strips the trailing dot ("." stays).
func bare(name string) string {
	n := canonical(name)
	if n == "." {
		return n
	}
	return strings.TrimSuffix(n, ".")
}
