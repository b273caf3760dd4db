package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Servers returns the authoritative servers ("ip:53") that serve zone as
// primaries: one for most zones, both for drift.example.
func (l *Lab) Servers(zone string) ([]string, error) {
	z := normZone(zone)
	var out []string
	for _, s := range []struct {
		addr  string
		zones []string
	}{{l.AuthA, l.ZonesA}, {l.AuthB, l.ZonesB}} {
		for _, c := range s.zones {
			if c == z {
				out = append(out, s.addr)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lab: zone %q is not served by the lab", zone)
	}
	return out, nil
}

// Primary returns the first server of zone (AuthA for drift.example).
func (l *Lab) Primary(zone string) (string, error) {
	s, err := l.Servers(zone)
	if err != nil {
		return "", err
	}
	return s[0], nil
}

// ParseRRs parses zone-file text (one or more records) with origin zone and
// a default TTL of 60, so "_acme-challenge CNAME x.validation.example.org."
// works as well as fully qualified records.
func ParseRRs(zone, text string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(zone), "")
	zp.SetDefaultTTL(60)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("lab: parse %q: %w", text, err)
	}
	if len(rrs) == 0 {
		return nil, fmt.Errorf("lab: no record in %q", text)
	}
	return rrs, nil
}

// Publish adds the records in rr (zone-file syntax, see ParseRRs) to zone on
// every server that serves it (both for drift.example, keeping them in step),
// signed with the lab-admin key.
func (l *Lab) Publish(ctx context.Context, zone, rr string) error {
	return l.eachServer(zone, func(s string) error { return l.PublishAt(ctx, s, zone, rr) })
}

// Remove deletes the records in rr (exact rdata) from zone on every server
// that serves it.
func (l *Lab) Remove(ctx context.Context, zone, rr string) error {
	return l.eachServer(zone, func(s string) error { return l.RemoveAt(ctx, s, zone, rr) })
}

// RemoveRRset deletes every record of type qtype at name from zone on every
// server that serves it.
func (l *Lab) RemoveRRset(ctx context.Context, zone, name string, qtype uint16) error {
	return l.eachServer(zone, func(s string) error { return l.RemoveRRsetAt(ctx, s, zone, name, qtype) })
}

// PublishAt adds records to zone on one server only (to stage drift between
// the two primaries of drift.example).
func (l *Lab) PublishAt(ctx context.Context, server, zone, rr string) error {
	rrs, err := ParseRRs(zone, rr)
	if err != nil {
		return err
	}
	return l.Update(ctx, server, zone, rrs, nil)
}

// RemoveAt deletes records from zone on one server only.
func (l *Lab) RemoveAt(ctx context.Context, server, zone, rr string) error {
	rrs, err := ParseRRs(zone, rr)
	if err != nil {
		return err
	}
	return l.Update(ctx, server, zone, nil, rrs)
}

// RemoveRRsetAt deletes the RRset (name, qtype) from zone on one server.
func (l *Lab) RemoveRRsetAt(ctx context.Context, server, zone, name string, qtype uint16) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: absName(name, zone), Rrtype: qtype, Class: dns.ClassINET}}})
	_, err := l.SendUpdate(ctx, server, l.AdminKey, m)
	return err
}

// Update sends one RFC 2136 update for zone to server, signed with the
// lab-admin key: the records in remove are deleted (exact rdata), then the
// records in insert are added.
func (l *Lab) Update(ctx context.Context, server, zone string, insert, remove []dns.RR) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	if len(remove) > 0 {
		m.Remove(remove)
	}
	if len(insert) > 0 {
		m.Insert(insert)
	}
	_, err := l.SendUpdate(ctx, server, l.AdminKey, m)
	return err
}

// SendUpdate signs m with key, sends it to server over TCP and returns the
// answer; an answer whose rcode is not NOERROR is returned with an error
// naming the rcode (REFUSED for a key that may not write there).
func (l *Lab) SendUpdate(ctx context.Context, server string, key Key, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if key.Name != "" {
		alg := key.Alg
		if alg == "" {
			alg = dns.HmacSHA256
		}
		c.TsigSecret = map[string]string{dns.Fqdn(key.Name): key.Secret}
		m.SetTsig(dns.Fqdn(key.Name), dns.Fqdn(alg), 300, time.Now().Unix())
	}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return r, fmt.Errorf("lab: update %s at %s: %w", zoneOf(m), server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return r, fmt.Errorf("lab: update %s at %s: %s", zoneOf(m), server, dns.RcodeToString[r.Rcode])
	}
	return r, nil
}

func zoneOf(m *dns.Msg) string {
	if len(m.Question) > 0 {
		return m.Question[0].Name
	}
	return "?"
}

func (l *Lab) eachServer(zone string, f func(server string) error) error {
	servers, err := l.Servers(zone)
	if err != nil {
		return err
	}
	for _, s := range servers {
		if err := f(s); err != nil {
			return err
		}
	}
	return nil
}

func absName(name, zone string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	if name == "" || name == "@" {
		return dns.Fqdn(zone)
	}
	return name + "." + dns.Fqdn(zone)
}

// Query asks server (an authoritative server, "ip:port") for name/qtype
// without recursion, over UDP and again over TCP when truncated.
func (l *Lab) Query(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	return exchange(ctx, server, name, qtype, false)
}

// Resolve asks the lab's resolver (Unbound) for name/qtype with recursion.
func (l *Lab) Resolve(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	return exchange(ctx, l.Resolver, name, qtype, true)
}

func exchange(ctx context.Context, server, name string, qtype uint16, rd bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = rd
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: query %s %s at %s: %w", name, dns.TypeToString[qtype], server, err)
	}
	return r, nil
}

// AXFR transfers zone from server (the lab allows transfers from 127.0.0.0/8
// without a key). An empty server means the zone's primary.
func (l *Lab) AXFR(ctx context.Context, server, zone string) ([]dns.RR, error) {
	if server == "" {
		var err error
		if server, err = l.Primary(zone); err != nil {
			return nil, err
		}
	}
	tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(zone))
	type result struct {
		rrs []dns.RR
		err error
	}
	done := make(chan result, 1)
	go func() {
		ch, err := tr.In(m, server)
		if err != nil {
			done <- result{nil, err}
			return
		}
		var rrs []dns.RR
		for env := range ch {
			if env.Error != nil {
				done <- result{nil, env.Error}
				return
			}
			rrs = append(rrs, env.RR...)
		}
		done <- result{rrs, nil}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("lab: AXFR %s from %s: %w", zone, server, r.err)
		}
		// drop the closing SOA
		if n := len(r.rrs); n > 1 && r.rrs[n-1].Header().Rrtype == dns.TypeSOA {
			r.rrs = r.rrs[:n-1]
		}
		return r.rrs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TXTRecords returns every TXT record in zone as held by server (by AXFR),
// for "no record left behind" assertions. An empty server means the
// zone's primary.
func (l *Lab) TXTRecords(ctx context.Context, server, zone string) ([]*dns.TXT, error) {
	rrs, err := l.AXFR(ctx, server, zone)
	if err != nil {
		return nil, err
	}
	var out []*dns.TXT
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// Serial returns the SOA serial of zone at server (empty: the primary).
func (l *Lab) Serial(ctx context.Context, server, zone string) (uint32, error) {
	if server == "" {
		var err error
		if server, err = l.Primary(zone); err != nil {
			return 0, err
		}
	}
	r, err := l.Query(ctx, server, zone, dns.TypeSOA)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("lab: SOA %s at %s: %s", zone, server, dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("lab: no SOA for %s at %s", zone, server)
}

// FlushResolver drops everything Unbound has cached at and below name
// (unbound-control flush_zone), and its infrastructure cache. Records live
// at most 5 s in its cache anyway (cache-max-ttl 5, negative 1).
func (l *Lab) FlushResolver(ctx context.Context, name string) error {
	for _, args := range [][]string{{"flush_zone", dns.Fqdn(name)}, {"flush_infra", "all"}} {
		cmd := exec.CommandContext(ctx, "unbound-control", append([]string{"-c", l.UnboundConf}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: unbound-control %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Healthy checks that both authoritative servers, Unbound, Redis and Pebble
// answer.
func (l *Lab) Healthy(ctx context.Context) error {
	for _, c := range []struct{ server, zone string }{{l.AuthA, "example.com"}, {l.AuthB, l.AliasZone2}} {
		r, err := l.Query(ctx, c.server, c.zone, dns.TypeSOA)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			return fmt.Errorf("lab: %s answers SOA %s with %s", c.server, c.zone, dns.RcodeToString[r.Rcode])
		}
	}
	r, err := l.Resolve(ctx, l.AliasZone, dns.TypeSOA)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("lab: resolver answers SOA %s with %s", l.AliasZone, dns.RcodeToString[r.Rcode])
	}
	if pong, err := l.Redis(ctx, "PING"); err != nil || pong != "PONG" {
		return fmt.Errorf("lab: redis answers PING with %v (%v)", pong, err)
	}
	hc, err := l.PebbleHTTPClient()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.PebbleDir, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("lab: pebble: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lab: pebble directory: %s", resp.Status)
	}
	return nil
}

// PebbleHTTPClient returns an HTTP client that trusts Pebble's HTTPS
// certificate (PebbleCAPEM).
func (l *Lab) PebbleHTTPClient() (*http.Client, error) {
	pem, err := os.ReadFile(l.PebbleCAPEM)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("lab: no certificate in %s", l.PebbleCAPEM)
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			Proxy:           nil,
		},
	}, nil
}
