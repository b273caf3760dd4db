package xcaddy_test

// The lab-DNS API of every scenario: fresh names, the records a domain's
// owner publishes (removed again when the test ends), the TXT records each
// authoritative server holds in the alias zones, and the production zones'
// serials that must never move.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// aliasZone is the lab's alias zone that the scenarios' templates use.
const aliasZone = "validation.example.org"

// randomLabel returns prefix followed by 8 random hex digits: a fresh DNS
// label, so that a rerun never sees the records or certificates of an
// earlier run.
func randomLabel(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// aliasOf is where the template _acme-challenge.{domain}.validation.example.org
// (and a follow-mode chain the scenarios publish) puts the challenge of name.
func aliasOf(name string) string {
	return "_acme-challenge." + name + "." + aliasZone
}

// delegation is the record a domain's owner publishes for name under that
// template.
func delegation(name string) string {
	return lab.Delegation(name, aliasZone)
}

// delegate publishes the delegation of each name (see publish).
func delegate(t *testing.T, names ...string) {
	t.Helper()
	var rrs []string
	for _, n := range names {
		rrs = append(rrs, delegation(n))
	}
	publish(t, rrs...)
}

// publish adds records to production zones (on every server of their zone)
// with the lab's admin key, as the domain's owner would, flushes them from
// Unbound's cache, and removes them again when the test ends.
func publish(t *testing.T, records ...string) {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	for _, rr := range records {
		parsed, err := dns.NewRR(rr)
		if err != nil {
			t.Fatalf("bad record %q: %v", rr, err)
		}
		zone := zoneOf(t, parsed.Header().Name)
		if err := l.Publish(ctx, zone, rr); err != nil {
			t.Fatalf("publishing %s: %v", rr, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := l.Remove(ctx, zone, rr); err != nil {
				t.Errorf("removing %s: %v", rr, err)
			}
		})
		if err := l.FlushResolver(ctx, parsed.Header().Name); err != nil {
			t.Fatalf("flushing %s: %v", parsed.Header().Name, err)
		}
	}
}

// zoneOf returns the lab zone that contains name.
func zoneOf(t *testing.T, name string) string {
	t.Helper()
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	best := ""
	for _, z := range append(append([]string{}, theLab.ZonesA...), theLab.ZonesB...) {
		if (n == z || strings.HasSuffix(n, "."+z)) && len(z) > len(best) {
			best = z
		}
	}
	if best == "" {
		t.Fatalf("%s is in no lab zone", name)
	}
	return best
}

// rfc2136 is the inner provider block for the lab's alias zone.
func rfc2136() string { return theLab.RFC2136Provider() }

// zoneTXT lists the TXT records in zone, asking its authoritative server
// directly.
func zoneTXT(t *testing.T, server, zone string) []*dns.TXT {
	t.Helper()
	txts, err := requireLab(t).TXTRecords(testCtx(t, 30*time.Second), server, zone)
	if err != nil {
		t.Fatalf("listing TXT in %s at %s: %v", zone, server, err)
	}
	return txts
}

// aliasTXT returns the TXT values at name in the alias zone.
func aliasTXT(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, rr := range zoneTXT(t, theLab.AuthA, theLab.AliasZone) {
		if strings.EqualFold(strings.TrimSuffix(rr.Hdr.Name, "."), name) {
			out = append(out, strings.Join(rr.Txt, ""))
		}
	}
	return out
}

// waitAliasTXT waits until name holds a TXT value and returns the values;
// it fails with the logs of cs if none comes within timeout.
func waitAliasTXT(t *testing.T, name string, timeout time.Duration, cs ...*caddyProc) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v := aliasTXT(t, name); len(v) > 0 {
			return v
		}
		if time.Now().After(deadline) {
			var logs string
			for _, c := range cs {
				logs += c.log.String()
			}
			t.Fatalf("no TXT at %s within %s; log:\n%s", name, timeout, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// challengeTXT lists every challenge TXT record left in the lab's alias
// zones, asking their authoritative servers directly.
func challengeTXT(t *testing.T) []string {
	t.Helper()
	l := requireLab(t)
	var left []string
	for _, z := range []struct{ server, zone string }{{l.AuthA, l.AliasZone}, {l.AuthB, l.AliasZone2}} {
		for _, rr := range zoneTXT(t, z.server, z.zone) {
			left = append(left, fmt.Sprintf("%s TXT %q", rr.Hdr.Name, strings.Join(rr.Txt, "")))
		}
	}
	return left
}

// assertNoChallengeLeft waits briefly for cleanups to finish, then fails if
// any TXT record is left in an alias zone.
func assertNoChallengeLeft(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if left = challengeTXT(t); len(left) == 0 {
			return
		}
	}
	t.Errorf("challenge records left behind in the alias zones: %v", left)
}

// productionSerials reads the SOA serial of every production zone from each
// of its authoritative servers.
func productionSerials(t *testing.T) map[string]uint32 {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	out := map[string]uint32{}
	for _, zone := range append(append([]string{}, l.ZonesA...), l.ZonesB...) {
		if zone == l.AliasZone || zone == l.AliasZone2 || zone == l.SilentNSZone {
			continue
		}
		servers, err := l.Servers(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			serial, err := l.Serial(ctx, s, zone)
			if err != nil {
				t.Fatalf("serial of %s at %s: %v", zone, s, err)
			}
			out[zone+"@"+s] = serial
		}
	}
	return out
}

// assertProductionUnchanged fails if any production zone's serial moved
// since before: nothing may ever be written there.
func assertProductionUnchanged(t *testing.T, before map[string]uint32) {
	t.Helper()
	after := productionSerials(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("production zone %s changed: serial %d -> %d", k, v, after[k])
		}
	}
}
