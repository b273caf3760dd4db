package xcaddy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/internal/readme"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// TestDocsPowerDNSPolicy runs the deployment guide's PowerDNS update policy
// (its ```lua block) in a real PowerDNS Authoritative (Debian's pdns-server,
// SQLite backend) and sends it the updates Caddy's key may and may not make:
// TXT records in the validation zone, added and deleted, pass; another
// type, another zone, another key and no key are refused. The guide names
// Caddy's address; the test's updates come from 127.0.0.1.
func TestDocsPowerDNSPolicy(t *testing.T) {
	l := requireLab(t)
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	var script string
	for _, b := range doc.Blocks() {
		if b.Lang == "lua" {
			script = b.Text
		}
	}
	const caddyAddr = "192.0.2.10"
	if !strings.Contains(script, `"`+caddyAddr+`"`) {
		t.Fatalf("the docs have no ```lua update policy naming Caddy's address %s:\n%s", caddyAddr, script)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(strings.ReplaceAll(script, caddyAddr, "127.0.0.1")), 0o600); err != nil {
		t.Fatal(err)
	}
	schema, err := os.Open("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
	if err != nil {
		t.Fatalf("PowerDNS's SQLite schema (lab/install.sh installs pdns-backend-sqlite3): %v", err)
	}
	defer schema.Close()
	db := filepath.Join(dir, "pdns.db")
	create := exec.Command("sqlite3", db)
	create.Stdin = schema
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	server := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := fmt.Sprintf("launch=gsqlite3\ngsqlite3-database=%s\nlocal-address=127.0.0.1\nlocal-port=%s\n"+
		"dnsupdate=yes\nlua-dnsupdate-policy-script=%s\nsocket-dir=%s\ndaemon=no\nguardian=no\nwrite-pid=no\n",
		db, server[strings.LastIndex(server, ":")+1:], filepath.Join(dir, "policy.lua"), dir)
	if err := os.WriteFile(filepath.Join(dir, "pdns.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyKey := lab.Key{Name: "caddy-validation", Secret: l.CaddyKey.Secret, Alg: dns.HmacSHA256}
	otherKey := lab.Key{Name: "other", Secret: l.CaddyKey2.Secret, Alg: dns.HmacSHA256}
	for _, args := range [][]string{
		{"create-zone", "validation.example.org", "ns1.validation.example.org"},
		{"create-zone", "example.com", "ns1.example.com"},
		{"import-tsig-key", caddyKey.Name, "hmac-sha256", caddyKey.Secret},
		{"import-tsig-key", otherKey.Name, "hmac-sha256", otherKey.Secret},
	} {
		if out, err := exec.Command("pdnsutil", append([]string{"--config-dir=" + dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("pdnsutil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pdns := exec.Command("pdns_server", "--config-dir="+dir)
	out := &logBuffer{}
	pdns.Stdout, pdns.Stderr = out, out
	if err := pdns.Start(); err != nil {
		t.Fatalf("pdns_server (lab/install.sh installs pdns-server): %v", err)
	}
	t.Cleanup(func() { pdns.Process.Kill(); pdns.Wait() })
	ctx := testCtx(t, time.Minute)
	for {
		if m, err := l.Query(ctx, server, "validation.example.org", dns.TypeSOA); err == nil && m.Rcode == dns.RcodeSuccess {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("PowerDNS does not answer at %s; its log:\n%s", server, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}

	value := `"` + strings.Repeat("a", 43) + `"`
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// PowerDNS asks the policy about each record of an update and skips
	// (and logs) those it refuses, answering the rest of the update as
	// usual: what counts is what the zone serves afterwards.
	served := func(name string, qtype uint16) bool {
		t.Helper()
		m, err := l.Query(ctx, server, name, qtype)
		if err != nil {
			t.Fatal(err)
		}
		return len(m.Answer) > 0
	}
	for _, tc := range []struct {
		what, zone string
		key        lab.Key
		insert     dns.RR
		remove     dns.RR
		served     bool // the record is in the zone afterwards
	}{
		{"TXT by Caddy's key in the validation zone", "validation.example.org.", caddyKey,
			rr("_acme-challenge.shop.example.com.validation.example.org. 60 IN TXT " + value), nil, true},
		{"the same TXT deleted", "validation.example.org.", caddyKey,
			nil, rr("_acme-challenge.shop.example.com.validation.example.org. 0 IN TXT " + value), false},
		{"an A record by Caddy's key", "validation.example.org.", caddyKey,
			rr("www.validation.example.org. 60 IN A 192.0.2.1"), nil, false},
		{"TXT by Caddy's key in a production zone", "example.com.", caddyKey,
			rr("_acme-challenge.example.com. 60 IN TXT " + value), nil, false},
		{"TXT by another key", "validation.example.org.", otherKey,
			rr("_acme-challenge.other.validation.example.org. 60 IN TXT " + value), nil, false},
		{"TXT without a key", "validation.example.org.", lab.Key{},
			rr("_acme-challenge.nokey.validation.example.org. 60 IN TXT " + value), nil, false},
	} {
		m := new(dns.Msg)
		m.SetUpdate(tc.zone)
		target := tc.insert
		if target != nil {
			m.Insert([]dns.RR{tc.insert})
		} else {
			target = tc.remove
			m.Remove([]dns.RR{tc.remove})
		}
		if r, err := l.SendUpdate(ctx, server, tc.key, m); r == nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if got := served(target.Header().Name, target.Header().Rrtype); got != tc.served {
			t.Errorf("%s: served afterwards: %v, want %v; PowerDNS's log:\n%s", tc.what, got, tc.served, out.String())
		}
	}
	if n := strings.Count(out.String(), "Not permitted by policy"); n < 3 {
		t.Errorf("PowerDNS logged %d refusals by the policy, want one for each update with Caddy's key or another key that it refused (3):\n%s", n, out.String())
	}
}
