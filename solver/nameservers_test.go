package solver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// TestNameserverFanOut: the drift check of a zone with 120 NS records,
// each with three addresses shared with its neighbour, asks at most
// MaxNameservers × MaxNameserverAddrs servers directly, each address once,
// looks up the addresses of MaxNameservers names only, and says in a note
// which servers it left out. Addresses that are not global unicast are
// asked only with PrivateNameservers.
func TestNameserverFanOut(t *testing.T) {
	tests := []struct {
		name       string
		addr       func(i int) []string
		private    bool
		wantDirect int // direct queries, at most
		wantNote   []string
	}{
		{
			name:       "120 public nameservers",
			addr:       func(i int) []string { return []string{ip4(i), ip4(i + 1), ip4(i + 2)} },
			wantDirect: MaxNameservers * MaxNameserverAddrs,
			wantNote:   []string{"107 nameserver(s) of example.com (ns013.example.com, ns014.example.com, ns015.example.com, ...) not asked: only the first 13 of the 120 nameservers (by name) are asked"},
		},
		{
			name:       "loopback and private addresses skipped",
			addr:       func(i int) []string { return []string{fmt.Sprintf("127.0.%d.2", i), fmt.Sprintf("10.0.%d.1", i)} },
			wantDirect: 0,
			wantNote: []string{
				"13 nameserver(s) of example.com (ns000.example.com, ns001.example.com, ns002.example.com, ...) not asked: its addresses are not global unicast (loopback, private or link-local; private_nameservers allows them)",
				"107 nameserver(s) of example.com (ns013.example.com, ns014.example.com, ns015.example.com, ...) not asked: only the first 13 of the 120 nameservers (by name) are asked",
			},
		},
		{
			name:       "private_nameservers asks them",
			addr:       func(i int) []string { return []string{fmt.Sprintf("127.0.%d.2", i), fmt.Sprintf("10.0.%d.1", i)} },
			private:    true,
			wantDirect: MaxNameservers * MaxNameserverAddrs,
			wantNote:   []string{"107 nameserver(s) of example.com (ns013.example.com, ns014.example.com, ns015.example.com, ...) not asked: only the first 13 of the 120 nameservers (by name) are asked"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, r := newCheckDNS(t)
			r.PrivateNameservers = tt.private
			d.ns["example.com"] = nil
			for i := range 120 {
				host := fmt.Sprintf("ns%03d.example.com", i)
				d.ns["example.com"] = append(d.ns["example.com"], host)
				d.addr[host] = tt.addr(i)
				for _, a := range tt.addr(i) {
					d.auth[a+":53"] = &fakeAuth{data: d.rec}
				}
			}
			var mu sync.Mutex
			direct := map[string]int{}
			r.exchange = func(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
				if server != testResolver {
					mu.Lock()
					direct[server]++
					mu.Unlock()
				}
				return d.exchange(ctx, req, server)
			}
			c := &Checker{Mapper: &Mapper{Resolver: r, Default: templateRule(t)}}
			_, rep := c.Check(context.Background(), "shop.example.com")
			n := 0
			for server, k := range direct {
				n += k
				if k > 1 {
					t.Errorf("%s asked %d times", server, k)
				}
			}
			if n > tt.wantDirect || (tt.wantDirect > 0 && n == 0) {
				t.Errorf("%d direct queries, want at most %d", n, tt.wantDirect)
			}
			if lookups := d.asked[dns.TypeA] + d.asked[dns.TypeAAAA]; lookups > 2*MaxNameservers {
				t.Errorf("%d address lookups, want at most %d", lookups, 2*MaxNameservers)
			}
			var notes []string
			for _, f := range rep.Findings {
				if f.Code == CodeNSNotAsked {
					if f.Fatal {
						t.Errorf("a nameserver left out fails the check: %s", f.Message)
					}
					notes = append(notes, f.Message)
				}
			}
			if strings.Join(notes, "\n") != strings.Join(tt.wantNote, "\n") {
				t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(notes, "\n"), strings.Join(tt.wantNote, "\n"))
			}
		})
	}
}

// TestWaitServedNeedsAskableServer: a zone whose nameservers are all on
// non-global addresses cannot be waited on without private_nameservers:
// the wait fails at once, saying why, rather than calling the record
// served.
func TestWaitServedNeedsAskableServer(t *testing.T) {
	d, r := newCheckDNS(t)
	d.addr["ns1.example.com"] = []string{"127.0.0.2"}
	_, err := r.Authorities().WaitServed(context.Background(), "example.com", "_acme-challenge.example.com", "x")
	if err == nil || !strings.Contains(err.Error(), "no nameserver of example.com can be asked") || !strings.Contains(err.Error(), "private_nameservers") {
		t.Fatalf("WaitServed = %v, want a refusal naming private_nameservers", err)
	}
}

func ip4(i int) string { return fmt.Sprintf("198.51.%d.%d", i/200, i%200+1) }
