package xcaddy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// Faults, crashes and clusters (issue 6) against the lab: the inner
// provider misbehaving, an ACME validation failure and a shutdown after the
// record was written, Caddy killed between present and cleanup, and two
// instances sharing one storage.

// sweepStart bounds when the dns_alias app's first sweep runs after the
// process starts: at the app's Start.
const sweepStart = time.Second

// slowProxy forwards each TCP DNS connection to upstream only after delay,
// longer than the client waits: the client times out, and the update still
// reaches the server late.
type slowProxy struct {
	ln     net.Listener
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  int
	active int // connections being delayed or relayed
}

func startSlowProxy(t *testing.T, upstream string, delay time.Duration) *slowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{ln: ln, delay: delay}
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns++
			p.active++
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer func() {
					p.mu.Lock()
					p.active--
					p.mu.Unlock()
				}()
				defer client.Close()
				time.Sleep(p.delay)
				up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				up.SetDeadline(time.Now().Add(10 * time.Second))
				client.SetDeadline(time.Now().Add(10 * time.Second))
				// The request waits in the socket buffer even if the client
				// gave up meanwhile; relay it, and the answer back if anyone
				// still listens.
				go io.Copy(client, up)
				io.Copy(up, client)
				up.(*net.TCPConn).CloseWrite()
				time.Sleep(2 * time.Second) // let the server finish before closing
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *slowProxy) addr() string { return p.ln.Addr().String() }

func (p *slowProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// waitIdle waits until no connection is being delayed or relayed: every
// update sent through the proxy has then reached the server (or failed),
// however long a busy machine took to deliver it.
func (p *slowProxy) waitIdle(t *testing.T, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		p.mu.Lock()
		active := p.active
		p.mu.Unlock()
		if active == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow proxy still relays %d connections after %s", active, timeout)
		}
	}
}

// TestFaultInnerProvider: four domains, each with an inner provider that
// misbehaves in its own way, in one Caddy:
//   - a wrong TSIG secret, and
//   - a real key that BIND refuses for the alias zone (caddy-key-2):
//     permanent, so the challenge fails at once (no retries) with the zone and
//     the provider's message;
//   - a server address nothing listens on: connection refused is transient,
//     retried with backoff (6 attempts, at least the 1.55 s the minimum
//     backoffs add up to), then the challenge fails naming the zone;
//   - a server that answers only after the client gave up (a proxy that
//     forwards to BIND A after 3 s; the client waits 2 s): every attempt times
//     out, the challenge fails, and the writes that land late are removed by
//     the compensating deletes.
//
// Nothing is left in the alias zones, nothing changed in production.
func TestFaultInnerProvider(t *testing.T) {
	l := requireLab(t)
	wrongKey, refusedKey := randomLabel(t, "fk-")+"."+"example.com", randomLabel(t, "fr-")+"."+"example.com"
	unreachable, slow := randomLabel(t, "fu-")+"."+"example.com", randomLabel(t, "fs-")+"."+"example.com"
	delegate(t, wrongKey, refusedKey, unreachable, slow)
	before := productionSerials(t)

	secret := make([]byte, 32)
	rand.Read(secret)
	wrongSecret := base64.StdEncoding.EncodeToString(secret)
	// 127.0.0.2 is on lo (BIND A listens on its port 53 only): a TCP
	// connection to another port is refused at once.
	const deadAddr = "127.0.0.2:5399"
	proxy := startSlowProxy(t, l.AuthA, 3*time.Second)

	c := startCaddyfileOn(t, "", "", strings.Join([]string{
		templateSite(wrongKey, lab.RFC2136Block(l.CaddyKey.Name, wrongSecret, l.AuthA), "", ""),
		templateSite(refusedKey, lab.RFC2136Block(l.CaddyKey2.Name, "{env.TSIG_SECRET_2}", l.AuthA), "", ""),
		templateSite(unreachable, lab.RFC2136Block(l.CaddyKey.Name, "{env.TSIG_SECRET}", deadAddr), "", ""),
		templateSite(slow, lab.RFC2136Block(l.CaddyKey.Name, "{env.TSIG_SECRET}", proxy.addr()), "", ""),
	}, "\n"))

	// Watch the slow domain's alias: the writes that time out on the
	// client's side still land, 3 s late.
	lateWrite := make(chan bool, 1)
	stopWatch := make(chan struct{})
	go func() {
		seen := false
		defer func() { lateWrite <- seen }()
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			rrs, err := l.TXTRecords(ctx, l.AuthA, l.AliasZone)
			cancel()
			for _, rr := range rrs {
				if err == nil && strings.EqualFold(strings.TrimSuffix(rr.Hdr.Name, "."), aliasOf(slow)) {
					seen = true
				}
			}
		}
	}()

	// failure returns the time from the challenge's start to Caddy's error
	// for name, and the error.
	failure := func(name string, timeout time.Duration) (time.Duration, string) {
		t.Helper()
		start := c.waitLine("trying to solve challenge", "identifier", name, 30*time.Second)
		fail := c.waitLine("could not get certificate from issuer", "identifier", name, timeout)
		return fail.TS.Sub(start.TS), fail.str("error")
	}
	mustContain := func(what, s string, subs ...string) {
		t.Helper()
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				t.Errorf("%s: error does not contain %q: %s", what, sub, s)
			}
		}
	}

	for _, tc := range []struct{ what, name, msg string }{
		{"wrong TSIG secret", wrongKey, "bad authentication"},
		{"key refused for the zone", refusedKey, `"REFUSED"`},
	} {
		took, msg := failure(tc.name, 20*time.Second)
		t.Logf("%s: challenge failed %s after it started: %s", tc.what, took.Round(time.Millisecond), msg)
		mustContain(tc.what, msg, "alias zone validation.example.org", aliasOf(tc.name), "through rfc2136", tc.msg)
		if took > 2*time.Second {
			t.Errorf("%s: the challenge failed %s after it started; a permanent error must fail it at once", tc.what, took)
		}
		if strings.Contains(msg, "attempts") || strings.Contains(msg, "by hand") {
			t.Errorf("%s: a refused write was retried or reported as left behind: %s", tc.what, msg)
		}
		if strings.Contains(msg, wrongSecret) || strings.Contains(c.log.String(), wrongSecret) || strings.Contains(c.log.String(), l.CaddyKey2.Secret) {
			t.Errorf("%s: a TSIG secret appears in Caddy's log", tc.what)
		}
	}

	took, msg := failure(unreachable, 30*time.Second)
	t.Logf("unreachable server: challenge failed %s after it started: %s", took.Round(time.Millisecond), msg)
	mustContain("unreachable server", msg, "alias zone validation.example.org", aliasOf(unreachable), "6 attempts", "connection refused")
	if took < 1550*time.Millisecond || took > 20*time.Second {
		t.Errorf("unreachable server: the challenge failed %s after it started; want retries with backoff (>= 1.55 s), bounded", took)
	}
	if strings.Contains(msg, "by hand") {
		t.Errorf("unreachable server: nothing can have been written, yet the error asks to remove a record by hand: %s", msg)
	}

	took, msg = failure(slow, 90*time.Second)
	t.Logf("slow server: challenge failed %s after it started (%d connections to the proxy): %s", took.Round(time.Millisecond), proxy.connections(), msg)
	mustContain("slow server", msg, "alias zone validation.example.org", aliasOf(slow), "6 attempts", "timeout")
	if n := proxy.connections(); n < 7 {
		t.Errorf("slow server: %d connections through the proxy, want 6 write attempts and the compensating delete", n)
	}
	close(stopWatch)
	if !<-lateWrite {
		t.Errorf("slow server: no late write was ever seen at %s; the scenario did not happen", aliasOf(slow))
	}

	for _, name := range []string{wrongKey, refusedKey, unreachable, slow} {
		if _, ok := c.find("presented challenge on alias", "domain", name); ok {
			t.Errorf("%s: a challenge is reported presented although its write failed", name)
		}
	}
	// Only the write that timed out may still land after its compensating
	// delete: it alone keeps a journal entry, for a sweep to delete it once
	// more.
	var journalled []string
	for _, e := range journal(t, c.storage) {
		journalled = append(journalled, e.Name)
	}
	if !slices.Equal(journalled, []string{aliasOf(slow)}) {
		t.Errorf("journal holds %v, want only the timed-out write at %s", journalled, aliasOf(slow))
	}
	// The late writes and deletes land 3 s after they were sent, or later
	// on a busy machine: wait until the proxy has delivered all of them.
	proxy.waitIdle(t, time.Minute)
	assertNoChallengeLeft(t)
	assertProductionUnchanged(t, before)
}

// TestFaultValidationFails: the ACME validation fails after the record was
// written. While certmagic waits (propagation_delay), the domain's owner
// repoints the delegation to a zone that is no alias zone, so Pebble finds
// no TXT record and the authorization fails. The record is deleted where it
// was written (the name recorded at present, not a fresh resolution of the
// changed chain), and nothing is written anywhere else.
func TestFaultValidationFails(t *testing.T) {
	l := requireLab(t)
	name := randomLabel(t, "fv-") + "." + "example.com"
	challenge := "_acme-challenge." + name
	delegate(t, name)
	before := productionSerials(t)
	c := startCaddyfileOn(t, "", "debug", templateSite(name, rfc2136(), "", "propagation_delay 4s\n\t\tpropagation_timeout -1"))

	values := waitAliasTXT(t, aliasOf(name), 30*time.Second, c)
	assertProductionUnchanged(t, before)
	ctx := testCtx(t, 30*time.Second)
	if err := l.RemoveRRset(ctx, "example.com", challenge, dns.TypeCNAME); err != nil {
		t.Fatal(err)
	}
	publish(t, fmt.Sprintf("%s. 60 IN CNAME %s.notours.example.", challenge, challenge))
	repointed := productionSerials(t)
	t.Logf("presented %q at %s; delegation repointed to notours.example", values, aliasOf(name))

	fail := c.waitLine("could not get certificate from issuer", "identifier", name, 40*time.Second)
	msg := fail.str("error")
	t.Logf("validation failed: %s", msg)
	if !strings.Contains(msg, "urn:ietf:params:acme:error:unauthorized") {
		t.Errorf("the failure is not the CA's validation error: %s", msg)
	}
	del := c.waitLine("deleted challenge from alias", "domain", name, 10*time.Second)
	if a := del.str("alias"); a != aliasOf(name) {
		t.Errorf("the challenge was deleted at %s, want where it was written, %s", a, aliasOf(name))
	}
	if f := c.certFile(name); f != "" {
		t.Errorf("a certificate was stored although validation failed: %s", f)
	}
	assertNoChallengeLeft(t)
	if rrs := zoneTXT(t, l.AuthA, "notours.example"); len(rrs) > 0 {
		t.Errorf("TXT records in notours.example: %v", rrs)
	}
	assertProductionUnchanged(t, repointed)
	waitJournalEmpty(t, c.storage, 5*time.Second)
}

// TestFaultShutdownMidChallenge: Caddy is stopped (SIGTERM) while a
// challenge waits between present and validation. The challenge's context
// is cancelled and the process exits; the record is deleted before it does,
// and its journal entry with it.
func TestFaultShutdownMidChallenge(t *testing.T) {
	requireLab(t)
	name := randomLabel(t, "ft-") + "." + "example.com"
	delegate(t, name)
	before := productionSerials(t)
	c := startCaddyfileOn(t, "", "debug", templateSite(name, rfc2136(), "", "propagation_delay 30s"))
	waitAliasTXT(t, aliasOf(name), 30*time.Second, c)
	if len(journal(t, c.storage)) != 1 {
		t.Errorf("journal while the challenge is presented: %+v, want one entry", journal(t, c.storage))
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	took := c.waitExit(30 * time.Second)
	by := "nothing in the log"
	for _, l := range c.logLines() {
		switch l.Msg {
		case "deleted challenge from alias":
			by = "certmagic's cleanup of the cancelled challenge"
		case "deleted challenge record at shutdown":
			by = "the provider's own shutdown cleanup"
		}
	}
	t.Logf("caddy exited %s after SIGTERM; the record was deleted by %s", took.Round(time.Millisecond), by)
	// No waiting: whatever the exited process did not delete stays.
	if left := challengeTXT(t); len(left) > 0 {
		t.Errorf("challenge records left behind by a graceful stop: %v; log:\n%s", left, c.log.String())
	}
	if j := journal(t, c.storage); len(j) > 0 {
		t.Errorf("journal entries left by a graceful stop: %+v", j)
	}
	assertProductionUnchanged(t, before)
}

// TestCrashJournalSweep: Caddy is killed (SIGKILL) between present and
// cleanup. The TXT record stays in the alias zone and its journal entry in
// storage. Another instance sharing the storage has a challenge in flight,
// four times sweep_after, kept alive only by its renewals. Caddy restarts on
// the same storage with the crashed config's site and sweep settings; its
// sweep removes the orphan within one sweep of the entry's expiry, the other
// instance's record stays through a dozen of those sweeps until its own
// cleanup and its certificate is issued, the restarted Caddy obtains the
// certificate once the dead process's lock is stale, and in the end the
// alias zone and the journal are empty.
func TestCrashJournalSweep(t *testing.T) {
	requireLab(t)
	crashed, other := randomLabel(t, "cr-")+"."+"example.com", randomLabel(t, "co-")+"."+"example.com"
	delegate(t, crashed, other)
	before := productionSerials(t)
	storage := filepath.Join(t.TempDir(), "shared")
	const sweep = "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1s\n\t}"

	// The crashing instance holds its challenge open for 30 s; the other
	// one for 12 s, four times sweep_after. Both renew their entries every
	// second (a third of sweep_after) and sweep only at their start
	// (sweep_interval 1h): the restarted instance alone sweeps the
	// orphan, and the kill cannot catch the crashing one holding the sweep
	// lock (a dead holder's lock goes stale only after 10 s).
	const sweepOnce = "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1h\n\t}"
	k := startCaddyfileOn(t, storage, sweepOnce, templateSite(crashed, rfc2136(), "", "propagation_delay 30s"))
	b := startCaddyfileOn(t, storage, sweepOnce, templateSite(other, rfc2136(), "", "propagation_delay 12s"))
	orphan := waitAliasTXT(t, aliasOf(crashed), 30*time.Second, k)
	inFlight := waitAliasTXT(t, aliasOf(other), 30*time.Second, b)

	time.Sleep(time.Until(k.started.Add(sweepStart + time.Second)))
	k.cmd.Process.Signal(syscall.SIGKILL)
	k.waitExit(10 * time.Second)
	killed := time.Now()
	time.Sleep(500 * time.Millisecond)
	if got := aliasTXT(t, aliasOf(crashed)); !slices.Equal(got, orphan) {
		t.Fatalf("after kill -9 the alias holds %q, want the orphan %q", got, orphan)
	}
	var found bool
	for _, e := range journal(t, storage) {
		if e.Name == aliasOf(crashed) && e.Value == orphan[0] && e.Zone == "validation.example.org" && e.Writer == "rfc2136" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no journal entry for the orphan %s %q in %s: %+v", aliasOf(crashed), orphan[0], storage, journal(t, storage))
	}
	t.Logf("killed with the challenge presented; orphan %s %q and its journal entry are left", aliasOf(crashed), orphan[0])

	r := startCaddyfileOn(t, storage, sweep, templateSite(crashed, rfc2136(), "", ""))
	// first sweep after sweepStart, then every second; the entry expires
	// 3 s after its last renewal
	for deadline := time.Now().Add(sweepStart + 3*time.Second + 2*time.Second); slices.Contains(aliasTXT(t, aliasOf(crashed)), orphan[0]); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan is still there %s after the restart; log:\n%s", time.Since(r.started), r.log.String())
		}
	}
	t.Logf("orphan removed %s after the restart, %s after the kill", time.Since(r.started).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if l, ok := r.find("removed orphaned challenge record", "name", aliasOf(crashed)); !ok {
		t.Errorf("the restarted Caddy does not log the orphan's removal")
	} else if l.str("zone") != "validation.example.org" {
		t.Errorf("orphan removal logged for zone %q", l.str("zone"))
	}

	// The other instance's challenge is untouched until its own cleanup,
	// through many sweeps of the restarted instance.
	for {
		if _, ok := b.find("certificate obtained successfully", "identifier", other); ok {
			break
		}
		if !slices.Contains(aliasTXT(t, aliasOf(other)), inFlight[0]) {
			// Gone: acmez cleans up right after the authorization is
			// valid, and then logs it.
			if !b.waitFor("authorization finalized", "identifier", other, 3*time.Second) {
				t.Fatalf("the other instance's challenge record disappeared while it was in flight; restarted log:\n%s\nother log:\n%s", r.log.String(), b.log.String())
			}
			break
		}
		if time.Since(b.started) > 60*time.Second {
			t.Fatalf("the other instance got no certificate; log:\n%s", b.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.waitCert(other, 10*time.Second)
	for _, c := range []*caddyProc{r, b} {
		if _, ok := c.find("removed orphaned challenge record", "name", aliasOf(other)); ok {
			t.Errorf("the other instance's challenge was swept as an orphan")
		}
	}
	// The restarted instance gets its certificate once the dead
	// process's lock on the name is stale.
	cert, took := r.waitCert(crashed, 60*time.Second)
	assertNames(t, cert, crashed)
	t.Logf("restarted instance: certificate after %s; other instance: after %s", took.Round(time.Millisecond), time.Since(b.started).Round(time.Millisecond))
	assertNoChallengeLeft(t)
	waitJournalEmpty(t, storage, 5*time.Second)
	assertProductionUnchanged(t, before)
}

// TestClusterSharedStorage: two Caddy processes share one file_system
// storage and one config for 20 delegated names, 10 with a template alias
// each and 10 sharing one static alias (so values of both instances meet at
// one name). Each certificate is obtained exactly once, by one of them;
// both serve every name; no challenge fails (none lost its TXT value to the
// other instance's cleanup); the alias zone and the journal end empty.
func TestClusterSharedStorage(t *testing.T) {
	requireLab(t)
	label := randomLabel(t, "cl")
	static := "_acme-challenge." + label + ".validation.example.org"
	var templated, shared, records []string
	for i := 1; i <= 10; i++ {
		n := fmt.Sprintf("%s-t%02d.example.com", label, i)
		templated = append(templated, n)
		records = append(records, delegation(n))
		s := fmt.Sprintf("%s-s%02d.example.net", label, i)
		shared = append(shared, s)
		records = append(records, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.", s, static))
	}
	names := append(slices.Clone(templated), shared...)
	publish(t, records...)
	before := productionSerials(t)
	storage := filepath.Join(t.TempDir(), "shared")
	site := fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			zone validation.example.org
			alias _acme-challenge.{domain}.validation.example.org
			resolvers %s
			private_nameservers
			rule *.example.net {
				alias %s
			}
		}
		resolvers %s
	}
	respond "cluster"
}
`, strings.Join(names, ", "), rfc2136(), theLab.Resolver, static, theLab.Resolver)
	a := startCaddyfileOn(t, storage, "", site)
	b := startCaddyfileOn(t, storage, "", site)

	took := a.waitCerts(names, 120*time.Second)
	t.Logf("cluster: 20 certificates in the shared storage after %s", took.Round(time.Millisecond))

	// Both serve every name, the one that did not obtain it from storage.
	assertServesAll(t, theLab.VerifyPebbleChain, names, a, b)

	obtained := countBy("identifier", "certificate obtained successfully", a, b)
	byA := countBy("identifier", "certificate obtained successfully", a)
	total := 0
	for _, n := range names {
		total += obtained[n]
		if obtained[n] != 1 {
			t.Errorf("%s: obtained %d times by the two instances, want once", n, obtained[n])
		}
	}
	t.Logf("cluster: %d certificates obtained (%d by one instance, %d by the other); both serve all 20", total, len(byA), total-len(byA))
	if total != len(names) {
		t.Errorf("%d certificates obtained in all, want %d", total, len(names))
	}
	assertNoIssuanceErrors(t, a, b)
	a.stop()
	b.stop()
	assertNoChallengeLeft(t)
	waitJournalEmpty(t, storage, 5*time.Second)
	assertProductionUnchanged(t, before)
}
