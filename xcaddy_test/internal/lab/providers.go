package lab

// The lab's HTTP API providers (issue 22): PowerDNS Authoritative, which
// also serves DNS, and moto's Route53 API, which serves none. lab/lab.sh
// starts both and writes where they are to lab.env; the tests read and
// write their records through the same APIs the providers use, so that a
// test sees what the provider left, not what a cache says.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// PowerDNS is the lab's pdns_server.
type PowerDNS struct {
	Addr   string // its DNS, "127.0.0.5:53"
	Zone   string // the alias zone it serves, "pdns.example"
	API    string // its HTTP API, "http://127.0.0.5:8081"
	APIKey string
	Log    string // pdns_server's output, one line per API request among it
}

// PowerDNS returns the lab's PowerDNS, as lab.env names it.
func (l *Lab) PowerDNS() (PowerDNS, error) {
	p := PowerDNS{Addr: l.Env["PDNS_ADDR"], Zone: l.Env["PDNS_ZONE"], API: l.Env["PDNS_API"], APIKey: l.Env["PDNS_API_KEY"], Log: l.Env["PDNS_LOG"]}
	if p.Addr == "" || p.Zone == "" || p.API == "" || p.APIKey == "" {
		return p, fmt.Errorf("lab: no PowerDNS in %s/lab.env (lab/lab.sh up starts pdns_server; lab/install.sh installs pdns-server)", l.Dir)
	}
	return p, nil
}

// PowerDNSKeyEnv is the environment variable that carries the API key to
// Caddy, for ProviderBlock's placeholder.
const PowerDNSKeyEnv = "PDNS_API_KEY"

// ProviderBlock is the Caddyfile block of caddy-dns/powerdns writing
// through this server's API, its key read from $PDNS_API_KEY.
func (p PowerDNS) ProviderBlock() string {
	return fmt.Sprintf(`provider powerdns {
				server_url %s
				api_token {env.%s}
			}`, p.API, PowerDNSKeyEnv)
}

// pdnsRRset is an RRset as the PowerDNS API reads and writes it.
type pdnsRRset struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	TTL        int    `json:"ttl,omitempty"`
	ChangeType string `json:"changetype,omitempty"`
	Records    []struct {
		Content  string `json:"content"`
		Disabled bool   `json:"disabled"`
	} `json:"records"`
}

func (p PowerDNS) request(ctx context.Context, method string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	url := p.API + "/api/v1/servers/localhost/zones/" + p.Zone + "."
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", p.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("lab: PowerDNS %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("lab: PowerDNS %s %s: %s: %s", method, url, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// TXT returns every TXT value in the zone by owner name (lower case, no
// trailing dot), as the API lists them.
func (p PowerDNS) TXT(ctx context.Context) (map[string][]string, error) {
	var zone struct {
		RRsets []pdnsRRset `json:"rrsets"`
	}
	if err := p.request(ctx, http.MethodGet, nil, &zone); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, rs := range zone.RRsets {
		if rs.Type != "TXT" {
			continue
		}
		name := normZone(rs.Name)
		for _, r := range rs.Records {
			out[name] = append(out[name], strings.Trim(r.Content, `"`))
		}
	}
	return out, nil
}

// SetTXT replaces the TXT set at name (absolute, without the trailing dot)
// with values, or deletes it when there are none: the tests' own writes,
// e.g. another party's value beside a challenge's.
func (p PowerDNS) SetTXT(ctx context.Context, name string, values ...string) error {
	rs := pdnsRRset{Name: name + ".", Type: "TXT", TTL: 60, ChangeType: "REPLACE"}
	if len(values) == 0 {
		rs.ChangeType = "DELETE"
	}
	for _, v := range values {
		rs.Records = append(rs.Records, struct {
			Content  string `json:"content"`
			Disabled bool   `json:"disabled"`
		}{Content: `"` + v + `"`})
	}
	return p.request(ctx, http.MethodPatch, map[string]any{"rrsets": []pdnsRRset{rs}}, nil)
}

// APIRequests counts the API requests pdns_server has logged so far (its
// webserver logs each one at webserver-loglevel=normal), for the
// benchmark's calls per certificate.
func (p PowerDNS) APIRequests() (int, error) {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	return bytes.Count(data, []byte(" /api/v1/")), nil
}

// Route53 is moto's Route53 API and the lab's hosted zone in it. moto
// serves no DNS and checks no credentials or IAM policy: what it proves is
// the API path (which calls, at which names, with which values).
type Route53 struct {
	URL    string // "http://127.0.0.1:15005"
	ZoneID string // the hosted zone's id
	Zone   string // its name, "validation.example.org"
}

// Route53 returns moto's Route53 API, or an error naming moto_server when
// the lab runs without it.
func (l *Lab) Route53() (Route53, error) {
	r := Route53{URL: l.Env["MOTO_URL"], ZoneID: l.Env["ROUTE53_ZONE_ID"], Zone: l.Env["ROUTE53_ZONE"]}
	if r.URL == "" || r.ZoneID == "" {
		return r, errors.New("lab: moto_server (Route53's API) does not run in the lab: it is Python, not in Debian; install it with pip install 'moto[server]' and run lab/lab.sh up again")
	}
	return r, nil
}

// Env is what the AWS SDK inside caddy-dns/route53 needs to reach moto:
// the endpoint variable and credentials moto takes without checking.
func (r Route53) Env() []string {
	return []string{"AWS_ENDPOINT_URL_ROUTE_53=" + r.URL, "AWS_ACCESS_KEY_ID=lab", "AWS_SECRET_ACCESS_KEY=lab", "AWS_REGION=us-east-1"}
}

// ProviderBlock is the Caddyfile block of caddy-dns/route53 for the lab's
// hosted zone (credentials and endpoint come from Env).
func (r Route53) ProviderBlock() string {
	return fmt.Sprintf(`provider route53 {
				hosted_zone_id %s
			}`, r.ZoneID)
}

func (r Route53) request(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.URL+"/2013-04-01/hostedzone/"+r.ZoneID+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	// moto picks the service by the credential scope; it checks no signature
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=lab/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0")
	req.Header.Set("Content-Type", "application/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lab: Route53 %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("lab: Route53 %s %s: %s: %s", method, path, resp.Status, data)
	}
	return data, nil
}

// TXT returns every TXT value of the hosted zone by owner name (lower
// case, no trailing dot).
func (r Route53) TXT(ctx context.Context) (map[string][]string, error) {
	data, err := r.request(ctx, http.MethodGet, "/rrset", nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Sets []struct {
			Name   string   `xml:"Name"`
			Type   string   `xml:"Type"`
			Values []string `xml:"ResourceRecords>ResourceRecord>Value"`
		} `xml:"ResourceRecordSets>ResourceRecordSet"`
	}
	if err := xml.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("lab: Route53 rrset list: %w", err)
	}
	out := map[string][]string{}
	for _, s := range list.Sets {
		if s.Type != "TXT" {
			continue
		}
		name := normZone(s.Name)
		for _, v := range s.Values {
			out[name] = append(out[name], strings.Trim(v, `"`))
		}
	}
	return out, nil
}

// ChangeTXT applies one change (UPSERT or DELETE) to the TXT set at name
// (absolute, without the trailing dot): the tests' own writes.
func (r Route53) ChangeTXT(ctx context.Context, action, name string, values ...string) error {
	var rrs strings.Builder
	for _, v := range values {
		fmt.Fprintf(&rrs, `<ResourceRecord><Value>"%s"</Value></ResourceRecord>`, v)
	}
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes><Change><Action>%s</Action><ResourceRecordSet><Name>%s.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords>%s</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>`,
		action, name, rrs.String())
	_, err := r.request(ctx, http.MethodPost, "/rrset", []byte(body))
	return err
}
