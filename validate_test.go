package alias

import (
	"strings"
	"testing"
)

// TestValidateUnworkable: each config that decodes but can never work fails
// at `caddy validate`, naming the field, and none panics.
func TestValidateUnworkable(t *testing.T) {
	t.Setenv("ALIAS_TEST_SECRET", "c2VjcmV0")
	const inner = `"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"}`
	const static = inner + `,"alias":"_acme-challenge.validation.example.org"`
	rule := func(match string) string {
		return `{"match":["` + match + `"],"alias":"_acme-challenge.{domain}.validation.example.org"}`
	}
	for _, tt := range []struct {
		name     string
		provider string // body of the alias provider object, without "name"
		wantErr  string // "" for a valid config
	}{
		{"null rule", static + `,"rules":[null]`, "rules[0]: null"},
		{"null second rule", static + `,"rules":[` + rule("example.com") + `,null]`, "rules[1]: null"},
		{"alias ending in two dots", inner + `,"alias":"_acme-challenge.validation.example.org.."`, `alias: alias "_acme-challenge.validation.example.org.." ends in more than one dot`},
		{"rule alias ending in two dots", static + `,"rules":[{"match":["example.com"],"alias":"x.validation.example.org.."}]`, "rules[0].alias"},
		{"resolver host name", static + `,"resolvers":["localhost:53"]`, `resolvers[0]: resolver "localhost:53" is not an IP address`},
		{"resolver bad port", static + `,"resolvers":["1.2.3.4:53","1.2.3.4:abc"]`, `resolvers[1]: resolver "1.2.3.4:abc": port`},
		{"resolver no host", static + `,"resolvers":[":53"]`, `resolvers[0]: resolver ":53"`},
		{"resolver port too big", static + `,"resolvers":["1.2.3.4:99999"]`, `resolvers[0]: resolver "1.2.3.4:99999": port`},
		{"resolver empty port", static + `,"resolvers":["1.2.3.4:"]`, `resolvers[0]: resolver "1.2.3.4:": port`},
		{"resolvers by address", static + `,"resolvers":["1.2.3.4","1.2.3.4:53","[2001:db8::1]:5353","2001:db8::1"]`, ""},
		{"pattern with a space", static + `,"rules":[{"match":["*. example.com"],"alias":"x.validation.example.org"}]`, `rules[0].match[0]: "*. example.com" contains white space`},
		{"two rules for one domain", static + `,"rules":[` + rule("example.com") + `,` + rule("example.net") + `,` + rule("Example.COM") + `]`, `rules[2].match[0]: "example.com" is matched by rules[0]`},
		{"one domain twice in a rule", static + `,"rules":[{"match":["example.com","example.com."],"alias":"x.validation.example.org"}]`, `rules[0].match[1]`},
		{"public suffix zone", inner + `,"alias":"_acme-challenge.validation.example.org","zones":["org"]`, `zones[0]: "org" is a public suffix`},
		{"unknown TLD zone", inner + `,"follow":true,"zones":["example"]`, `zones[0]: "example" is a public suffix`},
		{"rule public suffix zone", static + `,"rules":[{"match":["example.com"],"follow":true,"zones":["co.uk"]}]`, `rules[0].zones[0]: "co.uk" is a public suffix`},
		{"acme-dns server zone a public suffix", `"acme_dns":` + acmeJSON(`"subdomain":"`+acmeSub+`","fulldomain":"`+acmeSub+`.example"`), `acme_dns.fulldomain: the acme-dns server's zone, the default alias zone: "example" is a public suffix`},
		{"empty CAA identity", static + `,"caa_identities":["letsencrypt.org",""]`, "caa_identities[1]"},
		{"CAA identity from unset env", static + `,"caa_identities":["{env.ALIAS_TEST_UNSET}"]`, "caa_identities[0]"},
		{"max_hops above the bound", static + `,"max_hops":17`, "max_hops: 17"},
		{"max_hops at the bound", static + `,"max_hops":16`, ""},
		{"negative max_hops", static + `,"max_hops":-1`, "max_hops: -1"},
		{"template below co.uk without zones", inner + `,"alias":"_acme-challenge.{domain}.co.uk"`, `alias: template "_acme-challenge.{domain}.co.uk" puts each name directly below the public suffix "co.uk"`},
		{"template below github.io without zones", inner + `,"alias":"{domain_hash}.github.io"`, `alias: template "{domain_hash}.github.io" puts each name directly below the public suffix "github.io"`},
		{"rule template below a public suffix", static + `,"rules":[{"match":["example.com"],"alias":"_acme-challenge.{domain}.co.uk"}]`, `rules[0].alias: template`},
		{"template below a public suffix with zones", inner + `,"alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"]`, ""},
		{"authoritative_wait 1ns", static + `,"authoritative_wait":1`, "authoritative_wait: 1ns is too short"},
		{"authoritative_wait 999ms", static + `,"authoritative_wait":"999ms"`, "authoritative_wait: 999ms is too short"},
		{"authoritative_wait 1s", static + `,"authoritative_wait":"1s"`, ""},
		{"authoritative_wait off", static + `,"authoritative_wait":-1`, ""},
		{"broadcast resolver", static + `,"resolvers":["255.255.255.255"]`, `resolvers[0]: resolver "255.255.255.255" is an unspecified, multicast or broadcast address`},
		{"multicast resolver", static + `,"resolvers":["127.0.0.1","224.0.0.1:53"]`, `resolvers[1]: resolver "224.0.0.1:53" is an unspecified`},
		{"IPv6 multicast resolver", static + `,"resolvers":["[ff02::1]:53"]`, `resolvers[0]: resolver "[ff02::1]:53" is an unspecified`},
		{"unspecified resolver", static + `,"resolvers":["0.0.0.0"]`, `resolvers[0]: resolver "0.0.0.0" is an unspecified`},
		{"secret from an unset variable", `"provider":{"name":"rfc2136","key_name":"k","key":"{env.ALIAS_TEST_UNSET}","key_alg":"hmac-sha256","server":"127.0.0.1:53"},"alias":"_acme-challenge.validation.example.org"`,
			"provider.key: {env.ALIAS_TEST_UNSET} is empty (an environment variable unset or empty?)"},
		{"rule secret from an unset variable", static + `,"rules":[{"match":["example.com"],"alias":"x.validation.example.org","provider":{"name":"rfc2136","key_name":"k","key":"{env.ALIAS_TEST_UNSET}","key_alg":"hmac-sha256","server":"127.0.0.1:53"}}]`,
			"rules[0].provider.key: {env.ALIAS_TEST_UNSET} is empty"},
		{"secret from a set variable", `"provider":{"name":"rfc2136","key_name":"k","key":"{env.ALIAS_TEST_SECRET}","key_alg":"hmac-sha256","server":"127.0.0.1:53"},"alias":"_acme-challenge.validation.example.org"`, ""},
		{"alias in alias", `"alias":"_acme-challenge.validation.example.org","provider":{"name":"alias",` + static + `}`, "provider: an alias provider cannot wrap another alias provider"},
		{"alias in a rule", static + `,"rules":[{"match":["example.com"],"provider":{"name":"alias",` + static + `}}]`, "rules[0].provider: an alias provider cannot wrap"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, validate(aliasPolicyConfig(tt.provider)), tt.wantErr)
		})
	}
}

// TestValidateApp: the dns_alias app's settings fail at `caddy validate`,
// naming the field.
func TestValidateApp(t *testing.T) {
	const provider = `"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"},"alias":"_acme-challenge.validation.example.org"`
	for _, tt := range []struct{ name, app, wantErr string }{
		{"defaults", `{}`, ""},
		{"sweep_after 1ns", `{"sweep_after":1}`, "sweep_after: 1ns is shorter than 3s"},
		{"sweep_after 2s", `{"sweep_after":"2s"}`, "sweep_after: 2s"},
		{"sweep_after 3s", `{"sweep_after":"3s","sweep_interval":"1s"}`, ""},
		{"negative sweep_interval", `{"sweep_interval":"-1s"}`, "sweep_interval: must not be negative"},
		{"periodic checks off", `{"check_interval":-1}`, ""},
		{"negative check_interval", `{"check_interval":"-5s"}`, "check_interval: must be positive, or -1"},
		{"negative check_concurrency", `{"check_concurrency":-1}`, "check_concurrency: must not be negative"},
		{"unknown field", `{"sweep":"1m"}`, "unknown field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := strings.Replace(aliasPolicyConfig(provider), `{"apps":{`, `{"apps":{"dns_alias":`+tt.app+`,`, 1)
			checkErr(t, validate(cfg), tt.wantErr)
		})
	}
}
