package acmednstest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func post(t *testing.T, url string, hdr map[string]string, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("answer %q is not JSON: %v", data, err)
	}
	return resp.StatusCode, out
}

func auth(a Account) map[string]string {
	return map[string]string{"X-Api-User": a.Username, "X-Api-Key": a.Password}
}

func value(c byte) string { return strings.Repeat(string(c), 43) }

func txt(t *testing.T, s *Server, name string, net string) (*dns.Msg, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.RecursionDesired = false
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.DNSAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	slices.Sort(out)
	return r, out
}

func TestRegisterUpdateTwoNewest(t *testing.T) {
	s := start(t, Config{})
	ctx := context.Background()
	a, err := s.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !validUUID(a.Username) || !validUUID(a.Subdomain) || len(a.Password) != 40 ||
		a.FullDomain != a.Subdomain+".auth.acme-dns.example" || a.AllowFrom == nil {
		t.Fatalf("registration %+v is not what acme-dns returns", a)
	}
	for i, v := range []string{value('a'), value('b'), value('c')} {
		code, body := post(t, s.URL()+"/update", auth(a), `{"subdomain":"`+a.Subdomain+`","txt":"`+v+`"}`)
		if code != http.StatusOK || body["txt"] != v {
			t.Fatalf("update %d: %d %v", i, code, body)
		}
	}
	if got := s.Values(a.Subdomain); !slices.Equal(got, []string{value('c'), value('b')}) {
		t.Fatalf("values %v, want the two newest (c, b)", got)
	}
	for _, network := range []string{"udp", "tcp"} {
		r, got := txt(t, s, strings.ToUpper(a.FullDomain), network)
		if !r.Authoritative || r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{value('b'), value('c')}) {
			t.Fatalf("%s: TXT %s: rcode %s aa=%v %v", network, a.FullDomain, dns.RcodeToString[r.Rcode], r.Authoritative, got)
		}
		if r.Answer[0].Header().Ttl != 1 {
			t.Errorf("TTL %d, acme-dns serves 1", r.Answer[0].Header().Ttl)
		}
	}
	if n := len(s.Updates()); n != 3 {
		t.Errorf("%d updates recorded, want 3", n)
	}
}

func TestUpdateRefusals(t *testing.T) {
	s := start(t, Config{})
	ctx := context.Background()
	a, _ := s.Register(ctx)
	b, _ := s.Register(ctx)
	good := `{"subdomain":"` + a.Subdomain + `","txt":"` + value('a') + `"}`
	wrongKey := a
	wrongKey.Password = strings.Repeat("x", 40)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body string
		code int
		err  string
	}{
		{"no credentials", nil, good, 401, "forbidden"},
		{"wrong key", auth(wrongKey), good, 401, "forbidden"},
		{"short key", map[string]string{"X-Api-User": a.Username, "X-Api-Key": "short"}, good, 401, "forbidden"},
		{"other account's subdomain", auth(b), good, 401, "forbidden"},
		{"42 characters", auth(a), `{"subdomain":"` + a.Subdomain + `","txt":"` + value('a')[1:] + `"}`, 400, "bad_txt"},
		{"44 characters", auth(a), `{"subdomain":"` + a.Subdomain + `","txt":"` + value('a') + `a"}`, 400, "bad_txt"},
		{"not base64url", auth(a), `{"subdomain":"` + a.Subdomain + `","txt":"` + value('a')[1:] + `="}`, 400, "bad_txt"},
	} {
		code, body := post(t, s.URL()+"/update", tc.hdr, tc.body)
		if code != tc.code || body["error"] != tc.err {
			t.Errorf("%s: %d %v, want %d %q", tc.name, code, body, tc.code, tc.err)
		}
	}
	if got := s.Values(a.Subdomain); len(got) != 0 {
		t.Errorf("refused updates changed the values: %v", got)
	}
	r, _ := txt(t, s, a.FullDomain, "udp")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) == 0 {
		t.Errorf("TXT of an account without values: want NOERROR/NODATA with SOA, got %v", r)
	}
}

func TestAllowFrom(t *testing.T) {
	s := start(t, Config{})
	ctx := context.Background()
	if code, body := post(t, s.URL()+"/register", nil, `{"allowfrom":["not-a-cidr"]}`); code != 400 || body["error"] != "invalid_allowfrom_cidr" {
		t.Errorf("bad CIDR: %d %v", code, body)
	}
	if code, body := post(t, s.URL()+"/register", nil, `{"allowfrom":`); code != 400 || body["error"] != "malformed_json_payload" {
		t.Errorf("bad JSON: %d %v", code, body)
	}
	in, err := s.Register(ctx, "127.0.0.0/8")
	if err != nil || !slices.Equal(in.AllowFrom, []string{"127.0.0.0/8"}) {
		t.Fatalf("%+v %v", in, err)
	}
	out, _ := s.Register(ctx, "192.0.2.0/24")
	if code, _ := post(t, s.URL()+"/update", auth(in), `{"subdomain":"`+in.Subdomain+`","txt":"`+value('a')+`"}`); code != 200 {
		t.Errorf("update from an allowed address: %d", code)
	}
	if code, body := post(t, s.URL()+"/update", auth(out), `{"subdomain":"`+out.Subdomain+`","txt":"`+value('a')+`"}`); code != 401 || body["error"] != "forbidden" {
		t.Errorf("update from outside allowfrom: %d %v", code, body)
	}
}

func TestDNSZone(t *testing.T) {
	s := start(t, Config{Zone: "Auth.Example."})
	q := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, err := dns.Exchange(m, s.DNSAddr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := q("auth.example.", dns.TypeSOA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Hdr.Name != "auth.example." {
		t.Errorf("SOA: %v", r)
	}
	if r := q("auth.example.", dns.TypeNS); len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "ns1.auth.example." || len(r.Extra) == 0 {
		t.Errorf("NS: %v", r)
	}
	if r := q("ns1.auth.example.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Errorf("A of the NS: %v", r)
	}
	if r := q("nobody.auth.example.", dns.TypeTXT); r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 {
		t.Errorf("unknown subdomain: %v", r)
	}
	if r := q("example.com.", dns.TypeSOA); r.Rcode != dns.RcodeRefused {
		t.Errorf("outside the zone: %v", r)
	}
}
