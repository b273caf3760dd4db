package xcaddy_test

// A real cluster (issue 12): three Caddy instances on the lab's Redis
// (caddy-storage-redis), all running one Caddyfile, byte for byte: the
// admin, HTTP and HTTPS ports that differ come from each instance's
// environment ({$CLUSTER_ADMIN} ...), as one config file deployed to
// several hosts does. Each scenario has a Redis key prefix of its own, so
// that it sees no other test's certificates, locks or journal.
//
// What each instance wrote and deleted comes from its own log (the value is
// on the plugin's lines); what reached DNS from BIND's update log; orders
// from Pebble's log; locks and the journal from Redis itself.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/solver"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

const (
	clusterSize = 3
	// The cluster's sweep settings: small, so that a dead instance's
	// orphans go within seconds.
	clusterSweepAfter    = 3 * time.Second
	clusterSweepInterval = time.Second
	// redisLockTTL is caddy-storage-redis v1.8.1's lock lease (lockTTL,
	// refreshed every 3 s by its holder): a dead holder's lock is gone at
	// most this long after the kill.
	redisLockTTL = 5 * time.Second
)

// cluster is clusterSize Caddy instances on one Redis key prefix and one
// Caddyfile.
type cluster struct {
	t      *testing.T
	prefix string
	config string // the Caddyfile every node runs
	nodes  []*caddyProc
}

// clusterConfig is the one Caddyfile of a cluster: the lab's global options
// with ca's ACME directory, storage redis under prefix, the ports from the
// node's environment, the debug log (the plugin logs deletions at debug),
// the cluster's sweep settings and extraGlobal; then sites.
func clusterConfig(ca *lab.Lab, prefix, extraGlobal, sites string) string {
	extra := fmt.Sprintf("debug\n\tdns_alias {\n\t\tsweep_after %s\n\t\tsweep_interval %s\n\t}\n\t%s",
		clusterSweepAfter, clusterSweepInterval, extraGlobal)
	return ca.CaddyGlobals("{$CLUSTER_ADMIN}", ca.RedisStorage(prefix), "{$CLUSTER_HTTP_PORT}", "{$CLUSTER_HTTPS_PORT}", extra) + "\n" + sites
}

// startCluster starts clusterSize instances of clusterConfig on a fresh
// key prefix, whose keys are deleted from Redis when the test ends.
func startCluster(t *testing.T, ca *lab.Lab, extraGlobal, sites string) *cluster {
	t.Helper()
	l := requireLab(t)
	prefix := randomLabel(t, "cluster-")
	// Registered before the nodes' stops, so it runs after them.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		keys, err := l.RedisKeys(ctx, prefix+"/*")
		for _, k := range keys {
			if _, err := l.Redis(ctx, "DEL", k); err != nil {
				t.Logf("deleting redis key %s: %v", k, err)
			}
		}
		if err != nil {
			t.Logf("listing redis keys under %s: %v", prefix, err)
		}
	})
	cl := &cluster{t: t, prefix: prefix, config: clusterConfig(ca, prefix, extraGlobal, sites)}
	for range clusterSize {
		c := newCaddy(t)
		c.redisPrefix = prefix
		c.env = []string{"CLUSTER_ADMIN=" + c.admin, fmt.Sprintf("CLUSTER_HTTP_PORT=%d", freePort(t)), fmt.Sprintf("CLUSTER_HTTPS_PORT=%d", c.httpsPort)}
		path := filepath.Join(c.dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(cl.config), 0o600); err != nil {
			t.Fatal(err)
		}
		c.start("run", "--config", path, "--adapter", "caddyfile")
		cl.nodes = append(cl.nodes, c)
	}
	return cl
}

// journal reads the challenge journal in the cluster's Redis storage.
func (cl *cluster) journal() []solver.JournalEntry {
	t := cl.t
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	keys, err := theLab.RedisStorageKeys(ctx, cl.prefix, "dns_alias/journal")
	if err != nil {
		t.Fatalf("listing the journal in redis: %v", err)
	}
	var out []solver.JournalEntry
	for _, k := range keys {
		data, ok, err := theLab.RedisLoad(ctx, cl.prefix, k)
		if err != nil {
			t.Fatalf("journal entry %s: %v", k, err)
		}
		if !ok {
			continue // removed meanwhile
		}
		var e solver.JournalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("journal entry %s: %v", k, err)
		}
		out = append(out, e)
	}
	return out
}

// waitJournalEmpty fails unless the journal in Redis empties within
// timeout.
func (cl *cluster) waitJournalEmpty(timeout time.Duration) {
	cl.t.Helper()
	var left []solver.JournalEntry
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if left = cl.journal(); len(left) == 0 {
			return
		}
	}
	cl.t.Errorf("the challenge journal in redis (prefix %s) still holds %+v", cl.prefix, left)
}

// assertLeftClean is the end of every cluster scenario: no TXT record is
// left in the alias zones and no entry in the journal in Redis (a sweep
// may still have to take one: a delete that failed while Redis was down),
// BIND's update log agrees with what each node logged writing and
// deleting since umark (see assertOwnDeletes; dead are nodes killed), and
// no production zone changed since before.
func (cl *cluster) assertLeftClean(umark int64, before map[string]uint32, dead ...*caddyProc) {
	t := cl.t
	t.Helper()
	assertNoChallengeLeft(t)
	cl.waitJournalEmpty(clusterSweepAfter + 2*clusterSweepInterval + 5*time.Second)
	assertOwnDeletes(t, umark, cl.nodes, dead...)
	assertProductionUnchanged(t, before)
}

// others returns the nodes but c.
func (cl *cluster) others(c *caddyProc) []*caddyProc {
	return slices.DeleteFunc(slices.Clone(cl.nodes), func(o *caddyProc) bool { return o == c })
}

// clusterNames are n fresh names, alternately in example.com and
// example.net, delegated to the template alias.
func clusterNames(t *testing.T, prefix string, n int) []string {
	t.Helper()
	label := randomLabel(t, prefix)
	var names []string
	for i := range n {
		zone := []string{"example.com", "example.net"}[i%2]
		names = append(names, fmt.Sprintf("%s-%02d.%s", label, i, zone))
	}
	delegate(t, names...)
	return names
}

// assertServesAll fails unless each of cs serves, for every name, a
// certificate that verify accepts for it (a node that did not obtain it
// loads it from the shared storage; it may take a moment).
func assertServesAll(t *testing.T, verify func(context.Context, []*x509.Certificate, string) error, names []string, cs ...*caddyProc) {
	t.Helper()
	for _, c := range cs {
		for _, n := range names {
			var err error
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				var chain []*x509.Certificate
				if chain, err = c.handshake(n, 3*time.Second); err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err = verify(ctx, chain, n)
					cancel()
				}
				if err == nil || time.Now().After(end) {
					break
				}
			}
			if err != nil {
				t.Errorf("instance %s does not serve a Pebble certificate for %s: %v", c.admin, n, err)
			}
		}
	}
}

// assertNoIssuanceErrors fails on every error line of cs about obtaining
// or cleaning up, and on every error of the alias provider.
func assertNoIssuanceErrors(t *testing.T, cs ...*caddyProc) {
	t.Helper()
	for _, c := range cs {
		for _, l := range c.logLines() {
			if l.Level == "error" && (l.Msg == "could not get certificate from issuer" || l.Msg == "cleaning up solver" || strings.Contains(l.Logger, "dns.providers.alias")) {
				t.Errorf("instance %s: %s", c.admin, l.raw)
			}
		}
	}
}

// assertObtainedOnce fails unless each name was obtained exactly once by
// cs together, and returns how many each obtained.
func assertObtainedOnce(t *testing.T, names []string, cs ...*caddyProc) []int {
	t.Helper()
	obtained := countBy("identifier", "certificate obtained successfully", cs...)
	for _, n := range names {
		if obtained[n] != 1 {
			t.Errorf("%s: obtained %d times by the instances, want once", n, obtained[n])
		}
	}
	var per []int
	for _, c := range cs {
		per = append(per, len(countBy("identifier", "certificate obtained successfully", c)))
	}
	return per
}

// assertOneOrderEach fails unless Pebble's log since mark shows exactly
// len(names)+extraOrders orders, and one validation and one certificate
// for each name: one order per name (the extra ones are orders placed and
// never validated, e.g. by an instance killed mid-challenge).
func assertOneOrderEach(t *testing.T, mark int64, names []string, extraOrders int) pebbleSeen {
	t.Helper()
	seen := pebbleSince(t, mark)
	if seen.orders != len(names)+extraOrders || seen.issued != len(names) {
		t.Errorf("pebble saw %d orders and issued %d certificates for %d names, want %d orders and %d certificates",
			seen.orders, seen.issued, len(names), len(names)+extraOrders, len(names))
	}
	for _, n := range names {
		if seen.validated[n] != 1 {
			t.Errorf("pebble validated %d challenges for %s, want 1", seen.validated[n], n)
		}
	}
	return seen
}

// challengeLog is what one instance logged writing and deleting in the
// alias zone: the values per alias name.
type challengeLog struct {
	wrote, deleted, swept map[string][]string
}

func challengesOf(c *caddyProc) challengeLog {
	cl := challengeLog{wrote: map[string][]string{}, deleted: map[string][]string{}, swept: map[string][]string{}}
	for _, l := range c.logLines() {
		v := l.str("value")
		switch l.Msg {
		case "presented challenge on alias":
			cl.wrote[l.Alias] = append(cl.wrote[l.Alias], v)
		case "deleted challenge from alias", "deleted challenge record at shutdown":
			cl.deleted[l.Alias] = append(cl.deleted[l.Alias], v)
		case "removed orphaned challenge record":
			cl.swept[l.str("name")] = append(cl.swept[l.str("name")], v)
		}
	}
	return cl
}

// assertOwnDeletes compares BIND's update log of the alias zone since
// mark with what each of cs logged: every TXT that BIND added is one value
// that exactly one instance logged writing; every instance deleted only
// values it wrote itself, except that a sweep may remove the values of a
// dead instance (a node in dead); BIND deleted at each name exactly as
// many times as the instances logged deleting there (so no delete went
// unlogged), never a whole TXT set, and as often as it added (nothing is
// left). BIND does not log a deleted record's value, so deletes are
// matched by name: under a template alias each name is one domain's.
func assertOwnDeletes(t *testing.T, mark int64, cs []*caddyProc, dead ...*caddyProc) {
	t.Helper()
	updates, err := theLab.AliasUpdatesSince(mark)
	if err != nil {
		t.Fatal(err)
	}
	logs := make([]challengeLog, len(cs))
	for i, c := range cs {
		logs[i] = challengesOf(c)
	}
	writer := map[string]int{} // name + " " + value -> index in cs
	for i, l := range logs {
		for name, values := range l.wrote {
			for _, v := range values {
				if j, ok := writer[name+" "+v]; ok && j != i {
					t.Errorf("TXT %s %q logged as written by instances %s and %s", name, v, cs[j].admin, cs[i].admin)
				}
				writer[name+" "+v] = i
			}
		}
	}
	isDead := func(i int) bool { return slices.Contains(dead, cs[i]) }
	logged := map[string]int{}
	for i, l := range logs {
		for name, values := range l.deleted {
			for _, v := range values {
				logged[name]++
				if j, ok := writer[name+" "+v]; !ok || j != i {
					t.Errorf("instance %s deleted TXT %s %q, which it did not write", cs[i].admin, name, v)
				}
			}
		}
		for name, values := range l.swept {
			for _, v := range values {
				logged[name]++
				if j, ok := writer[name+" "+v]; !ok || !isDead(j) {
					t.Errorf("instance %s swept TXT %s %q, which no dead instance wrote", cs[i].admin, name, v)
				}
			}
		}
	}
	added, deleted := map[string]int{}, map[string]int{}
	for _, u := range updates {
		if u.Zone != aliasZone {
			continue
		}
		switch u.Op {
		case "add":
			added[u.Name]++
			if _, ok := writer[u.Name+" "+u.Value]; !ok {
				t.Errorf("BIND added TXT %s %q, which no instance logged writing", u.Name, u.Value)
			}
		case "delete":
			deleted[u.Name]++
		default:
			t.Errorf("BIND logged %s at %s %s: a whole set was deleted", u.Op, u.Name, u.Type)
		}
	}
	for name, n := range deleted {
		if logged[name] != n {
			t.Errorf("BIND deleted %d times at %s, the instances logged %d deletes there", n, name, logged[name])
		}
	}
	for name, n := range added {
		if deleted[name] != n {
			t.Errorf("BIND added %d values at %s and deleted %d", n, name, deleted[name])
		}
	}
	if len(added) == 0 {
		t.Errorf("BIND logged no update of %s since the mark: nothing to compare", aliasZone)
	}
}

// TestClusterRedisManaged: three instances, one template policy for 60
// names, on Redis. Pebble sees one order per name; every instance serves
// every certificate; no TXT record is left in the alias zone and no entry
// in the journal in Redis; no instance deleted a value another wrote.
func TestClusterRedisManaged(t *testing.T) {
	l := requireLab(t)
	names := clusterNames(t, "rm", 60)
	before := productionSerials(t)
	mark, umark := pebbleMark(t), l.AliasUpdateMark()
	cl := startCluster(t, l, "", templateSite(strings.Join(names, ", "), rfc2136(), "", ""))

	took := cl.nodes[0].waitCerts(names, 180*time.Second)
	seen := assertOneOrderEach(t, mark, names, 0)
	per := assertObtainedOnce(t, names, cl.nodes...)
	t.Logf("cluster on redis: 60 certificates after %s; obtained %v by the three instances; pebble: %d orders, %d issued",
		took.Round(time.Millisecond), per, seen.orders, seen.issued)
	assertServesAll(t, theLab.VerifyPebbleChain, names, cl.nodes...)
	assertNoIssuanceErrors(t, cl.nodes...)
	// While the instances still run: nothing left behind by the cleanups.
	cl.assertLeftClean(umark, before)
}

// TestClusterRedisOnDemand: on-demand TLS with the permission module on
// three instances on Redis. 20 delegated names are handshaked round robin,
// each first with one instance and then with the two others: each is
// ordered once and served by all three with the same certificate. Names
// that are not delegated fail at every instance and place no order.
func TestClusterRedisOnDemand(t *testing.T) {
	l := requireLab(t)
	names := clusterNames(t, "ro", 20)
	undelegated := []string{randomLabel(t, "ru-") + ".example.com", randomLabel(t, "ru-") + ".example.net"}
	before := productionSerials(t)
	cl := startCluster(t, l, onDemandGlobals(), onDemandSite)
	for _, c := range cl.nodes {
		c.waitListening(20 * time.Second)
	}
	mark, umark := pebbleMark(t), l.AliasUpdateMark()

	start := time.Now()
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			var first *x509.Certificate
			for k := range clusterSize {
				c := cl.nodes[(i+k)%clusterSize]
				timeout := 30 * time.Second
				if k == 0 {
					timeout = 170 * time.Second // the first obtains it
				}
				chain, err := c.handshake(name, timeout)
				if err != nil {
					t.Errorf("handshake %d with %s at instance %s: %v", k+1, name, c.admin, err)
					return
				}
				assertPebbleCert(t, chain, name)
				if first == nil {
					first = chain[0]
				} else if chain[0].SerialNumber.Cmp(first.SerialNumber) != 0 {
					t.Errorf("%s: instance %s serves serial %x, the first instance %x", name, c.admin, chain[0].SerialNumber, first.SerialNumber)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("on demand: 20 names handshaked with all three instances after %s", time.Since(start).Round(time.Millisecond))
	for _, name := range undelegated {
		for _, c := range cl.nodes {
			if chain, err := c.handshake(name, 30*time.Second); err == nil {
				t.Errorf("handshake with the undelegated %s at %s succeeded with a certificate for %v", name, c.admin, chain[0].DNSNames)
			}
		}
	}
	time.Sleep(time.Second) // Pebble logs an order as it answers it
	seen := assertOneOrderEach(t, mark, names, 0)
	for _, name := range undelegated {
		if seen.validated[name] != 0 {
			t.Errorf("pebble validated a challenge for the undelegated %s", name)
		}
		for _, c := range cl.nodes {
			if _, ok := c.find("presented challenge on alias", "domain", name); ok {
				t.Errorf("instance %s presented a challenge for the undelegated %s", c.admin, name)
			}
		}
	}
	per := assertObtainedOnce(t, names, cl.nodes...)
	t.Logf("on demand: obtained %v by the three instances; pebble: %d orders", per, seen.orders)
	assertNoIssuanceErrors(t, cl.nodes...)
	cl.assertLeftClean(umark, before)
}

// TestClusterRedisKill: three instances on Redis obtain 9 names, each
// challenge held open by propagation_delay. Once every name's record is in
// the alias zone, the instance presenting the most of them is killed
// (SIGKILL). The survivors' sweep removes the dead instance's records
// within sweep_after plus sweep_interval; its certificate locks in Redis
// stay until they expire (no one releases them), and only then does a
// survivor take each and obtain the certificate. Each name is validated
// once; nothing is left in the alias zone or the journal.
func TestClusterRedisKill(t *testing.T) {
	l := requireLab(t)
	names := clusterNames(t, "rk", 9)
	before := productionSerials(t)
	mark, umark := pebbleMark(t), l.AliasUpdateMark()
	cl := startCluster(t, l, "", templateSite(strings.Join(names, ", "), rfc2136(), "", "propagation_delay 8s"))

	// Wait until every name's challenge is presented and served by the
	// alias zone.
	presenter := map[string]*caddyProc{}
	for deadline := time.Now().Add(60 * time.Second); len(presenter) < len(names); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d names presented after 60 s", len(presenter), len(names))
		}
		for _, c := range cl.nodes {
			for _, p := range c.presented() {
				if slices.Contains(aliasTXT(t, p.Alias), p.str("value")) {
					presenter[p.Domain] = c
				}
			}
		}
	}
	victim := cl.nodes[0]
	counts := map[*caddyProc]int{}
	for _, c := range presenter {
		counts[c]++
		if counts[c] > counts[victim] {
			victim = c
		}
	}
	var victimNames []string
	orphans := map[string]string{} // alias -> value
	for _, p := range victim.presented() {
		victimNames = append(victimNames, p.Domain)
		orphans[p.Alias] = p.str("value")
	}
	survivors := cl.others(victim)

	// A node killed while it holds the sweep lock would delay the
	// survivors' sweeps until that lock expires too: kill between sweeps.
	ctx := testCtx(t, 2*time.Minute)
	sweepLock := lab.RedisLockKey(cl.prefix, "dns_alias_journal_sweep")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		held, err := l.Redis(ctx, "EXISTS", sweepLock)
		if err != nil {
			t.Fatal(err)
		}
		if held == int64(0) || time.Now().After(deadline) {
			break
		}
	}
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.waitExit(10 * time.Second)
	killed := time.Now()
	t.Logf("killed instance %s presenting %d of %d names: %v", victim.admin, len(victimNames), len(names), victimNames)
	// The dead instance's certificate locks: each holder's lock has a
	// token of its own as its value.
	lockToken := func(n string) string {
		v, _, err := l.RedisGet(ctx, lab.RedisLockKey(cl.prefix, "issue_cert_"+n))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	deadLocks := map[string]string{}
	for _, n := range victimNames {
		if deadLocks[n] = lockToken(n); deadLocks[n] == "" {
			t.Errorf("%s: no certificate lock in redis right after the kill of the instance obtaining it", n)
		}
	}

	for alias, v := range orphans {
		if !slices.Contains(aliasTXT(t, alias), v) {
			t.Errorf("right after the kill %s lacks the dead instance's value %q", alias, v)
		}
	}
	inJournal := map[string]bool{}
	for _, e := range cl.journal() {
		inJournal[e.Name+" "+e.Value] = true
	}
	for alias, v := range orphans {
		if !inJournal[alias+" "+v] {
			t.Errorf("no journal entry in redis for the dead instance's %s %q", alias, v)
		}
	}

	// Until each orphan is gone and each dead lock expired (gone, or taken
	// by a survivor), note when.
	// held is when the dead lock was last seen still held: no survivor may
	// take it before then. expired is when it was first seen gone, later
	// than it went by up to one round of this loop (its DNS and Redis
	// questions take a while on a busy machine), so it is only logged.
	gone, expired, held := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	for deadline := time.Now().Add(30 * time.Second); len(gone) < len(orphans) || len(expired) < len(victimNames); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the kill: orphans removed %v of %v, locks expired %v of %v", gone, orphans, expired, victimNames)
		}
		for alias, v := range orphans {
			if _, ok := gone[alias]; !ok && !slices.Contains(aliasTXT(t, alias), v) {
				gone[alias] = time.Since(killed)
			}
		}
		for _, n := range victimNames {
			if _, ok := expired[n]; ok {
				continue
			}
			asked := time.Since(killed)
			if lockToken(n) != deadLocks[n] {
				expired[n] = time.Since(killed)
			} else {
				held[n] = asked
			}
		}
	}
	bound := clusterSweepAfter + clusterSweepInterval
	for alias, d := range gone {
		t.Logf("orphan %s removed %s after the kill", alias, d.Round(time.Millisecond))
		// 500 ms for the delete to reach BIND and the poll to see it
		if d > bound+500*time.Millisecond {
			t.Errorf("orphan %s removed %s after the kill, later than sweep_after + sweep_interval (%s)", alias, d, bound)
		}
		var by []string
		for _, c := range survivors {
			for _, sl := range c.linesWith("removed orphaned challenge record", "name", alias) {
				if sl.str("value") == orphans[alias] {
					by = append(by, c.admin)
				}
			}
		}
		if len(by) != 1 {
			t.Errorf("orphan %s: removal logged by %v, want one survivor", alias, by)
		}
	}

	// The survivors obtain the dead instance's names, each only after its
	// lock expired.
	took := survivors[0].waitCerts(victimNames, 90*time.Second)
	for _, n := range victimNames {
		if expired[n] < time.Second {
			t.Errorf("%s: the dead instance's lock was gone %s after the kill; it was released, not expired", n, expired[n])
		}
		var first time.Time
		for _, c := range survivors {
			for _, ll := range c.linesWith("lock acquired", "identifier", n) {
				if first.IsZero() || ll.TS.Before(first) {
					first = ll.TS
				}
			}
		}
		if first.IsZero() {
			t.Errorf("%s: no survivor logs acquiring its lock", n)
			continue
		}
		// A survivor that takes the lock while the dead instance's token is
		// still in Redis took a lock that had not expired.
		if at := first.Sub(killed); at < held[n] {
			t.Errorf("%s: a survivor took the lock %s after the kill, while the dead instance's was still held (seen %s after the kill)", n, at, held[n])
		} else {
			t.Logf("%s: dead lock expired %s after the kill; a survivor took it %s after", n, expired[n].Round(time.Millisecond), at.Round(time.Millisecond))
		}
	}
	t.Logf("the survivors hold the dead instance's %d certificates %s after their start", len(victimNames), took.Round(time.Millisecond))
	assertOneOrderEach(t, mark, names, len(victimNames))
	assertObtainedOnce(t, names, survivors...)
	assertServesAll(t, theLab.VerifyPebbleChain, names, survivors...)
	cl.assertLeftClean(umark, before, victim)
}

// TestClusterRedisRestart: Redis restarts while three instances run
// (on demand, against a Pebble of the test's own without retryAfter). One
// instance has used up certmagic's 10 orders per 10 s on 10 names, so the
// 11th name's obtain holds its lock and waits in the rate limiter; Redis
// goes down during that wait. The challenge then fails when its journal
// entry cannot be stored, with an error naming the storage, and nothing
// reaches DNS for it. Redis comes back (with what it held); certmagic
// retries the obtain a minute after the failure (its first retry
// interval) and gets the certificate, which all three then serve. Nothing
// is left behind.
func TestClusterRedisRestart(t *testing.T) {
	l := requireLab(t)
	p := startPebble(t, 0)
	names := clusterNames(t, "rr", 12)
	fill, late, warm := names[:10], names[10], names[11]
	before := productionSerials(t)
	cl := startCluster(t, &p.lab, onDemandGlobals(), onDemandSite)
	for _, c := range cl.nodes {
		c.waitListening(20 * time.Second)
	}
	a := cl.nodes[0]
	umark := l.AliasUpdateMark()

	// Another instance registers the cluster's ACME account first: a node
	// that finds no account registers it under a lock in Redis, which the
	// fill's obtains would otherwise take in turn, a second apart.
	if _, err := cl.nodes[1].handshake(warm, 60*time.Second); err != nil {
		t.Fatalf("handshake with %s: %v", warm, err)
	}
	var wg sync.WaitGroup
	for _, name := range fill {
		wg.Go(func() {
			chain, err := a.handshake(name, 60*time.Second)
			if err != nil {
				t.Errorf("handshake with %s: %v", name, err)
				return
			}
			if err := p.lab.VerifyPebbleChain(testCtx(t, 30*time.Second), chain, name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The handshake that starts the obtain; Caddy ends it after its
	// read_header_timeout (a minute), which certmagic's retry outlasts.
	wg.Go(func() { a.handshake(late, 90*time.Second) })
	defer wg.Wait()
	isLate := func(ll logLine) bool {
		ids, _ := ll.Fields["identifiers"].([]any)
		return len(ids) == 1 && ids[0] == late
	}
	a.waitMatch("waiting on internal rate limiter for "+late, 20*time.Second, func(ll logLine) bool {
		return ll.Msg == "waiting on internal rate limiter" && isLate(ll)
	})
	ctx := testCtx(t, 4*time.Minute)
	stopRedis(t, ctx, l)
	stopped := time.Now()
	if ll, ok := a.pollLine(0, func(ll logLine) bool { return ll.Msg == "done waiting on internal rate limiter" && isLate(ll) }); ok && ll.TS.Before(stopped) {
		t.Fatalf("the rate limiter let %s go before redis was down; the scenario did not happen", late)
	}
	t.Logf("redis stopped while %s waits in the rate limiter", late)

	fail := a.waitLine("could not get certificate from issuer", "identifier", late, 30*time.Second)
	msg := fail.str("error")
	t.Logf("with redis down: %s", msg)
	for _, want := range []string{"in the journal before writing it", "in storage caddy.storage.redis", l.RedisAddr} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure does not say %q: %s", want, msg)
		}
	}
	if _, ok := a.find("presented challenge on alias", "domain", late); ok {
		t.Errorf("%s: presented although its journal entry could not be stored", late)
	}
	updates, err := l.AliasUpdatesSince(umark)
	if err != nil {
		t.Fatal(err)
	}
	var fillUpdates int
	for _, u := range updates {
		if u.Name == aliasOf(late) {
			t.Errorf("%s reached DNS while its journal write failed: %+v", late, u)
		}
		if u.Zone == aliasZone {
			fillUpdates++
		}
	}

	if _, err := lab.Up(ctx); err != nil {
		t.Fatalf("restarting redis: %v", err)
	}
	back := time.Now()
	t.Logf("redis back %s after it stopped", back.Sub(stopped).Round(time.Millisecond))
	if pem, ok, err := l.RedisCert(ctx, cl.prefix, fill[0]); err != nil || !ok || len(pem) == 0 {
		t.Errorf("after the restart redis lacks the certificate of %s (%v, %v)", fill[0], ok, err)
	}
	// certmagic retries a minute after the failure
	obtained := a.waitLine("certificate obtained successfully", "identifier", late, time.Until(fail.TS.Add(90*time.Second)))
	t.Logf("%s obtained %s after redis came back, %s after the failed attempt", late,
		obtained.TS.Sub(back).Round(time.Millisecond), obtained.TS.Sub(fail.TS).Round(time.Millisecond))
	assertServesAll(t, p.lab.VerifyPebbleChain, names, cl.nodes...)
	assertObtainedOnce(t, names, cl.nodes...)
	if fillUpdates == 0 {
		t.Errorf("no update of the alias zone before redis stopped: the fill names' challenges were not seen")
	}
	cl.assertLeftClean(umark, before)
}
