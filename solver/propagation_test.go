package solver

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// authFake answers NS and A for zone "validation.example.org" (ns1 at
// 192.0.2.1, ns2 at 192.0.2.2) through the resolver, and TXT at each
// server directly: a server serves the value once it has been asked
// lagPolls times, or never if lagPolls is negative.
type authFake struct {
	mu    sync.Mutex
	lag   map[string]int // server address -> polls before it serves
	asked map[string]int
	value string
}

func (f *authFake) exchange(_ context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := req.Question[0]
	resp := new(dns.Msg)
	resp.SetReply(req)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	switch {
	case q.Qtype == dns.TypeNS && Normalize(q.Name) == "validation.example.org":
		resp.Answer = []dns.RR{
			&dns.NS{Hdr: hdr(dns.TypeNS), Ns: "ns1.validation.example.org."},
			&dns.NS{Hdr: hdr(dns.TypeNS), Ns: "ns2.validation.example.org."},
		}
	case q.Qtype == dns.TypeA && strings.HasPrefix(q.Name, "ns1."):
		resp.Answer = []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP("192.0.2.1")}}
	case q.Qtype == dns.TypeA && strings.HasPrefix(q.Name, "ns2."):
		resp.Answer = []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP("192.0.2.2")}}
	case q.Qtype == dns.TypeCNAME && Normalize(q.Name) == "_acme-challenge.example.com":
		resp.Answer = []dns.RR{&dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: "_acme-challenge.example.com.validation.example.org."}}
	case q.Qtype == dns.TypeTXT && !req.RecursionDesired:
		f.asked[server]++
		if lag := f.lag[server]; lag >= 0 && f.asked[server] > lag {
			resp.Answer = []dns.RR{&dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{f.value}}}
		}
	}
	return resp, nil
}

func TestWaitServed(t *testing.T) {
	tests := []struct {
		name      string
		lag       map[string]int
		timeout   time.Duration
		wantErr   string // "" for success
		wantAsked map[string]int
	}{
		{"both serve at once", map[string]int{"192.0.2.1:53": 0, "192.0.2.2:53": 0}, time.Second, "", map[string]int{"192.0.2.1:53": 1, "192.0.2.2:53": 1}},
		{"one lags two polls", map[string]int{"192.0.2.1:53": 0, "192.0.2.2:53": 2}, time.Second, "", map[string]int{"192.0.2.1:53": 1, "192.0.2.2:53": 3}},
		{"one never serves", map[string]int{"192.0.2.1:53": 0, "192.0.2.2:53": -1}, 300 * time.Millisecond, "is not served by ns2.validation.example.org (192.0.2.2:53)", nil},
	}
	// The polls and the deadline pass on the synctest bubble's clock.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &authFake{lag: tt.lag, asked: map[string]int{}, value: "token-value"}
				r, err := NewResolver([]string{"127.0.0.1:1"}, 0)
				if err != nil {
					t.Fatal(err)
				}
				r.exchange = f.exchange
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				ttl, err := r.Authorities().WaitServed(ctx, "validation.example.org", "_acme-challenge.example.com.validation.example.org", "token-value")
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("WaitServed: %v", err)
					}
					if ttl != time.Minute {
						t.Errorf("WaitServed returned TTL %s, want the servers' 1m0s", ttl)
					}
					for server, want := range tt.wantAsked {
						if got := f.asked[server]; got != want {
							t.Errorf("%s asked %d times, want %d", server, got, want)
						}
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WaitServed = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "ns1.") {
					t.Errorf("the server that serves the value is blamed: %v", err)
				}
			})
		})
	}
}

// TestAuthoritativeWaitFailureRemovesRecord: a write that the alias zone
// never serves fails, and what was written is deleted again. The wait
// passes on the synctest bubble's clock.
func TestAuthoritativeWaitFailureRemovesRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &authFake{lag: map[string]int{"192.0.2.1:53": -1, "192.0.2.2:53": -1}, asked: map[string]int{}, value: "v"}
		r, err := NewResolver([]string{"127.0.0.1:1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.exchange = f.exchange
		w := &fakeWriter{}
		tmpl, err := ParseTemplate("_acme-challenge.{domain}.validation.example.org")
		if err != nil {
			t.Fatal(err)
		}
		p := &Provider{
			Mapper:            &Mapper{Resolver: r, Default: &Rule{Alias: tmpl, Zones: []string{"validation.example.org"}, Writer: w, WriterName: "fake"}},
			AuthoritativeWait: 200 * time.Millisecond,
		}
		_, err = p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", "v")})
		if err == nil || !strings.Contains(err.Error(), "is not served by") {
			t.Fatalf("AppendRecords = %v, want a propagation failure", err)
		}
		if a, d := len(w.callsOf("append")), len(w.callsOf("delete")); a != 1 || d != 1 || !w.empty() {
			t.Fatalf("appended %d, deleted %d times; want the failed write removed again", a, d)
		}
		if len(p.Presented()) != 0 {
			t.Fatalf("a failed write is still listed as presented: %v", p.Presented())
		}
	})
}

// cachingWorld serves the TXT records a fakeWriter holds: directly (no
// recursion) as the alias zone's two servers do, with a TTL of ttl, and
// recursively as a caching resolver does, which keeps the TXT set it
// fetched first for ttl. Everything else goes to next.
type cachingWorld struct {
	w    *fakeWriter
	ttl  time.Duration
	next func(context.Context, *dns.Msg, string) (*dns.Msg, error)

	mu        sync.Mutex
	cached    map[string][]string // name -> the TXT set the resolver holds
	expires   map[string]time.Time
	recursive int // recursive TXT queries
}

func (c *cachingWorld) exchange(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
	q := req.Question[0]
	resp := new(dns.Msg)
	resp.SetReply(req)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: uint32(c.ttl / time.Second)}
	}
	switch {
	case q.Qtype == dns.TypeNS && Normalize(q.Name) == testAliasZone:
		resp.Answer = []dns.RR{&dns.NS{Hdr: hdr(dns.TypeNS), Ns: "ns1." + testAliasZone + "."}}
	case q.Qtype == dns.TypeA && Normalize(q.Name) == "ns1."+testAliasZone:
		resp.Answer = []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP("192.0.2.1")}}
	case q.Qtype == dns.TypeTXT:
		values := c.w.values(q.Name)
		if req.RecursionDesired {
			c.mu.Lock()
			c.recursive++
			name := Normalize(q.Name)
			if time.Now().Before(c.expires[name]) {
				values = c.cached[name]
			} else {
				c.cached[name], c.expires[name] = values, time.Now().Add(c.ttl)
			}
			c.mu.Unlock()
		}
		for _, v := range values {
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	default:
		return c.next(ctx, req, server)
	}
	return resp, nil
}

func (c *cachingWorld) recursiveQueries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recursive
}

// TestRecursiveWaitAtSharedName: with certmagic's check off, a write at an
// alias name no other challenge uses returns once the alias zone serves it,
// asking no recursive resolver. A write at a name whose TXT set a resolver
// holds without the new value (another challenge's, present or lately
// removed) returns once that cache has expired, and fails, removing its
// record, when it outlasts RecursiveWait. Time is the synctest bubble's.
func TestRecursiveWaitAtSharedName(t *testing.T) {
	const ttl = 30 * time.Second
	setup := func(t *testing.T, recursiveWait time.Duration) (*Provider, *fakeWriter, *cachingWorld) {
		w := &fakeWriter{}
		p := staticProvider(t, w)
		p.AuthoritativeWait, p.RecursiveWait = time.Second, recursiveWait
		r := p.Mapper.Resolver
		world := &cachingWorld{w: w, ttl: ttl, next: r.exchange, cached: map[string][]string{}, expires: map[string]time.Time{}}
		r.exchange = world.exchange
		return p, w, world
	}
	// caValidates is the CA's lookup through the caching resolver.
	caValidates := func(t *testing.T, p *Provider) {
		if _, err := p.Mapper.Resolver.exchange(context.Background(), recursiveTXT(testStaticAlias), "127.0.0.1:53"); err != nil {
			t.Fatal(err)
		}
	}
	present := func(t *testing.T, p *Provider, domain, value string) (time.Duration, error) {
		start := time.Now()
		_, err := p.AppendRecords(context.Background(), domain+".", []libdns.Record{txt("_acme-challenge", value)})
		return time.Since(start), err
	}

	t.Run("waits out the cache", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, w, world := setup(t, 2*time.Minute)
			if took, err := present(t, p, "a.example.com", "A"); err != nil || took != 0 || world.recursiveQueries() != 0 {
				t.Fatalf("first value: %v after %s with %d recursive queries; want at once, with none", err, took, world.recursiveQueries())
			}
			caValidates(t, p) // the resolver now holds {A}
			time.Sleep(5 * time.Second)
			took, err := present(t, p, "b.example.com", "B")
			if err != nil {
				t.Fatal(err)
			}
			// The provider's resolver's {A} expires 25 s after the write;
			// a resolver it cannot ask may have cached {A} just before the
			// write, and holds it a TTL after.
			if took < ttl || took > ttl+time.Second {
				t.Errorf("second value at the shared name returned after %s, want a TTL (%s) after its write", took, ttl)
			}
			mustDelete(t, p, "a.example.com.", txt("_acme-challenge", "A"))
			mustDelete(t, p, "b.example.com.", txt("_acme-challenge", "B"))
			// The resolver still holds {A, B}, fetched when B's wait
			// asked last.
			if took, err := present(t, p, "c.example.com", "C"); err != nil || took < ttl-time.Second {
				t.Errorf("value right after the name's others were removed: %v after %s, want the cache waited out", err, took)
			}
			mustDelete(t, p, "c.example.com.", txt("_acme-challenge", "C"))
			time.Sleep(ttl)
			before := world.recursiveQueries()
			if took, err := present(t, p, "d.example.com", "D"); err != nil || took != 0 || world.recursiveQueries() != before {
				t.Errorf("value a TTL after the last removal: %v after %s, %d recursive queries; want at once, with none", err, took, world.recursiveQueries()-before)
			}
			mustDelete(t, p, "d.example.com.", txt("_acme-challenge", "D"))
			if !w.empty() {
				t.Errorf("records left: %v", w.values(testStaticAlias))
			}
		})
	})
	t.Run("waits a TTL for the resolvers it cannot ask", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// The provider's resolver holds nothing and answers {A, B} at
			// once; the CA's may hold {A}.
			p, _, world := setup(t, 2*time.Minute)
			if _, err := present(t, p, "a.example.com", "A"); err != nil {
				t.Fatal(err)
			}
			took, err := present(t, p, "b.example.com", "B")
			if err != nil || world.recursiveQueries() == 0 {
				t.Fatalf("AppendRecords = %v, %d recursive queries", err, world.recursiveQueries())
			}
			if took < ttl || took > ttl+time.Second {
				t.Errorf("second value at the shared name returned after %s, want a TTL (%s) after its write", took, ttl)
			}
		})
	})
	t.Run("the TTL wait is bounded by RecursiveWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, _, _ := setup(t, 10*time.Second)
			if _, err := present(t, p, "a.example.com", "A"); err != nil {
				t.Fatal(err)
			}
			if took, err := present(t, p, "b.example.com", "B"); err != nil || took != 10*time.Second {
				t.Errorf("AppendRecords = %v after %s, want success after RecursiveWait (10s)", err, took)
			}
		})
	})
	t.Run("gives up after RecursiveWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, w, _ := setup(t, 10*time.Second)
			if _, err := present(t, p, "a.example.com", "A"); err != nil {
				t.Fatal(err)
			}
			caValidates(t, p)
			_, err := present(t, p, "b.example.com", "B")
			if err == nil || !strings.Contains(err.Error(), "still answers TXT "+testStaticAlias+" without the new value") {
				t.Fatalf("AppendRecords = %v, want the resolver named", err)
			}
			if got := w.values(testStaticAlias); len(got) != 1 || got[0] != digest("A") {
				t.Errorf("values at the alias after the failed write: %v, want only A", got)
			}
		})
	})
}

func recursiveTXT(name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(FQDN(name), dns.TypeTXT)
	m.RecursionDesired = true
	return m
}
