// Package dnsupdate is the DNS provider of the hermetic tests: RFC 2136
// updates signed with TSIG, as caddy-dns/rfc2136 sends them, registered
// under that module's ID (dns.providers.rfc2136) and with its fields
// (key_name, key, key_alg, server), so that the tests' configs and the
// docs' examples read as users write them. It keeps that module, which
// only tests would use, out of the plugin's go.mod. Import it from tests
// only, and never into a binary that links caddy-dns/rfc2136 (the lab's
// Caddy has the real one).
package dnsupdate

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

func init() {
	caddy.RegisterModule(Provider{})
}

// Provider sends each append and delete as one signed UPDATE over TCP.
type Provider struct {
	KeyName string `json:"key_name,omitempty"`
	KeyAlg  string `json:"key_alg,omitempty"`
	Key     string `json:"key,omitempty"`
	Server  string `json:"server,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dns.providers.rfc2136",
		New: func() caddy.Module { return new(Provider) },
	}
}

// UnmarshalCaddyfile reads caddy-dns/rfc2136's block: key_name, key,
// key_alg and server, one argument each, all required.
func (p *Provider) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var dst *string
		switch d.Val() {
		case "key_name":
			dst = &p.KeyName
		case "key":
			dst = &p.Key
		case "key_alg":
			dst = &p.KeyAlg
		case "server":
			dst = &p.Server
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	for field, v := range map[string]string{"key": p.Key, "key_name": p.KeyName, "key_alg": p.KeyAlg, "server": p.Server} {
		if v == "" {
			return d.Errf("rfc2136: missing %s", field)
		}
	}
	return nil
}

// Provision expands placeholders ({env.*}) in the fields.
func (p *Provider) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	for _, f := range []*string{&p.KeyName, &p.Key, &p.KeyAlg, &p.Server} {
		*f = repl.ReplaceAll(*f, "")
	}
	return nil
}

// AppendRecords adds records to zone.
func (p *Provider) AppendRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	zone = dns.Fqdn(zone)
	msg := new(dns.Msg)
	msg.SetUpdate(zone)
	for _, rec := range records {
		rr, err := toRR(rec.RR(), zone)
		if err != nil {
			return nil, err
		}
		msg.Insert([]dns.RR{rr})
	}
	return records, p.send(ctx, zone, msg)
}

// DeleteRecords removes records from zone, as libdns/rfc2136 does: a
// record with a value exactly that value, one without a value its name's
// records of its type, one without a type every record at its name.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	zone = dns.Fqdn(zone)
	msg := new(dns.Msg)
	msg.SetUpdate(zone)
	for _, rec := range records {
		rr := rec.RR()
		name := libdns.AbsoluteName(rr.Name, zone)
		switch {
		case rr.Type == "":
			msg.RemoveName([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: name}}})
		case rr.Data == "":
			msg.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: dns.StringToType[rr.Type]}}})
		default:
			parsed, err := toRR(rr, zone)
			if err != nil {
				return nil, err
			}
			msg.Remove([]dns.RR{parsed})
		}
	}
	return records, p.send(ctx, zone, msg)
}

// toRR parses a libdns record of zone.
func toRR(rr libdns.RR, zone string) (dns.RR, error) {
	parsed, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", libdns.AbsoluteName(rr.Name, zone), int(rr.TTL.Seconds()), rr.Type, quoted(rr)))
	if err != nil {
		return nil, fmt.Errorf("record %s in zone %s: %w", rr.Name, zone, err)
	}
	return parsed, nil
}

// send signs msg, an UPDATE of zone, and sends it over TCP.
func (p *Provider) send(ctx context.Context, zone string, msg *dns.Msg) error {
	keyName := dns.Fqdn(p.KeyName)
	msg.SetTsig(keyName, dns.Fqdn(p.KeyAlg), 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{keyName: p.Key}}
	resp, _, err := c.ExchangeContext(ctx, msg, p.Server)
	if err != nil {
		return fmt.Errorf("updating zone %s at %s: %w", zone, p.Server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("updating zone %s at %s: dns response error code %q (%d)", zone, p.Server, dns.RcodeToString[resp.Rcode], resp.Rcode)
	}
	return nil
}

// quoted is the record's data in zone-file form: a TXT value quoted.
func quoted(rr libdns.RR) string {
	if rr.Type == "TXT" {
		return fmt.Sprintf("%q", rr.Data)
	}
	return rr.Data
}

// Interface guards.
var (
	_ caddy.Provisioner     = (*Provider)(nil)
	_ caddyfile.Unmarshaler = (*Provider)(nil)
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
)
