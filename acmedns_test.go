package alias

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/libdns/libdns"

	"github.com/acme-alias/caddy-dns-alias/internal/configwalk"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

const (
	acmeSub      = "d420c923-bbd7-4056-ab64-c3ca54c9b3cf"
	acmeFull     = acmeSub + ".auth.acme-dns.io"
	acmeUser     = "c36f50e8-4632-44f0-83fe-e070fef28a10"
	acmePassword = "htB9mR9DYgcu9bX_afHF62erXaH2TS7bg9KW3F7Z"
)

func TestACMEDNSCaddyfileAdapt(t *testing.T) {
	out, err := adapt(t, `{
	acme_dns alias {
		acme_dns {
			server https://auth.acme-dns.io
			username {env.ACMEDNS_USER}
			password {env.ACMEDNS_PASSWORD}
			subdomain `+acmeSub+`
			fulldomain `+acmeFull+`
		}
		resolvers 127.0.0.1:53
		rule example.net *.example.net {
			acme_dns {
				server http://127.0.0.1:8080/
				username u2
				password {env.ACMEDNS_PASSWORD_2}
				subdomain s2
				fulldomain s2.auth.example.org
			}
		}
	}
}
example.com, example.net`)
	if err != nil {
		t.Fatal(err)
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	want := `{"name":"alias","resolvers":["127.0.0.1:53"],
		"acme_dns":{"server":"https://auth.acme-dns.io","username":"{env.ACMEDNS_USER}","password":"{env.ACMEDNS_PASSWORD}","subdomain":"` + acmeSub + `","fulldomain":"` + acmeFull + `"},
		"rules":[{"match":["example.net","*.example.net"],
			"acme_dns":{"server":"http://127.0.0.1:8080/","username":"u2","password":"{env.ACMEDNS_PASSWORD_2}","subdomain":"s2","fulldomain":"s2.auth.example.org"}}]}`
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	got := configwalk.AliasProviders(cfg)
	if len(got) != 1 || !reflect.DeepEqual(got[0], w) {
		g, _ := json.Marshal(got)
		t.Errorf("alias provider:\n got %s\nwant %s", g, want)
	}

	for _, tc := range []struct{ body, want string }{
		{"acme_dns {\n bogus x\n }", "unrecognized acme_dns subdirective 'bogus'"},
		{"acme_dns {\n server\n }", "wrong argument count"},
		{"acme_dns {\n server a b\n }", "wrong argument count"},
		{"acme_dns extra {\n }", "wrong argument count"},
		{"rule example.com {\n acme_dns {\n nope\n }\n }", "unrecognized acme_dns subdirective 'nope'"},
	} {
		_, err := adapt(t, "{\n\tacme_dns alias {\n"+tc.body+"\n\t}\n}\nexample.com\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

func acmeJSON(fields string) string {
	base := map[string]string{"server": "https://auth.acme-dns.io", "username": acmeUser, "password": acmePassword,
		"subdomain": acmeSub, "fulldomain": acmeFull}
	var over map[string]string
	if fields != "" {
		if err := json.Unmarshal([]byte("{"+fields+"}"), &over); err != nil {
			panic(err)
		}
	}
	for k, v := range over {
		if v == "-" {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	out, _ := json.Marshal(base)
	return string(out)
}

func TestACMEDNSValidate(t *testing.T) {
	const inner = `"provider":{"name":"rfc2136","key_name":"k","key":"c2VjcmV0","key_alg":"hmac-sha256","server":"127.0.0.1:53"}`
	tests := []struct {
		name     string
		provider string
		wantErr  string
	}{
		{"top level", `"acme_dns":` + acmeJSON(""), ""},
		{"top level, alias equal but for case and dot", `"alias":"` + strings.ToUpper(acmeFull) + `.","acme_dns":` + acmeJSON(""), ""},
		{"rule", inner + `,"alias":"_acme-challenge.validation.example.org","rules":[{"match":["example.net"],"acme_dns":` + acmeJSON("") + `}]`, ""},
		{"rule inherits the top-level account", `"acme_dns":` + acmeJSON("") + `,"rules":[{"match":["example.net"]}]`, ""},
		{"two rules share an account", `"rules":[{"match":["a.example"],"acme_dns":` + acmeJSON("") + `},{"match":["b.example"],"acme_dns":` + acmeJSON("") + `}]`, ""},
		{"env placeholders", `"acme_dns":{"server":"{env.ACME_T_SERVER}","username":"{env.ACME_T_USER}","password":"{env.ACME_T_PASSWORD}","subdomain":"{env.ACME_T_SUB}","fulldomain":"{env.ACME_T_FULL}"}`, ""},

		{"provider and acme_dns", inner + `,"acme_dns":` + acmeJSON(""), "provider and acme_dns: choose one"},
		{"rule with provider and acme_dns", `"rules":[{"match":["example.net"],` + inner + `,"acme_dns":` + acmeJSON("") + `}]`, "rules[0].provider and rules[0].acme_dns: choose one"},
		{"alias differs", `"alias":"_acme-challenge.validation.example.org","acme_dns":` + acmeJSON(""),
			`alias: "_acme-challenge.validation.example.org" must equal the acme-dns account's fulldomain "` + acmeFull + `"`},
		{"rule alias differs", `"rules":[{"match":["example.net"],"alias":"x","acme_dns":` + acmeJSON("") + `}]`,
			`rules[0].alias: "x" must equal the acme-dns account's fulldomain "` + acmeFull + `"`},
		{"alias template", `"alias":"_acme-challenge.{domain}.auth.acme-dns.io","acme_dns":` + acmeJSON(""), "must equal the acme-dns account's fulldomain"},
		{"inherited account, other alias", `"acme_dns":` + acmeJSON("") + `,"rules":[{"match":["example.net"],"alias":"y.auth.acme-dns.io"}]`,
			`rules[0].alias: "y.auth.acme-dns.io" must equal the acme-dns account's fulldomain`},
		{"follow", `"follow":true,"zones":["auth.acme-dns.io"],"acme_dns":` + acmeJSON(""), "follow: not with acme_dns"},
		{"zones without the fulldomain", `"zones":["validation.example.org"],"acme_dns":` + acmeJSON(""), "is outside the configured zones"},
		{"missing server", `"acme_dns":` + acmeJSON(`"server":"-"`), "acme_dns.server: missing"},
		{"missing username", `"acme_dns":` + acmeJSON(`"username":"-"`), "acme_dns.username: missing"},
		{"missing password", `"acme_dns":` + acmeJSON(`"password":"-"`), "acme_dns.password: missing"},
		{"missing subdomain", `"acme_dns":` + acmeJSON(`"subdomain":"-"`), "acme_dns.subdomain: missing"},
		{"missing fulldomain", `"acme_dns":` + acmeJSON(`"fulldomain":"-"`), "acme_dns.fulldomain: missing"},
		{"unset env placeholder", `"acme_dns":` + acmeJSON(`"password":"{env.ACME_T_UNSET}"`), "acme_dns.password: missing"},
		{"rule missing field", `"rules":[{"match":["example.net"],"acme_dns":` + acmeJSON(`"server":"-"`) + `}]`, "rules[0].acme_dns.server: missing"},
		{"server not a URL", `"acme_dns":` + acmeJSON(`"server":"auth.acme-dns.io"`), `acme_dns.server: "auth.acme-dns.io" is not an http:// or https:// URL`},
		{"server with another scheme", `"acme_dns":` + acmeJSON(`"server":"ftp://auth.acme-dns.io"`), "acme_dns.server"},
		{"fulldomain of another subdomain", `"acme_dns":` + acmeJSON(`"fulldomain":"other.auth.acme-dns.io"`), "acme_dns.fulldomain"},
	}
	for k, v := range map[string]string{"ACME_T_SERVER": "https://auth.acme-dns.io", "ACME_T_USER": acmeUser,
		"ACME_T_PASSWORD": acmePassword, "ACME_T_SUB": acmeSub, "ACME_T_FULL": acmeFull} {
		t.Setenv(k, v)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(aliasPolicyConfig(tt.provider))
			if err != nil && strings.Contains(err.Error(), acmePassword) {
				t.Errorf("error shows the password: %v", err)
			}
			checkErr(t, err, tt.wantErr)
		})
	}
}

// TestACMEDNSProvisioned provisions the provider with {env.*} placeholders
// and checks the mapping it builds and the update its writer sends.
func TestACMEDNSProvisioned(t *testing.T) {
	var got struct{ user, key, body string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		got.user, got.key, got.body = r.Header.Get("X-Api-User"), r.Header.Get("X-Api-Key"), string(data)
		io.WriteString(w, `{"txt":"x"}`)
	}))
	defer srv.Close()
	t.Setenv("ACME_T_SERVER", srv.URL)
	t.Setenv("ACME_T_PASSWORD", acmePassword)
	t.Setenv("ACME_T_FULL", strings.ToUpper(acmeFull)+".")

	ctx, _ := standalone(t)
	p := new(Provider)
	cfg := `{"resolvers":["127.0.0.1:53"],"acme_dns":{"server":"{env.ACME_T_SERVER}","username":"` + acmeUser + `","password":"{env.ACME_T_PASSWORD}","subdomain":"` + acmeSub + `","fulldomain":"{env.ACME_T_FULL}"},
		"rules":[{"match":["example.net"]}]}`
	if err := json.Unmarshal([]byte(cfg), p); err != nil {
		t.Fatal(err)
	}
	if err := p.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if p.ACMEDNS.Password != "{env.ACME_T_PASSWORD}" {
		t.Errorf("the config's password field was replaced by its value")
	}
	for _, r := range append([]*solver.Rule{p.writer.Mapper.Default}, p.writer.Mapper.Rules...) {
		if r.Alias.String() != acmeFull || !reflect.DeepEqual(r.Zones, []string{"auth.acme-dns.io"}) || r.WriterName != "acme_dns" {
			t.Errorf("rule %v: alias %q zones %v writer %s; want alias %s in zone auth.acme-dns.io through acme_dns",
				r.Match, r.Alias.String(), r.Zones, r.WriterName, acmeFull)
		}
	}
	value := strings.Repeat("v", 43)
	if _, err := p.writer.Mapper.Default.Writer.AppendRecords(context.Background(), "auth.acme-dns.io.",
		[]libdns.Record{libdns.TXT{Name: acmeSub, Text: value}}); err != nil {
		t.Fatal(err)
	}
	if got.user != acmeUser || got.key != acmePassword || got.body != `{"subdomain":"`+acmeSub+`","txt":"`+value+`"}` {
		t.Errorf("update sent as user %q key %q body %s", got.user, got.key, got.body)
	}
	p.writer.Mapper.Default.Writer.DeleteRecords(context.Background(), "auth.acme-dns.io.", []libdns.Record{libdns.TXT{Name: acmeSub, Text: value}})
}

// TestACMEDNSReadmeExample adapts the Caddyfile of README.md's ACME-DNS
// section and compares the provider with the JSON printed after it.
func TestACMEDNSReadmeExample(t *testing.T) {
	caddyfile, jsonText := readmeBlocks(t, "# ACME-DNS")
	out, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapting the README's Caddyfile: %v", err)
	}
	checkAliasProvider(t, out, jsonText)
	t.Setenv("ACMEDNS_USERNAME", acmeUser)
	t.Setenv("ACMEDNS_PASSWORD", acmePassword)
	if err := validate(string(out)); err != nil {
		t.Errorf("the README's Caddyfile does not validate: %v", err)
	}
}
