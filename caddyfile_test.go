package alias

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls"

	_ "github.com/acme-alias/caddy-dns-alias/internal/dnsupdate"
)

const rfc2136Block = `provider rfc2136 {
				key_name caddy-key
				key {env.TSIG_SECRET}
				key_alg hmac-sha256
				server 127.0.0.2:53
			}`

const rfc2136JSON = `{"name":"rfc2136","key_name":"caddy-key","key":"{env.TSIG_SECRET}","key_alg":"hmac-sha256","server":"127.0.0.2:53"}`

func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	return out, err
}

func TestCaddyfileAdapt(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		want      string // the alias provider object
		wantPath  string // where in the adapted JSON it must be
	}{
		{
			name: "static alias as argument, in tls",
			caddyfile: `example.com {
	tls {
		dns alias _acme-challenge.validation.example.org {
			` + rfc2136Block + `
		}
	}
}`,
			want:     `{"name":"alias","alias":"_acme-challenge.validation.example.org","provider":` + rfc2136JSON + `}`,
			wantPath: `"challenges":{"dns":{"provider":`,
		},
		{
			name: "template with zone, global acme_dns",
			caddyfile: `{
	acme_dns alias {
		` + rfc2136Block + `
		zone validation.example.org
		alias _acme-challenge.{domain}.validation.example.org
	}
}
example.com`,
			want:     `{"name":"alias","alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"],"provider":` + rfc2136JSON + `}`,
			wantPath: `"challenges":{"dns":{"provider":`,
		},
		{
			name: "follow with two zones, resolvers and max_hops, global dns",
			caddyfile: `{
	dns alias {
		` + rfc2136Block + `
		zones validation.example.org alias2.example
		follow
		resolvers 127.0.0.1:15353
		max_hops 4
	}
	acme_dns
}
example.net`,
			want:     `{"name":"alias","follow":true,"zones":["validation.example.org","alias2.example"],"resolvers":["127.0.0.1:15353"],"max_hops":4,"provider":` + rfc2136JSON + `}`,
			wantPath: `"challenges":{"dns":{}}`,
		},
		{
			name: "rules with their own provider, in an acme issuer block",
			caddyfile: `example.com, example.net {
	tls {
		issuer acme {
			dns alias {
				` + rfc2136Block + `
				zone validation.example.org
				alias _acme-challenge.{domain}.validation.example.org
				rule example.net *.example.net {
					alias _acme-challenge.{domain_hash}.alias2.example
					zone alias2.example
					provider rfc2136 {
						key_name caddy-key-2
						key {env.TSIG_SECRET_2}
						key_alg hmac-sha256
						server 127.0.0.3:53
					}
				}
				rule *.example.org {
					follow
				}
			}
		}
	}
}`,
			want: `{"name":"alias","alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"],"provider":` + rfc2136JSON + `,
				"rules":[
					{"match":["example.net","*.example.net"],"alias":"_acme-challenge.{domain_hash}.alias2.example","zones":["alias2.example"],
					 "provider":{"name":"rfc2136","key_name":"caddy-key-2","key":"{env.TSIG_SECRET_2}","key_alg":"hmac-sha256","server":"127.0.0.3:53"}},
					{"match":["*.example.org"],"follow":true}]}`,
			wantPath: `"issuers":[{"challenges":{"dns":{"provider":`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := adapt(t, tt.caddyfile)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			if !strings.Contains(string(out), tt.wantPath) {
				t.Errorf("adapted JSON lacks %s:\n%s", tt.wantPath, out)
			}
			checkAliasProvider(t, out, tt.want)
		})
	}
}

func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"unknown subdirective", "bogus x", "unrecognized subdirective 'bogus'"},
		{"unknown rule subdirective", "rule example.com {\n bogus\n }", "unrecognized rule subdirective 'bogus'"},
		{"rule without match", "rule {\n follow\n }", "wrong argument count"},
		{"zone without argument", "zone", "wrong argument count"},
		{"follow with argument", "follow yes", "wrong argument count"},
		{"max_hops not a number", "max_hops many", "max_hops"},
		{"unknown inner provider", "provider nosuchdns", "dns.providers.nosuchdns"},
		{"provider without name", "provider", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adapt(t, "{\n\tacme_dns alias {\n"+tt.body+"\n\t}\n}\nexample.com\n")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidate provisions configs the way `caddy validate` does and checks
// that each bad one fails with the offending field named.
func TestValidate(t *testing.T) {
	const inner = `"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"}`
	tests := []struct {
		name     string
		provider string // body of the alias provider object, without "name"
		wantErr  string // "" for a valid config
	}{
		{"static", inner + `,"alias":"_acme-challenge.validation.example.org"`, ""},
		{"template with zone", inner + `,"alias":"_acme-challenge.{domain}.validation.example.org","zones":["validation.example.org"]`, ""},
		{"follow", inner + `,"follow":true,"zones":["validation.example.org"]`, ""},
		{"env placeholder in zone", inner + `,"follow":true,"zones":["{env.ALIAS_TEST_ZONE}"]`, ""},
		{"rules only", `"rules":[{"match":["example.com"],"alias":"_acme-challenge.validation.example.org",` + inner + `}]`, ""},
		{"no inner provider", `"alias":"_acme-challenge.validation.example.org"`, "provider: no inner DNS provider"},
		{"unknown inner module", `"provider":{"name":"nosuchdns"},"alias":"x.validation.example.org"`, "provider: loading inner DNS provider"},
		{"nothing to map", inner, "alias: no alias, follow or rules"},
		{"follow without zones", inner + `,"follow":true`, "zones: follow mode needs"},
		{"alias and follow", inner + `,"follow":true,"alias":"x.validation.example.org","zones":["validation.example.org"]`, "alias and follow"},
		{"unknown placeholder", inner + `,"alias":"_acme-challenge.{host}.validation.example.org"`, "alias: alias \"_acme-challenge.{host}.validation.example.org\" uses unknown placeholder"},
		{"template without zone suffix", inner + `,"alias":"_acme-challenge.{domain}"`, "alias: alias \"_acme-challenge.{domain}\" must end in the name of the validation zone"},
		{"template too long for any domain", inner + `,"alias":"{domain}.` + strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + `.org"`, "cannot produce a valid name"},
		{"target outside zones", inner + `,"alias":"_acme-challenge.validation.example.org","zones":["alias2.example"]`, "alias: \"_acme-challenge.validation.example.org\" is outside the configured zones"},
		{"empty zone", inner + `,"follow":true,"zones":[""]`, "zones[0]: empty name"},
		{"malformed zone", inner + `,"follow":true,"zones":["bad..zone"]`, "zones[0]: name \"bad..zone\" has an empty label"},
		{"rule without match", inner + `,"rules":[{"alias":"x.validation.example.org"}]`, "rules[0].match"},
		{"rule with bad alias", inner + `,"alias":"a.validation.example.org","rules":[{"match":["example.com"],"alias":"{nope}.v.example.org"}]`, "rules[0].alias"},
		{"rule with malformed match", inner + `,"rules":[{"match":["exa mple.com"],"alias":"x.validation.example.org"}]`, "rules[0].match[0]"},
		{"rule with unknown provider", `"rules":[{"match":["example.com"],"alias":"x.validation.example.org","provider":{"name":"nosuchdns"}}]`, "rules[0].provider"},
		{"rule follow without zones", `"rules":[{"match":["example.com"],"follow":true,` + inner + `}]`, "rules[0].zones: follow mode needs"},
		{"bad resolver", inner + `,"alias":"x.validation.example.org","resolvers":["not-an-ip"]`, "resolvers[0]: resolver \"not-an-ip\""},
		{"negative max_hops", inner + `,"alias":"x.validation.example.org","max_hops":-1`, "max_hops"},
	}
	t.Setenv("ALIAS_TEST_ZONE", "validation.example.org")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, validate(aliasPolicyConfig(tt.provider)), tt.wantErr)
		})
	}
}

// TestAppCaddyfile: the dns_alias global option adapts to the top-level
// app with every setting, and refuses what it does not know.
func TestAppCaddyfile(t *testing.T) {
	out, err := adapt(t, "{\n\tdns_alias {\n\t\tsweep_after 10m\n\t\tsweep_interval 1m\n\t\tcheck_interval -1\n\t\tcheck_concurrency 4\n\t}\n}\nexample.com\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `"dns_alias":{"sweep_after":600000000000,"sweep_interval":60000000000,"check_interval":-1,"check_concurrency":4}`
	if !strings.Contains(string(out), want) {
		t.Errorf("adapted config lacks %s:\n%s", want, out)
	}
	for _, bad := range []string{"bogus 1", "sweep_after soon", "check_concurrency many", "sweep_after"} {
		if _, err := adapt(t, "{\n\tdns_alias {\n\t\t"+bad+"\n\t}\n}\nexample.com\n"); err == nil {
			t.Errorf("dns_alias { %s } adapted", bad)
		}
	}
}
