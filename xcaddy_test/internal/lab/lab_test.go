package lab

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%x", prefix, time.Now().UnixNano())
}

func hasTXT(txts []*dns.TXT, name, value string) bool {
	for _, t := range txts {
		if strings.EqualFold(t.Hdr.Name, dns.Fqdn(name)) && strings.Join(t.Txt, "") == value {
			return true
		}
	}
	return false
}

func TestParseEnvAndQueryLine(t *testing.T) {
	env, err := parseEnv([]byte("# c\nA=1\nexport B='x y'\nC=\"q\"\nD=a=b\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if env["A"] != "1" || env["B"] != "x y" || env["C"] != "q" || env["D"] != "a=b" {
		t.Fatalf("parseEnv: %v", env)
	}
	q, ok := parseQueryLine("[1795755647] unbound[6845:0] info: 127.0.0.1 _ACME-challenge.Example.com. TXT IN")
	if !ok || q.Name != "_acme-challenge.example.com." || q.Type != dns.TypeTXT || q.Client != "127.0.0.1" || q.Time.Unix() != 1795755647 {
		t.Fatalf("query line: %+v %v", q, ok)
	}
	for _, l := range []string{
		"[1795755647] unbound[6845:0] info: 127.0.0.1 x.example. TXT IN NOERROR 0.000310 0 71",
		"[1795755647] unbound[6845:0] info: service stopped (unbound 1.17.1).",
		"[1795755647] unbound[6845:0] info: start of service (unbound 1.17.1).",
	} {
		if _, ok := parseQueryLine(l); ok {
			t.Errorf("parsed as a query: %q", l)
		}
	}
}

func TestLab(t *testing.T) {
	l := Require(t)
	ctx := ctxT(t)

	if l.AuthA != "127.0.0.2:53" || l.AuthB != "127.0.0.3:53" || l.AliasZone != "validation.example.org" || l.AliasZone2 != "alias2.example" {
		t.Fatalf("unexpected lab: %+v", l)
	}
	if l.CaddyKey.Name == "" || l.CaddyKey.Secret == "" || l.CaddyKey.Alg != dns.HmacSHA256 {
		t.Fatalf("caddy key: %+v", l.CaddyKey)
	}
	if err := l.Healthy(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("PublishQueryRemove", func(t *testing.T) {
		name := uniq("pub") + "." + l.AliasZone + "."
		value := uniq("v")
		before, err := l.Serial(ctx, "", l.AliasZone)
		if err != nil {
			t.Fatal(err)
		}
		mark, err := l.ResolverLogMark()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Publish(ctx, l.AliasZone, fmt.Sprintf("%s 30 IN TXT %q", name, value)); err != nil {
			t.Fatal(err)
		}
		after, err := l.Serial(ctx, l.AuthA, l.AliasZone)
		if err != nil {
			t.Fatal(err)
		}
		if after <= before {
			t.Errorf("serial %d -> %d, want an increase", before, after)
		}

		// authoritative, no recursion
		r, err := l.Query(ctx, l.AuthA, name, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Authoritative || len(r.Answer) != 1 {
			t.Fatalf("authoritative answer: %v", r)
		}

		// through Unbound
		r, err = l.Resolve(ctx, name, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != value {
			t.Fatalf("resolver answer: %v", r)
		}
		n, err := l.CountResolverQueriesSince(mark, name, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("resolver log: %d queries for %s TXT, want 1", n, name)
		}
		if all, _ := l.CountResolverQueries("", 0); all < n {
			t.Errorf("CountResolverQueries(all) = %d < %d", all, n)
		}

		txts, err := l.TXTRecords(ctx, "", l.AliasZone)
		if err != nil {
			t.Fatal(err)
		}
		if !hasTXT(txts, name, value) {
			t.Fatalf("AXFR has no %s TXT %q: %v", name, value, txts)
		}

		if err := l.Remove(ctx, l.AliasZone, fmt.Sprintf("%s 30 IN TXT %q", name, value)); err != nil {
			t.Fatal(err)
		}
		txts, err = l.TXTRecords(ctx, l.AuthA, l.AliasZone)
		if err != nil {
			t.Fatal(err)
		}
		if hasTXT(txts, name, value) {
			t.Fatalf("record left behind: %v", txts)
		}
		if err := l.FlushResolver(ctx, name); err != nil {
			t.Fatal(err)
		}
		r, err = l.Resolve(ctx, name, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("after removal and flush the resolver says %s", dns.RcodeToString[r.Rcode])
		}
	})

	t.Run("CNAMEChainThroughResolver", func(t *testing.T) {
		label := uniq("_acme-challenge.chain")
		target := label + ".example.com." + l.AliasZone + "."
		hop := label + ".hop.example."
		value := uniq("token")
		cname1 := fmt.Sprintf("%s.example.com. 30 CNAME %s", label, hop)
		cname2 := fmt.Sprintf("%s 30 CNAME %s", hop, target)
		txt := fmt.Sprintf("%s 30 TXT %q", target, value)
		for _, p := range []struct{ zone, rr string }{{"example.com", cname1}, {"hop.example", cname2}, {l.AliasZone, txt}} {
			if err := l.Publish(ctx, p.zone, p.rr); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := l.Remove(context.Background(), p.zone, p.rr); err != nil {
					t.Error(err)
				}
			})
		}
		r, err := l.Resolve(ctx, label+".example.com", dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 3 {
			t.Fatalf("two-hop chain: %v", r)
		}
		if got, ok := r.Answer[2].(*dns.TXT); !ok || strings.Join(got.Txt, "") != value {
			t.Fatalf("end of chain: %v", r.Answer[2])
		}
	})

	t.Run("KeyPermissions", func(t *testing.T) {
		send := func(server string, key Key, zone, rr string) error {
			rrs, err := ParseRRs(zone, rr)
			if err != nil {
				t.Fatal(err)
			}
			m := new(dns.Msg)
			m.SetUpdate(dns.Fqdn(zone))
			m.Insert(rrs)
			_, err = l.SendUpdate(ctx, server, key, m)
			return err
		}
		n := uniq("perm")
		ok := []struct {
			server, zone, rr string
			key              Key
		}{
			{l.AuthA, l.AliasZone, n + ` TXT "a"`, l.CaddyKey},
			{l.AuthB, l.AliasZone2, n + ` TXT "b"`, l.CaddyKey2},
		}
		for _, c := range ok {
			if err := send(c.server, c.key, c.zone, c.rr); err != nil {
				t.Errorf("%s in %s: %v", c.key.Name, c.zone, err)
			}
			c := c
			t.Cleanup(func() { _ = l.RemoveAt(context.Background(), c.server, c.zone, c.rr) })
		}
		refused := []struct {
			server, zone, rr string
			key              Key
		}{
			{l.AuthA, "example.com", n + ` TXT "x"`, l.CaddyKey},
			{l.AuthA, "drift.example", n + ` TXT "x"`, l.CaddyKey},
			{l.AuthA, l.AliasZone, n + ` A 127.0.0.9`, l.CaddyKey},
			{l.AuthA, l.AliasZone, n + ` CNAME elsewhere.example.`, l.CaddyKey},
			{l.AuthB, l.AliasZone2, n + ` TXT "x"`, l.CaddyKey},
			{l.AuthA, l.AliasZone, n + ` TXT "x"`, l.CaddyKey2},
			{l.AuthA, "example.com", n + ` TXT "x"`, Key{}},
		}
		for _, c := range refused {
			err := send(c.server, c.key, c.zone, c.rr)
			if err == nil || !strings.Contains(err.Error(), "REFUSED") {
				t.Errorf("%q with key %q in %s: %v, want REFUSED", c.rr, c.key.Name, c.zone, err)
			}
		}
	})

	t.Run("DriftStaging", func(t *testing.T) {
		servers, err := l.Servers("drift.example")
		if err != nil || len(servers) != 2 {
			t.Fatalf("drift.example servers: %v %v", servers, err)
		}
		sa0, _ := l.Serial(ctx, l.AuthA, "drift.example")
		sb0, _ := l.Serial(ctx, l.AuthB, "drift.example")
		rr := fmt.Sprintf("%s.drift.example. 30 TXT \"only-b\"", uniq("d"))
		if err := l.PublishAt(ctx, l.AuthB, "drift.example", rr); err != nil {
			t.Fatal(err)
		}
		sa1, _ := l.Serial(ctx, l.AuthA, "drift.example")
		sb1, _ := l.Serial(ctx, l.AuthB, "drift.example")
		if sa1 != sa0 || sb1 <= sb0 {
			t.Errorf("serials A %d->%d B %d->%d: want only B to move", sa0, sa1, sb0, sb1)
		}
		ta, _ := l.TXTRecords(ctx, l.AuthA, "drift.example")
		tb, _ := l.TXTRecords(ctx, l.AuthB, "drift.example")
		if len(tb) != len(ta)+1 {
			t.Errorf("TXT at A %d, at B %d: want B one more", len(ta), len(tb))
		}
		// undo, and bring A's serial along so that the copies end in step
		if err := l.RemoveAt(ctx, l.AuthB, "drift.example", rr); err != nil {
			t.Fatal(err)
		}
		if err := l.PublishAt(ctx, l.AuthA, "drift.example", rr); err != nil {
			t.Fatal(err)
		}
		if err := l.RemoveAt(ctx, l.AuthA, "drift.example", rr); err != nil {
			t.Fatal(err)
		}
		sa2, _ := l.Serial(ctx, l.AuthA, "drift.example")
		sb2, _ := l.Serial(ctx, l.AuthB, "drift.example")
		if sa0 == sb0 && sa2 != sb2 {
			t.Errorf("serials after the round trip: A %d, B %d", sa2, sb2)
		}
	})

	t.Run("PebbleRoots", func(t *testing.T) {
		roots, inter, err := l.PebbleRoots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(roots.Subjects()) == 0 || len(inter.Subjects()) == 0 { //nolint:staticcheck // counting only
			t.Fatal("no roots or intermediates")
		}
		hc, err := l.PebbleHTTPClient()
		if err != nil {
			t.Fatal(err)
		}
		certs, found, err := getPEMCerts(ctx, hc, l.PebbleMgmt+"/intermediates/0")
		if err != nil || !found {
			t.Fatal(err, found)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("intermediate does not chain to the root: %v", err)
		}
	})
}

func TestParseUpdateLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Update
		ok   bool
	}{
		{`01-Dec-2026 12:22:52.682 update: info: client @0x7f20ad6fe098 127.0.0.2#33320/key caddy-key: updating zone 'validation.example.org/IN': adding an RR at '_acme-challenge.t1.example.com.validation.example.org' TXT "abc"`,
			Update{Key: "caddy-key", Zone: "validation.example.org", Op: "add", Name: "_acme-challenge.t1.example.com.validation.example.org", Type: "TXT", Value: "abc"}, true},
		{`01-Dec-2026 12:22:52.682 update: info: client @0x7f20b149b098 127.0.0.2#60615/key caddy-key: updating zone 'validation.example.org/IN': deleting an RR at _acme-challenge.t1.example.com.validation.example.org TXT`,
			Update{Key: "caddy-key", Zone: "validation.example.org", Op: "delete", Name: "_acme-challenge.t1.example.com.validation.example.org", Type: "TXT"}, true},
		{`01-Dec-2026 12:22:52.682 update: info: client @0x1 127.0.0.1#1/key lab-admin: updating zone 'example.com/IN': deleting rrset at '_acme-challenge.x.example.com' CNAME`,
			Update{Key: "lab-admin", Zone: "example.com", Op: "delete rrset", Name: "_acme-challenge.x.example.com", Type: "CNAME"}, true},
		{`01-Dec-2026 12:22:52.682 update: info: client @0x1 127.0.0.1#1/key lab-admin: updating zone 'example.com/IN': adding an RR at 'x.example.com' TXT "a" "b"`,
			Update{Key: "lab-admin", Zone: "example.com", Op: "add", Name: "x.example.com", Type: "TXT", Value: "ab"}, true},
		{`01-Dec-2026 12:22:52.682 general: info: zone validation.example.org/IN: sending notifies (serial 3)`, Update{}, false},
	} {
		got, ok := parseUpdateLine(tc.line)
		got.Time = time.Time{}
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseUpdateLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
