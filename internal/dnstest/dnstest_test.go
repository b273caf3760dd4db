package dnstest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
	"github.com/acme-alias/caddy-dns-alias/internal/dnsupdate"
)

func start(t *testing.T) *dnstest.Server {
	return dnstest.Start(t,
		dnstest.Zone{Name: "example.com", Records: `
_acme-challenge   CNAME x.hop.example.
www               A     192.0.2.1
*.wild            CNAME target.validation.example.org.
sub.deep          A     192.0.2.2
`},
		dnstest.Zone{Name: "hop.example.", Records: `x CNAME _acme-challenge.example.com.validation.example.org.`},
		dnstest.Zone{Name: "loop.example", Records: "a CNAME b\nb CNAME a"},
		dnstest.Zone{Name: "validation.example.org", Updatable: true, Records: `_acme-challenge.example.com 30 TXT "v1"`},
	)
}

func ask(t *testing.T, srv *dnstest.Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	resp, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, srv.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return resp
}

// section renders RRs as "owner TYPE data" without TTL and class.
func section(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		data := strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String()))
		out = append(out, fmt.Sprintf("%s %s %s", h.Name, dns.TypeToString[h.Rrtype], data))
	}
	return out
}

func TestQuery(t *testing.T) {
	srv := start(t)
	const soaCom = "example.com. SOA ns.dnstest. hostmaster.dnstest. 1 1 1 1 1"
	const soaVal = "validation.example.org. SOA ns.dnstest. hostmaster.dnstest. 1 1 1 1 1"
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		net    string
		rcode  int
		answer []string
		ns     []string
	}{
		{"TXT chases a two-hop chain", "_acme-challenge.example.com.", dns.TypeTXT, "udp", dns.RcodeSuccess, []string{
			"_acme-challenge.example.com. CNAME x.hop.example.",
			"x.hop.example. CNAME _acme-challenge.example.com.validation.example.org.",
			`_acme-challenge.example.com.validation.example.org. TXT "v1"`,
		}, nil},
		{"same over TCP", "_acme-challenge.example.com.", dns.TypeTXT, "tcp", dns.RcodeSuccess, []string{
			"_acme-challenge.example.com. CNAME x.hop.example.",
			"x.hop.example. CNAME _acme-challenge.example.com.validation.example.org.",
			`_acme-challenge.example.com.validation.example.org. TXT "v1"`,
		}, nil},
		{"owner echoes the question's case", "_ACME-Challenge.Example.COM.", dns.TypeCNAME, "udp", dns.RcodeSuccess, []string{
			"_ACME-Challenge.Example.COM. CNAME x.hop.example.",
		}, nil},
		{"CNAME query gets just the CNAME", "_acme-challenge.example.com.", dns.TypeCNAME, "udp", dns.RcodeSuccess, []string{
			"_acme-challenge.example.com. CNAME x.hop.example.",
		}, nil},
		{"SOA at a CNAME chases to NODATA", "_acme-challenge.example.com.", dns.TypeSOA, "udp", dns.RcodeSuccess, []string{
			"_acme-challenge.example.com. CNAME x.hop.example.",
			"x.hop.example. CNAME _acme-challenge.example.com.validation.example.org.",
		}, []string{soaVal}},
		{"SOA at the apex", "example.com.", dns.TypeSOA, "udp", dns.RcodeSuccess, []string{soaCom}, nil},
		{"NXDOMAIN", "missing.example.com.", dns.TypeTXT, "udp", dns.RcodeNameError, nil, []string{soaCom}},
		{"NODATA", "www.example.com.", dns.TypeTXT, "udp", dns.RcodeSuccess, nil, []string{soaCom}},
		{"empty non-terminal is NODATA", "deep.example.com.", dns.TypeA, "udp", dns.RcodeSuccess, nil, []string{soaCom}},
		{"wildcard synthesises a CNAME", "_acme-challenge.wild.example.com.", dns.TypeCNAME, "udp", dns.RcodeSuccess, []string{
			"_acme-challenge.wild.example.com. CNAME target.validation.example.org.",
		}, nil},
		{"chain into NXDOMAIN", "x.wild.example.com.", dns.TypeTXT, "udp", dns.RcodeNameError, []string{
			"x.wild.example.com. CNAME target.validation.example.org.",
		}, []string{soaVal}},
		{"loop is SERVFAIL", "a.loop.example.", dns.TypeTXT, "udp", dns.RcodeServerFailure, []string{
			"a.loop.example. CNAME b.loop.example.",
			"b.loop.example. CNAME a.loop.example.",
		}, nil},
		{"outside every zone", "example.net.", dns.TypeSOA, "udp", dns.RcodeNameError, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := ask(t, srv, tc.net, tc.qname, tc.qtype)
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if !resp.RecursionAvailable {
				t.Error("RA not set")
			}
			if got := section(resp.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("answer\n got %q\nwant %q", got, tc.answer)
			}
			if got := section(resp.Ns); !slices.Equal(got, tc.ns) {
				t.Errorf("authority\n got %q\nwant %q", got, tc.ns)
			}
			for _, rr := range resp.Ns {
				if rr.Header().Ttl != 1 {
					t.Errorf("negative TTL %d, want 1: %s", rr.Header().Ttl, rr)
				}
			}
		})
	}
	if got, want := len(srv.Queries()), len(tests); got != want {
		t.Errorf("%d queries logged, want %d", got, want)
	}
	if q := srv.Queries()[1]; q != (dnstest.Query{Name: "_acme-challenge.example.com", Type: "TXT", Net: "tcp"}) {
		t.Errorf("second query logged as %+v", q)
	}
}

func TestAddRemove(t *testing.T) {
	srv := start(t)
	srv.Add(`_acme-challenge.example.com.validation.example.org TXT "v2"`, "new.example.com. 5 IN A 192.0.2.9")
	if got, want := srv.TXTValues("_acme-challenge.example.com.validation.example.org."), []string{"v1", "v2"}; !slices.Equal(got, want) {
		t.Errorf("TXT values %q, want %q", got, want)
	}
	if got := section(ask(t, srv, "udp", "new.example.com.", dns.TypeA).Answer); !slices.Equal(got, []string{"new.example.com. A 192.0.2.9"}) {
		t.Errorf("added A record answered as %q", got)
	}
	srv.Remove(`_acme-challenge.example.com.validation.example.org. 30 IN TXT "v1"`, "new.example.com A 192.0.2.9")
	if got, want := srv.TXT("validation.example.org"), []dnstest.TXT{{Name: "_acme-challenge.example.com.validation.example.org", Value: "v2", TTL: dnstest.DefaultTTL}}; !slices.Equal(got, want) {
		t.Errorf("TXT %+v, want %+v", got, want)
	}
	if resp := ask(t, srv, "udp", "new.example.com.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("removed name answered %s", dns.RcodeToString[resp.Rcode])
	}
	// The SOA serial counts the changes (2 adds, 2 removes).
	if got := section(ask(t, srv, "udp", "example.com.", dns.TypeSOA).Answer); !slices.Equal(got, []string{"example.com. SOA ns.dnstest. hostmaster.dnstest. 3 1 1 1 1"}) {
		t.Errorf("SOA after two changes: %q", got)
	}
}

func provider(srv *dnstest.Server) *dnsupdate.Provider {
	k := srv.Key()
	return &dnsupdate.Provider{KeyName: k.Name, Key: k.Secret, KeyAlg: dnstest.KeyAlgorithm, Server: srv.Addr()}
}

func TestUpdateWithRFC2136Provider(t *testing.T) {
	srv := start(t)
	p := provider(srv)
	ctx := context.Background()
	const zone = "validation.example.org."
	mustDo := func(_ []libdns.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.shared", TTL: 10 * time.Second, Text: "a"}}))
	mustDo(p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.shared", Text: "b"}}))
	mustDo(p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.shared", Text: "a"}}))
	if got := srv.TXTValues("_acme-challenge.shared.validation.example.org"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after deleting one exact value: %q, want [b]", got)
	}
	resp := ask(t, srv, "udp", "_acme-challenge.shared.validation.example.org.", dns.TypeTXT)
	if got := section(resp.Answer); !slices.Equal(got, []string{`_acme-challenge.shared.validation.example.org. TXT "b"`}) {
		t.Errorf("served %q", got)
	}
	mustDo(p.AppendRecords(ctx, zone, []libdns.Record{
		libdns.TXT{Name: "set", Text: "1"}, libdns.TXT{Name: "set", Text: "2"},
		libdns.TXT{Name: "name", Text: "3"}, libdns.RR{Name: "name", Type: "A", Data: "192.0.2.3"},
	}))
	mustDo(p.DeleteRecords(ctx, zone, []libdns.Record{libdns.RR{Name: "set", Type: "TXT"}, libdns.RR{Name: "name"}}))
	want := []dnstest.TXT{
		{Name: "_acme-challenge.example.com.validation.example.org", Value: "v1", TTL: 30},
		{Name: "_acme-challenge.shared.validation.example.org", Value: "b", TTL: 0},
	}
	if got := srv.TXT(zone); !slices.Equal(got, want) {
		t.Errorf("zone TXT\n got %+v\nwant %+v", got, want)
	}
	if got := srv.Records(zone); len(got) != 4 { // SOA, NS and the two TXT
		t.Errorf("zone holds %q", got)
	}

	var got []string
	for _, u := range srv.Updates() {
		if !u.Accepted() || u.Zone != "validation.example.org" || u.Key != srv.Key().Name {
			t.Errorf("unexpected update %v", u)
		}
		got = append(got, fmt.Sprintf("%d %s %s %s %s %d", u.Msg, u.Op, u.Name, u.Type, u.Value, u.TTL))
	}
	wantLog := []string{
		"1 add _acme-challenge.shared.validation.example.org TXT a 10",
		"2 add _acme-challenge.shared.validation.example.org TXT b 0",
		"3 delete _acme-challenge.shared.validation.example.org TXT a 0",
		"4 add set.validation.example.org TXT 1 0",
		"4 add set.validation.example.org TXT 2 0",
		"4 add name.validation.example.org TXT 3 0",
		"4 add name.validation.example.org A 192.0.2.3 0",
		"5 delete-rrset set.validation.example.org TXT  0",
		"5 delete-name name.validation.example.org ANY  0",
	}
	if !slices.Equal(got, wantLog) {
		t.Errorf("update log\n got %q\nwant %q", got, wantLog)
	}
}

// signedExchange sends m over TCP, signed with key unless key is nil.
func signedExchange(t *testing.T, srv *dnstest.Server, m *dns.Msg, key *dnstest.TSIGKey) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if key != nil {
		c.TsigSecret = map[string]string{key.Name: key.Secret}
		m.SetTsig(key.Name, dns.HmacSHA256, 300, time.Now().Unix())
	}
	resp, _, err := c.Exchange(m, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestUpdateRefused(t *testing.T) {
	txt := func(s string) dns.RR {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	good := func(srv *dnstest.Server) *dnstest.TSIGKey { k := srv.Key(); return &k }
	tests := []struct {
		name  string
		zone  string
		key   func(*dnstest.Server) *dnstest.TSIGKey
		build func(m *dns.Msg)
		rcode int
	}{
		{"production zone is not updatable", "example.com.", good, func(m *dns.Msg) {
			m.Insert([]dns.RR{txt(`_acme-challenge.example.com. 60 IN TXT "x"`)})
		}, dns.RcodeRefused},
		{"unknown zone", "other.test.", good, func(m *dns.Msg) {
			m.Insert([]dns.RR{txt(`_acme-challenge.other.test. 60 IN TXT "x"`)})
		}, dns.RcodeNotAuth},
		{"unsigned", "validation.example.org.", func(*dnstest.Server) *dnstest.TSIGKey { return nil }, func(m *dns.Msg) {
			m.Insert([]dns.RR{txt(`x.validation.example.org. 60 IN TXT "x"`)})
		}, dns.RcodeRefused},
		{"wrong secret", "validation.example.org.", func(srv *dnstest.Server) *dnstest.TSIGKey {
			k := srv.Key()
			k.Secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
			return &k
		}, func(m *dns.Msg) {
			m.Insert([]dns.RR{txt(`x.validation.example.org. 60 IN TXT "x"`)})
		}, dns.RcodeNotAuth},
		{"name outside the zone", "validation.example.org.", good, func(m *dns.Msg) {
			m.Insert([]dns.RR{txt(`x.validation.example.org. 60 IN TXT "x"`), txt(`_acme-challenge.example.com. 60 IN TXT "x"`)})
		}, dns.RcodeNotZone},
		{"prerequisite RRset exists fails", "validation.example.org.", good, func(m *dns.Msg) {
			m.RRsetUsed([]dns.RR{txt(`missing.validation.example.org. 0 IN TXT "x"`)})
			m.Insert([]dns.RR{txt(`x.validation.example.org. 60 IN TXT "x"`)})
		}, dns.RcodeNXRrset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t)
			before := map[string][]string{}
			for _, z := range []string{"example.com", "validation.example.org"} {
				before[z] = srv.Records(z)
			}
			m := new(dns.Msg)
			m.SetUpdate(tc.zone)
			tc.build(m)
			resp := signedExchange(t, srv, m, tc.key(srv))
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			for z, want := range before {
				if got := srv.Records(z); !slices.Equal(got, want) {
					t.Errorf("zone %s changed:\n got %q\nwant %q", z, got, want)
				}
			}
			log := srv.Updates()
			if len(log) == 0 {
				t.Fatal("update not logged")
			}
			for _, u := range log {
				if u.Accepted() || u.Rcode != tc.rcode || u.Zone != strings.TrimSuffix(tc.zone, ".") || u.Op != dnstest.OpAdd {
					t.Errorf("logged as %v", u)
				}
			}
		})
	}

	t.Run("through an RFC 2136 client", func(t *testing.T) {
		srv := start(t)
		p := provider(srv)
		_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "x"}})
		if err == nil || !strings.Contains(err.Error(), "REFUSED") {
			t.Errorf("append in a production zone: err = %v, want REFUSED", err)
		}
		p.Key = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
		_, err = p.AppendRecords(context.Background(), "validation.example.org.", []libdns.Record{libdns.TXT{Name: "x", Text: "x"}})
		if err == nil || !strings.Contains(err.Error(), "NOTAUTH") {
			t.Errorf("append with a wrong key: err = %v, want NOTAUTH", err)
		}
		if got := srv.TXT("example.com"); len(got) != 0 {
			t.Errorf("production zone got TXT %+v", got)
		}
	})
}

func TestConcurrentUpdates(t *testing.T) {
	srv := start(t)
	p := provider(srv)
	const zone = "validation.example.org."
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Go(func() {
			keep := libdns.TXT{Name: "_acme-challenge", Text: fmt.Sprintf("keep-%d", i)}
			drop := libdns.TXT{Name: "_acme-challenge", Text: fmt.Sprintf("drop-%d", i)}
			if _, err := p.AppendRecords(context.Background(), zone, []libdns.Record{keep, drop}); err != nil {
				errs <- err
				return
			}
			m := new(dns.Msg)
			m.SetQuestion("_acme-challenge.validation.example.org.", dns.TypeTXT)
			if _, _, err := new(dns.Client).Exchange(m, srv.Addr()); err != nil {
				errs <- err
			}
			if _, err := p.DeleteRecords(context.Background(), zone, []libdns.Record{drop}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("keep-%d", i))
	}
	if got := srv.TXTValues("_acme-challenge.validation.example.org"); !slices.Equal(got, want) {
		t.Errorf("TXT values %q, want %q", got, want)
	}
	if got := len(srv.Updates()); got != 3*n {
		t.Errorf("%d update RRs logged, want %d", got, 3*n)
	}
}
