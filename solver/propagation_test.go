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
				err = r.WaitServed(ctx, "validation.example.org", "_acme-challenge.example.com.validation.example.org", "token-value")
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("WaitServed: %v", err)
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
