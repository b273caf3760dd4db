package xcaddy_test

// The acme-dns endpoint's bounded /update (issue 30 item 4) against a
// zone with a nameserver that never answers: the lab's silentns.example,
// whose ns2 the test binds and keeps silent.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// notYetServed is the endpoint's log line for a value written whose wait
// for every authoritative server outlasted update_timeout.
const notYetServed = "acme-dns value written, not yet served by every authoritative server within the update's time bound; the client's propagation check waits for the rest"

// randomDigest is a fresh value of an ACME challenge's shape (base64url
// of a SHA-256 digest), which /update accepts.
func randomDigest(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(randomLabel(t, "value-")))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// postUpdate sends acme-dns's POST /update for account a with value to the
// endpoint at base, as acme-dns's clients do, and returns the status and
// the body of the answer.
func postUpdate(t *testing.T, base string, a endpointAccount, value string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"subdomain": a.sub, "txt": value})
	req, _ := http.NewRequest(http.MethodPost, base+"/update", bytes.NewReader(body))
	req.Header.Set("X-Api-User", a.user)
	req.Header.Set("X-Api-Key", a.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s/update: %v", base, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(reply)
}

// TestEndpointSilentNameserver: the endpoint's zone has two nameservers,
// BIND A and one that reads every query and answers none. /update answers
// 200 within update_timeout (5s here) with the value written to BIND A,
// where the wait for every authoritative server (authoritative_wait, 2
// minutes) would outlast every client; the silent one was asked. lego,
// which gives up on an update after 30 s, obtains its certificate from
// Pebble, whose resolver (the lab's Unbound) gets the value from BIND A.
func TestEndpointSilentNameserver(t *testing.T) {
	l := requireLab(t)
	const updateTimeout = 5 * time.Second
	var queries atomic.Int64
	_, stopSilent, err := lab.ServeSilently(l.SilentNSAddr, &queries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSilent)
	a := newEndpointAccount(t)
	a.zone = l.SilentNSZone
	domain := randomLabel(t, "eps-") + ".example.com"
	a.delegate(t, domain)
	// The endpoint leaves its values in DNS when Caddy exits (they
	// outlive it); the zone is the lab's, so the test takes them out
	// once Caddy (stopped by a cleanup registered later, so run
	// earlier) is gone.
	served := func() []string {
		var out []string
		for _, rr := range zoneTXT(t, l.AuthA, a.zone) {
			if strings.EqualFold(strings.TrimSuffix(rr.Hdr.Name, "."), a.fullDomain()) {
				out = append(out, strings.Join(rr.Txt, ""))
			}
		}
		return out
	}
	t.Cleanup(func() {
		if err := l.RemoveRRset(context.Background(), a.zone, a.fullDomain()+".", dns.TypeTXT); err != nil {
			t.Errorf("removing the values at %s: %v", a.fullDomain(), err)
		} else if left := served(); len(left) > 0 {
			t.Errorf("%s still holds %q after the test removed its values", a.fullDomain(), left)
		}
	})
	port := freePort(t)
	c := startCaddyfileOn(t, "", "", endpointSiteIn(a.zone, fmt.Sprint(port), "update_timeout "+updateTimeout.String(), a))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealth(t, c, base)

	t.Run("update answers within update_timeout", func(t *testing.T) {
		value := randomDigest(t)
		start := time.Now()
		code, reply := postUpdate(t, base, a, value)
		took := time.Since(start)
		t.Logf("/update answered %d after %s", code, took.Round(time.Millisecond))
		if code != http.StatusOK || !strings.Contains(reply, value) {
			t.Fatalf("/update: %d %s, want 200 with the value; log:\n%s", code, reply, c.log.String())
		}
		// the bound, and a margin for the write and the HTTP round trip
		if took > updateTimeout+2*time.Second {
			t.Errorf("/update took %s, past update_timeout %s", took.Round(time.Millisecond), updateTimeout)
		}
		if got := served(); !slices.Contains(got, value) {
			t.Errorf("BIND A serves %q at %s, want the value written", got, a.fullDomain())
		}
		if _, ok := c.find(notYetServed, "value", value); !ok {
			t.Errorf("no %q logged for %s: the wait for every authoritative server was not what update_timeout cut short; log:\n%s", notYetServed, value, c.log.String())
		}
		if queries.Load() == 0 {
			t.Errorf("the silent nameserver %s was never asked: the endpoint did not wait on it", l.SilentNSAddr)
		}
	})
	t.Run("lego obtains", func(t *testing.T) {
		start := time.Now()
		obtain(t, base, a, domain)
		t.Logf("lego obtained %s in %s", domain, time.Since(start).Round(time.Millisecond))
		written := c.linesWith("acme-dns update written", "account", a.user)
		if len(written) != 2 {
			t.Fatalf("%d updates written for %s, want 2 (the test's and lego's)", len(written), a.user)
		}
		if _, ok := c.find(notYetServed, "value", written[1].str("value")); !ok {
			t.Errorf("lego's update %q was not cut short by update_timeout (no %q logged)", written[1].str("value"), notYetServed)
		}
	})
}
