package alias

import (
	"context"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzProvision decodes fuzzed JSON as Caddy decodes a dns.providers.alias
// module and provisions it: no input panics, and an input that provisions
// yields a provider with a mapping. The seeds cover the shapes the
// validation tests refuse; go test runs them.
func FuzzProvision(f *testing.F) {
	const inner = `"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"}`
	for _, s := range []string{
		`{` + inner + `,"alias":"_acme-challenge.validation.example.org"}`,
		`{` + inner + `,"alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"],"resolvers":["127.0.0.1:53"],"max_hops":3}`,
		`{` + inner + `,"follow":true,"zones":["validation.example.org"],"caa_identities":["letsencrypt.org"]}`,
		`{"rules":[{"match":["example.com","*.example.net"],"alias":"x.validation.example.org",` + inner + `}]}`,
		`{` + inner + `,"alias":"a.validation.example.org","rules":[null]}`,
		`{"rules":[{}]}`,
		`{"rules":null}`,
		`{"acme_dns":{"server":"https://auth.acme-dns.io","username":"u","password":"p","subdomain":"s","fulldomain":"s.auth.acme-dns.io"}}`,
		`{"acme_dns":{}}`,
		`{"acme_dns":null,"provider":null}`,
		`{"provider":{"name":"alias","provider":{"name":"alias"}}}`,
		`{"provider":{}}`,
		`{"provider":{"name":""}}`,
		`{"rules":[{"match":["example.com"],"acme_dns":{},"provider":{"name":"rfc2136"}}]}`,
		`{` + inner + `,"alias":"x.validation.example.org","authoritative_wait":-1,"sweep_after":1,"sweep_interval":-5}`,
		`{` + inner + `,"alias":"x.validation.example.org..","resolvers":["1.2.3.4:"]}`,
		`{` + inner + `,"alias":"{domain}{domain_hash}.x"}`,
		`{` + inner + `,"alias":"_acme-challenge.{domain}.co.uk"}`,
		`{` + inner + `,"alias":"x.validation.example.org","authoritative_wait":1,"resolvers":["224.0.0.1","255.255.255.255","[ff02::1]:53","0.0.0.0"]}`,
		`{"provider":{"name":"rfc2136","key_name":"k","key":"{env.FUZZ_UNSET}","key_alg":"hmac-sha256","server":"127.0.0.1:53"},"alias":"x.validation.example.org"}`,
		`{}`, `null`, `[]`, `{"alias":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Provider
		if caddy.StrictUnmarshalJSON(data, &p) != nil {
			return
		}
		provisionFuzzed(t, &p, data)
	})
}

// provisionFuzzed provisions a provider decoded from fuzzed input: an error
// is fine, a provider without a mapping is not.
func provisionFuzzed(t *testing.T, p *Provider, input []byte) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: withApp(context.Background(), newApp())})
	defer cancel()
	if err := p.Provision(ctx); err != nil {
		return
	}
	if p.writer == nil || p.writer.Mapper == nil || p.writer.Mapper.Default == nil && len(p.writer.Mapper.Rules) == 0 {
		t.Fatalf("%q provisioned without a mapping", input)
	}
}

// FuzzCaddyfile parses a fuzzed `dns alias` block as the Caddyfile adapter
// does, and provisions what it makes: no input panics, and a block that
// provisions yields a provider with a mapping.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"alias _acme-challenge.validation.example.org {\n" + rfc2136Block + "\n}",
		"alias _acme-challenge.{domain}.validation.example.org {\n" + rfc2136Block + "\nzone validation.example.org\nresolvers 127.0.0.1\nauthoritative_wait 1ns\n}",
		"alias {\nfollow\nzones validation.example.org\n" + rfc2136Block + "\nrule *.example.com {\nalias x.validation.example.org\n}\n}",
		"alias {\nacme_dns {\nserver http://auth.acme-dns.io\nusername u\npassword p\nsubdomain s\nfulldomain s.auth.acme-dns.io\n}\n}",
		"alias _acme-challenge.{domain}.co.uk {\n" + rfc2136Block + "\n}",
		"alias {\n}", "alias a b c", `alias "{" {`, "alias {\nrule {\n}\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
		if err != nil {
			return
		}
		var p Provider
		if p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)) != nil {
			return
		}
		provisionFuzzed(t, &p, []byte(src))
	})
}
