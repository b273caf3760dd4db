package xcaddy_test

// Faults of the journal on shared storage (issue 33): a Redis outage longer
// than sweep_after while a certificate challenge or an acme-dns endpoint
// value is live, and kill -9 of a writer during its write and during its
// wait for the authoritative servers.

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// redisOutage is longer than the cluster's sweep_after: no owner can renew
// its entries while it lasts.
const redisOutage = 8 * time.Second

// stopRedis stops the lab's Redis (SHUTDOWN: it keeps its data, as a
// maintenance restart does); it is started again when the test ends, if
// the test did not.
func stopRedis(t *testing.T, ctx context.Context, l *lab.Lab) {
	t.Helper()
	t.Cleanup(func() {
		// up again whatever happens (a no-op when it is)
		if _, err := lab.Up(context.Background()); err != nil {
			t.Errorf("restarting redis: %v", err)
		}
	})
	if err := l.StopRedis(ctx); err != nil {
		t.Fatal(err)
	}
}

// stopRedisFor stops the lab's Redis for d and starts it again; it returns
// when Redis is back.
func stopRedisFor(t *testing.T, l *lab.Lab, d time.Duration) time.Time {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	stopRedis(t, ctx, l)
	time.Sleep(d)
	if _, err := lab.Up(ctx); err != nil {
		t.Fatalf("restarting redis: %v", err)
	}
	return time.Now()
}

// assertKeptThrough fails if value leaves name in the alias zone before
// until, or if any of cs logs having swept it.
func assertKeptThrough(t *testing.T, name, value string, until time.Time, cs ...*caddyProc) {
	t.Helper()
	for ; time.Now().Before(until); time.Sleep(200 * time.Millisecond) {
		if !slices.Contains(aliasTXT(t, name), value) {
			t.Errorf("the live value %q left %s %s before the check's end", value, name, time.Until(until).Round(time.Millisecond))
			break
		}
	}
	for _, c := range cs {
		for _, sl := range c.linesWith("removed orphaned challenge record", "name", name) {
			if sl.str("value") == value {
				t.Errorf("instance %s swept the live value %q at %s", c.admin, value, name)
			}
		}
	}
}

// TestClusterRedisOutageChallenge: three instances on Redis; a certificate
// challenge is presented and held open (propagation_delay 25s) when Redis
// stops for longer than sweep_after and comes back with its data. No sweep
// takes the live value: a sweeper counts an entry's age from when it saw
// the storage reachable again, and the owner renews first. The certificate
// is issued and served by the instance that obtained it, and nothing is
// left.
func TestClusterRedisOutageChallenge(t *testing.T) {
	l := requireLab(t)
	names := clusterNames(t, "ro", 1)
	before := productionSerials(t)
	umark := l.AliasUpdateMark()
	cl := startCluster(t, l, "", templateSite(names[0], rfc2136(), "", "propagation_delay 25s"))
	alias := aliasOf(names[0])
	var value string
	for deadline := time.Now().Add(60 * time.Second); value == ""; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not presented after 60 s", names[0])
		}
		for _, c := range cl.nodes {
			if p, ok := c.find("presented challenge on alias", "domain", names[0]); ok && slices.Contains(aliasTXT(t, alias), p.str("value")) {
				value = p.str("value")
			}
		}
	}
	back := stopRedisFor(t, l, redisOutage)
	t.Logf("redis down for %s with %s %q presented", redisOutage, alias, value)
	// sweep_after of reachable storage, two sweeps and a margin
	assertKeptThrough(t, alias, value, back.Add(clusterSweepAfter+2*clusterSweepInterval+time.Second), cl.nodes...)
	// The instance that presented the challenge obtains and serves the
	// certificate. The others, waiting for its certificate lock when
	// Redis went down, fail their obtain jobs ("unable to acquire lock
	// ... connection refused"); whether they serve it yet is logged, not
	// asserted: certmagic does not retry those jobs at once.
	var obtainer *caddyProc
	for deadline := time.Now().Add(90 * time.Second); obtainer == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no instance obtained the certificate of %s within 90 s", names[0])
		}
		for _, c := range cl.nodes {
			if _, ok := c.find("certificate obtained successfully", "identifier", names[0]); ok {
				obtainer = c
			}
		}
	}
	assertServesAll(t, theLab.VerifyPebbleChain, names, obtainer)
	for _, c := range cl.others(obtainer) {
		chain, err := c.handshake(names[0], 5*time.Second)
		if err == nil {
			err = theLab.VerifyPebbleChain(testCtx(t, 30*time.Second), chain, names[0])
		}
		_, failed := c.find("job failed", "", "")
		t.Logf("instance %s %s after Redis came back: serves the certificate: %v (its obtain job failed: %v)", c.admin, time.Since(back).Round(time.Millisecond), err == nil, failed)
	}
	cl.assertLeftClean(umark, before)
}

// TestClusterRedisOutageEndpoint: three instances on Redis serve one
// acme-dns account; a value written through the first stays served across
// a Redis outage longer than sweep_after, through the sweeps after it.
func TestClusterRedisOutageEndpoint(t *testing.T) {
	l := requireLab(t)
	a := newEndpointAccount(t)
	cl := startCluster(t, l, "", endpointSite("{$CLUSTER_HTTP_PORT}", "", a))
	bases := cl.endpointBases()
	value := randomDigest(t)
	code, reply := postUpdate(t, bases[0], a, value)
	if code != http.StatusOK || !slices.Contains(aliasTXT(t, a.fullDomain()), value) {
		t.Fatalf("update: %d %s; %s holds %q", code, reply, a.fullDomain(), aliasTXT(t, a.fullDomain()))
	}
	back := stopRedisFor(t, l, redisOutage)
	t.Logf("redis down for %s with %s %q written", redisOutage, a.fullDomain(), value)
	assertKeptThrough(t, a.fullDomain(), value, back.Add(clusterSweepAfter+2*clusterSweepInterval+time.Second), cl.nodes...)
}

// replyLagProxy relays TCP DNS connections to upstream at once and, while
// lagging, holds the answers back for lag: an update reaches the server
// while its client still waits (and times out, and retries). Connections
// accepted once lagging is off are relayed both ways at once.
type replyLagProxy struct {
	addr    string
	lagging atomic.Bool
}

func startReplyLagProxy(t *testing.T, upstream string, lag time.Duration) *replyLagProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyLagProxy{addr: ln.Addr().String()}
	p.lagging.Store(true)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			hold := p.lagging.Load()
			wg.Go(func() {
				defer client.Close()
				up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, client)
				if hold {
					select {
					case <-time.After(lag):
					case <-done:
						return
					}
				}
				client.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(client, up)
			})
		}
	})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	return p
}

// TestClusterRedisKillMidWrite: three instances on Redis; the instance
// obtaining a name is killed (-9) once its value reached BIND, while the
// write is still under way (BIND's answers held back longer than the
// client waits) and while the authoritative wait is (the alias zone gets a
// second nameserver that never answers). The entry is leased for
// sweep_after and renewed as the write goes on, so a survivor's sweep
// removes the dead writer's value within sweep_after + sweep_interval of
// the kill, in either phase.
func TestClusterRedisKillMidWrite(t *testing.T) {
	l := requireLab(t)
	for _, tc := range []struct {
		phase string
		// setup returns the rfc2136 provider block and what ends the
		// fault once the writer is dead, so that the survivors' deletes
		// get their answers
		setup func(t *testing.T) (string, func())
	}{
		{"during the write", func(t *testing.T) (string, func()) {
			p := startReplyLagProxy(t, l.AuthA, time.Minute)
			return lab.RFC2136Block(l.CaddyKey.Name, "{env.TSIG_SECRET}", p.addr), func() { p.lagging.Store(false) }
		}},
		{"during the authoritative wait", func(t *testing.T) (string, func()) {
			ns := randomLabel(t, "ns-") + ".example.com"
			publish(t, ns+". 60 IN A 127.0.0.99", l.AliasZone+". 60 IN NS "+ns+".")
			return rfc2136(), func() {}
		}},
	} {
		t.Run(tc.phase, func(t *testing.T) {
			names := clusterNames(t, "kw", 1)
			alias := aliasOf(names[0])
			provider, endFault := tc.setup(t)
			cl := startCluster(t, l, "", templateSite(names[0], provider, "", ""))
			var victim *caddyProc
			var value string
			for deadline := time.Now().Add(60 * time.Second); value == ""; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no value of %s reached BIND within 60 s", names[0])
				}
				for _, e := range cl.journal() {
					if e.Name == alias && slices.Contains(aliasTXT(t, alias), e.Value) {
						value = e.Value
					}
				}
			}
			for _, c := range cl.nodes {
				if len(c.linesWith("lock acquired", "identifier", names[0])) > 0 {
					victim = c
				}
			}
			if victim == nil {
				t.Fatalf("no instance logs taking the lock of %s", names[0])
			}
			if _, ok := victim.find("presented challenge on alias", "domain", names[0]); ok {
				t.Fatalf("the write of %s finished before the kill; the phase was not caught", names[0])
			}
			victim.cmd.Process.Signal(syscall.SIGKILL)
			victim.waitExit(10 * time.Second)
			killed := time.Now()
			endFault()
			bound := clusterSweepAfter + clusterSweepInterval
			for slices.Contains(aliasTXT(t, alias), value) {
				if time.Since(killed) > bound+time.Second {
					t.Fatalf("the dead writer's %s %q is still there %s after the kill, more than sweep_after + sweep_interval (%s)", alias, value, time.Since(killed).Round(time.Millisecond), bound)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%s: the dead writer's value removed %s after the kill", tc.phase, time.Since(killed).Round(time.Millisecond))
			// The survivor logs the removal once its delete returned,
			// which may be after the poll saw the value gone.
			var by []string
			for deadline := time.Now().Add(5 * time.Second); len(by) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				for _, c := range cl.others(victim) {
					for _, sl := range c.linesWith("removed orphaned challenge record", "name", alias) {
						if sl.str("value") == value {
							by = append(by, c.admin)
						}
					}
				}
			}
			if len(by) != 1 {
				t.Errorf("removal of %q logged by %v, want one survivor", value, by)
			}
			// The survivors, obtaining the name meanwhile, stop and
			// clean up: nothing is left.
			for _, c := range cl.others(victim) {
				c.stop()
			}
			assertNoChallengeLeft(t)
		})
	}
}
