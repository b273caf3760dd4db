package xcaddy_test

// The acme-dns endpoint (http.handlers.acme_dns_server) against a real
// client no one here wrote: lego's acme-dns provider, built by
// lab/build-lego.sh, obtaining from Pebble through
// _acme-challenge.<domain> CNAME <subdomain>.validation.example.org.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// endpointAccount is an acme-dns account of the endpoint, with its key in
// the clear (the client's side) and its bcrypt hash (the server's), in
// the endpoint's zone.
type endpointAccount struct {
	user, key, hash, sub, zone string
}

func newEndpointAccount(t *testing.T) endpointAccount {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	key := hex.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	a := endpointAccount{user: randomLabel(t, "user-"), key: key, hash: string(hash), sub: randomLabel(t, "acct-"), zone: aliasZone}
	a.clearValuesAtCleanup(t)
	return a
}

// clearValuesAtCleanup removes the account's values from the alias zone
// when the test ends (after the Caddy it started, which leaves them: an
// endpoint's values outlive Caddy), as an operator retiring the account
// would, so that the next tests find the zone clean.
func (a endpointAccount) clearValuesAtCleanup(t *testing.T) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := theLab.RemoveRRset(ctx, a.zone, a.fullDomain()+".", dns.TypeTXT); err != nil {
			t.Errorf("clearing the values of %s: %v", a.fullDomain(), err)
		}
	})
}

// fullDomain is where the account's values live.
func (a endpointAccount) fullDomain() string { return a.sub + "." + a.zone }

// delegate publishes the CNAME each domain's owner publishes for the
// account.
func (a endpointAccount) delegate(t *testing.T, domains ...string) {
	t.Helper()
	for _, d := range domains {
		publish(t, fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.", d, a.fullDomain()))
	}
}

// endpointSite is a site serving the acme-dns API over HTTP on port of
// 127.0.0.1 (a number or a placeholder) for accounts, written by RFC 2136
// into the lab's alias zone; extra goes into the handler's block.
func endpointSite(port, extra string, accounts ...endpointAccount) string {
	return endpointSiteIn(aliasZone, port, extra, accounts...)
}

// endpointSiteIn is endpointSite for an endpoint whose accounts write in
// zone, one of the lab's zones the caddy key writes.
func endpointSiteIn(zone, port, extra string, accounts ...endpointAccount) string {
	lines := []string{extra}
	for _, a := range accounts {
		lines = append(lines, fmt.Sprintf("account %s %s %s 127.0.0.0/8", a.user, a.hash, a.sub))
	}
	return fmt.Sprintf(`http://127.0.0.1:%s {
	acme_dns_server {
		zone %s
		%s
		%s
		resolvers %s
		private_nameservers
	}
	respond "not an acme-dns path" 404
}
`, port, zone, rfc2136(), strings.Join(lines, "\n\t\t"), theLab.Resolver)
}

// startEndpoint starts a Caddy serving the endpoint on storage ("" for its
// own) and returns it and the API's base URL, once /health answers.
func startEndpoint(t *testing.T, storage, extraGlobal string, accounts ...endpointAccount) (*caddyProc, string) {
	t.Helper()
	port := freePort(t)
	c := startCaddyfileOn(t, storage, extraGlobal, endpointSite(fmt.Sprint(port), "", accounts...))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealth(t, c, base)
	return c, base
}

// waitHealth waits until the endpoint at base answers /health with 200.
func waitHealth(t *testing.T, c *caddyProc, base string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint's /health does not answer 200 (%v); log:\n%s", err, c.log.String())
		}
	}
}

var (
	legoOnce  sync.Once
	legoPath  string
	legoError error
)

// legoBin is $LEGO_BIN, or lego built by lab/build-lego.sh (its modules
// must be in the module cache: inside the lab's namespace there is no
// module proxy).
func legoBin(t *testing.T) string {
	t.Helper()
	legoOnce.Do(func() {
		if legoPath = os.Getenv("LEGO_BIN"); legoPath != "" {
			return
		}
		root, err := lab.RepoRoot()
		if err != nil {
			legoError = err
			return
		}
		legoPath = filepath.Join(os.TempDir(), fmt.Sprintf("caddy-dns-alias-lego-%d", os.Getpid()))
		if out, err := exec.Command("bash", filepath.Join(root, "lab", "build-lego.sh"), legoPath).CombinedOutput(); err != nil {
			legoError = fmt.Errorf("lab/build-lego.sh (set LEGO_BIN to a build of it): %w\n%s", err, out)
		}
	})
	if legoError != nil {
		t.Fatal(legoError)
	}
	return legoPath
}

// legoRun is one lego process obtaining a certificate for names through
// the endpoint at base with account a (key: the X-Api-Key it sends).
type legoRun struct {
	cmd  *exec.Cmd
	dir  string
	out  *logBuffer
	done chan error
}

func startLego(t *testing.T, base string, a endpointAccount, key string, names ...string) *legoRun {
	t.Helper()
	dir := t.TempDir()
	// lego's acme-dns storage: the account of each domain, as lego
	// itself writes it after a /register (the base name stands for its
	// wildcard too: an authorization's identifier carries no "*.").
	accounts := map[string]any{}
	for _, n := range names {
		accounts[strings.TrimPrefix(n, "*.")] = map[string]string{"fulldomain": a.fullDomain(), "subdomain": a.sub,
			"username": a.user, "password": key, "server_url": base}
	}
	data, _ := json.Marshal(accounts)
	storage := filepath.Join(dir, "acme-dns.json")
	if err := os.WriteFile(storage, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return startLegoWith(t, dir, "acmedns", []string{"ACME_DNS_API_BASE=" + base, "ACME_DNS_STORAGE_PATH=" + storage}, names...)
}

// startLegoWith starts lego with its DNS provider and that provider's
// environment, storing in dir, for names.
func startLegoWith(t *testing.T, dir, provider string, env []string, names ...string) *legoRun {
	t.Helper()
	l := requireLab(t)
	args := []string{"--log.format", "text", "run", "--accept-tos", "--email", "test@example.com",
		"--server", l.PebbleDir, "--path", dir,
		// --dns.propagation.disable-ans: lego finds the alias zone's
		// nameservers' addresses through the system resolver, which
		// knows nothing of the lab (bench/lego.go); its check through
		// Unbound stays on.
		"--dns", provider, "--dns.resolvers", l.Resolver, "--dns.propagation.disable-ans"}
	for _, n := range names {
		args = append(args, "-d", n)
	}
	r := &legoRun{cmd: exec.Command(legoBin(t), args...), dir: dir, out: &logBuffer{}, done: make(chan error, 1)}
	r.cmd.Env = append(append(os.Environ(), "HOME="+dir, "LEGO_CA_CERTIFICATES="+l.PebbleCAPEM), env...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { r.cmd.Process.Kill() })
	return r
}

// wait waits for lego to exit and returns its error.
func (r *legoRun) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("lego did not finish within %s; its output:\n%s", timeout, r.out.String())
		return nil
	}
}

// cert returns the certificate lego wrote for its first name.
func (r *legoRun) cert(t *testing.T, first string) []byte {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(r.dir, "certificates", strings.ReplaceAll(first, "*", "_")+".crt"))
	if err != nil {
		t.Fatalf("lego wrote no certificate for %s: %v; its output:\n%s", first, err, r.out.String())
	}
	return pem
}

// obtain runs lego to the end and checks the certificate's names.
func obtain(t *testing.T, base string, a endpointAccount, names ...string) {
	t.Helper()
	r := startLego(t, base, a, a.key, names...)
	if err := r.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("lego failed: %v; its output:\n%s", err, r.out.String())
	}
	chain := parseChain(t, names[0], r.cert(t, names[0]))
	assertNameSet(t, chain[0].DNSNames, names...)
}

// assertNameSet checks a certificate's names in any order: lego's order
// of the wildcard and its apex varies.
func assertNameSet(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("certificate names %q, want %q", got, want)
	}
}

// TestEndpointLego: lego's acme-dns provider obtains through the endpoint
// for one name, then for an apex and its wildcard, twice (two values at
// the account's one name at once); every value stays within its lifetime
// (four at the pair's name), every write journalled; a wrong key is
// refused and writes nothing; the key appears in no log; Caddy's exit
// leaves the values in DNS and in the journal, for the next start.
func TestEndpointLego(t *testing.T) {
	requireLab(t)
	single, pair, refused := newEndpointAccount(t), newEndpointAccount(t), newEndpointAccount(t)
	one, apex := randomLabel(t, "ep1-")+".example.com", randomLabel(t, "ep2-")+".example.com"
	other := randomLabel(t, "ep3-") + ".example.com"
	single.delegate(t, one)
	pair.delegate(t, apex)
	refused.delegate(t, other)
	before := productionSerials(t)
	c, base := startEndpoint(t, "", "", single, pair, refused)

	t.Run("one name", func(t *testing.T) {
		obtain(t, base, single, one)
		if n := len(c.linesWith("acme-dns update written", "account", single.user)); n != 1 {
			t.Errorf("%d updates written for %s, want 1", n, single.user)
		}
		// acme-dns semantics: the value stays until newer ones push it
		// out, journalled meanwhile.
		if got := aliasTXT(t, single.fullDomain()); len(got) != 1 {
			t.Errorf("%s holds %q, want the one value", single.fullDomain(), got)
		}
	})
	t.Run("apex and wildcard", func(t *testing.T) {
		obtain(t, base, pair, apex, "*."+apex)
		obtain(t, base, pair, apex, "*."+apex) // a renewal: the first two values stay within their lifetime
		if n := len(c.linesWith("acme-dns update written", "account", pair.user)); n != 4 {
			t.Errorf("%d updates written for %s, want 4", n, pair.user)
		}
		if got := aliasTXT(t, pair.fullDomain()); len(got) != 4 {
			t.Errorf("%s holds %q, want the four values written within the hour", pair.fullDomain(), got)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		r := startLego(t, base, refused, "not-"+refused.key, other)
		if err := r.wait(t, 3*time.Minute); err == nil {
			t.Fatalf("lego succeeded with a wrong key; its output:\n%s", r.out.String())
		}
		if !strings.Contains(r.out.String(), "401") {
			t.Errorf("lego's output does not show the 401:\n%s", r.out.String())
		}
		if l, ok := c.find("acme-dns update refused", "account", refused.user); !ok || l.str("reason") != "wrong key" {
			t.Errorf("no refusal for the wrong key logged (%v)", l)
		}
		if got := aliasTXT(t, refused.fullDomain()); len(got) != 0 {
			t.Errorf("a refused update wrote %q at %s", got, refused.fullDomain())
		}
	})
	held := 0
	for _, e := range journal(t, c.storage) {
		if e.Zone != aliasZone || (e.Name != single.fullDomain() && e.Name != pair.fullDomain()) {
			t.Errorf("journal entry outside the accounts' names: %+v", e)
		}
		held++
	}
	if held != 5 {
		t.Errorf("the journal holds %d entries, want the 5 values held", held)
	}
	// The admin API lists the accounts without their keys or hashes,
	// with the values each holds.
	code, listing := c.adminGet("/dns-alias/acme-dns/accounts")
	var endpoints []struct {
		Zone     string
		Accounts []struct {
			Username string
			Values   int
		}
	}
	if err := json.Unmarshal([]byte(listing), &endpoints); code != http.StatusOK || err != nil || len(endpoints) != 1 || endpoints[0].Zone != aliasZone || len(endpoints[0].Accounts) != 3 {
		t.Errorf("GET /dns-alias/acme-dns/accounts: %d %s (%v)", code, listing, err)
	} else {
		values := map[string]int{}
		for _, a := range endpoints[0].Accounts {
			values[a.Username] = a.Values
		}
		if values[single.user] != 1 || values[pair.user] != 4 || values[refused.user] != 0 {
			t.Errorf("values held per account: %v", values)
		}
	}
	// Per-account metrics: the writes and the refusal.
	_, metrics := c.adminGet("/metrics")
	for _, want := range []string{
		fmt.Sprintf(`caddy_dns_alias_acme_dns_updates_total{account=%q,outcome="written"} 1`, single.user),
		fmt.Sprintf(`caddy_dns_alias_acme_dns_updates_total{account=%q,outcome="written"} 4`, pair.user),
		fmt.Sprintf(`caddy_dns_alias_acme_dns_updates_total{account=%q,outcome="refused_auth"} 1`, refused.user),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, a := range []endpointAccount{single, pair, refused} {
		for what, out := range map[string]string{"Caddy's log": c.log.String(), "the account listing": listing, "/metrics": metrics} {
			if strings.Contains(out, a.key) || strings.Contains(out, a.hash) {
				t.Errorf("%s shows %s's key or its hash", what, a.user)
			}
		}
	}
	// A graceful exit leaves the values, in DNS and in the journal: a
	// client that updated just before it still validates.
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.waitExit(20 * time.Second)
	for a, want := range map[endpointAccount]int{single: 1, pair: 4} {
		if got := aliasTXT(t, a.fullDomain()); len(got) != want {
			t.Errorf("after exit %s holds %q, want its %d values", a.fullDomain(), got, want)
		}
	}
	if n := len(journal(t, c.storage)); n != 5 {
		t.Errorf("after exit the journal holds %d entries, want the 5 values", n)
	}
	assertProductionUnchanged(t, before)
}

// TestEndpointTwoClientsAtOnce: two lego processes on two accounts obtain
// at the same time, each value landing at its own account's name only.
func TestEndpointTwoClientsAtOnce(t *testing.T) {
	requireLab(t)
	a, b := newEndpointAccount(t), newEndpointAccount(t)
	da, db := randomLabel(t, "epa-")+".example.com", randomLabel(t, "epb-")+".example.com"
	a.delegate(t, da)
	b.delegate(t, db)
	c, base := startEndpoint(t, "", "", a, b)
	ra, rb := startLego(t, base, a, a.key, da, "*."+da), startLego(t, base, b, b.key, db, "*."+db)
	for _, r := range []struct {
		run  *legoRun
		name string
	}{{ra, da}, {rb, db}} {
		if err := r.run.wait(t, 3*time.Minute); err != nil {
			t.Fatalf("lego for %s failed: %v; its output:\n%s", r.name, err, r.run.out.String())
		}
		assertNameSet(t, parseChain(t, r.name, r.run.cert(t, r.name))[0].DNSNames, r.name, "*."+r.name)
	}
	for _, acct := range []endpointAccount{a, b} {
		written := c.linesWith("acme-dns update written", "account", acct.user)
		if len(written) != 2 {
			t.Errorf("%d updates written for %s, want 2", len(written), acct.user)
		}
		var values []string
		for _, l := range written {
			if l.str("name") != acct.fullDomain() {
				t.Errorf("%s's update written at %s", acct.user, l.str("name"))
			}
			values = append(values, l.str("value"))
		}
		got := aliasTXT(t, acct.fullDomain())
		slices.Sort(got)
		slices.Sort(values)
		if !slices.Equal(got, values) {
			t.Errorf("%s holds %q, want %s's two values %q", acct.fullDomain(), got, acct.user, values)
		}
	}
}

// endpointBases returns the base URL of each node's endpoint (a cluster of
// endpointSite on {$CLUSTER_HTTP_PORT}), once its /health answers.
func (cl *cluster) endpointBases() []string {
	var bases []string
	for _, c := range cl.nodes {
		for _, e := range c.env {
			if port, ok := strings.CutPrefix(e, "CLUSTER_HTTP_PORT="); ok {
				bases = append(bases, "http://127.0.0.1:"+port)
			}
		}
		waitHealth(cl.t, c, bases[len(bases)-1])
	}
	return bases
}

// TestEndpointClusterRedis: three Caddy instances on one Redis storage
// serve the same accounts: an account registered through one of them
// (POST /register, from an allowed network) is stored without its key and
// serves lego through another, and a renewal through the third.
func TestEndpointClusterRedis(t *testing.T) {
	l := requireLab(t)
	cl := startCluster(t, l, "", endpointSite("{$CLUSTER_HTTP_PORT}", "register 127.0.0.0/8"))
	bases := cl.endpointBases()
	resp, err := http.Post(bases[0]+"/register", "application/json", strings.NewReader(`{"allowfrom":["127.0.0.0/8"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct{ Username, Password, Subdomain, FullDomain string }
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || reg.FullDomain != reg.Subdomain+"."+aliasZone {
		t.Fatalf("register: %d %+v (%v)", resp.StatusCode, reg, err)
	}
	stored, ok, err := l.RedisLoad(testCtx(t, 10*time.Second), cl.prefix, "dns_alias/acme_dns/"+aliasZone+"/accounts/"+reg.Username+".json")
	if err != nil || !ok || strings.Contains(string(stored), reg.Password) || !strings.Contains(string(stored), `"key_hash":"$2a$`) {
		t.Fatalf("the stored account (%v, %v): %s", ok, err, stored)
	}
	a := endpointAccount{user: reg.Username, key: reg.Password, sub: reg.Subdomain, zone: aliasZone}
	a.clearValuesAtCleanup(t)
	domain := randomLabel(t, "epc-") + ".example.com"
	a.delegate(t, domain)
	obtain(t, bases[1], a, domain)
	obtain(t, bases[2], a, domain)
	for i, c := range cl.nodes {
		if n, want := len(c.linesWith("acme-dns update written", "account", a.user)), min(i, 1); n != want {
			t.Errorf("instance %d wrote %d updates for the registered account, want %d", i, n, want)
		}
	}
}

// TestEndpointLegoHTTPReq: lego's httpreq provider (basic auth, /present
// and /cleanup) obtains an apex and its wildcard through the endpoint; it
// sends the name at the end of the CNAME chain, the account's fulldomain,
// and its cleanups leave the name empty while Caddy runs on.
func TestEndpointLegoHTTPReq(t *testing.T) {
	requireLab(t)
	a := newEndpointAccount(t)
	domain := randomLabel(t, "eph-") + ".example.com"
	a.delegate(t, domain)
	port := freePort(t)
	c := startCaddyfileOn(t, "", "", endpointSite(fmt.Sprint(port), "httpreq", a))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealth(t, c, base)
	r := startLegoWith(t, t.TempDir(), "httpreq", []string{"HTTPREQ_ENDPOINT=" + base, "HTTPREQ_USERNAME=" + a.user, "HTTPREQ_PASSWORD=" + a.key},
		domain, "*."+domain)
	if err := r.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("lego failed: %v; its output:\n%s", err, r.out.String())
	}
	assertNameSet(t, parseChain(t, domain, r.cert(t, domain))[0].DNSNames, domain, "*."+domain)
	written, removed := c.linesWith("acme-dns update written", "account", a.user), c.linesWith("acme-dns value removed", "account", a.user)
	if len(written) != 2 || len(removed) != 2 {
		t.Errorf("%d values written and %d removed for %s, want 2 and 2", len(written), len(removed), a.user)
	}
	for _, l := range written {
		if l.str("op") != "present" || l.str("name") != a.fullDomain() {
			t.Errorf("write %v, want a present at %s", l, a.fullDomain())
		}
	}
	if got := aliasTXT(t, a.fullDomain()); len(got) != 0 {
		t.Errorf("after lego's cleanups %s holds %q", a.fullDomain(), got)
	}
	waitJournalEmpty(t, c.storage, 5*time.Second)
}
