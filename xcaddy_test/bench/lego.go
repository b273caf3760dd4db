package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// legoArgs is lego's command line for names: its documented flags, the
// lab's Pebble and Unbound, storage in dir. --dns.propagation.disable-ans:
// lego looks up the addresses of the alias zone's nameservers (ns1...)
// through the system resolver, not --dns.resolvers, and the system resolver
// knows nothing of the lab, so its authoritative check can never succeed
// here; its check through the resolver (Unbound) stays on.
func legoArgs(l *lab.Lab, dir, provider string, names []string) []string {
	args := []string{"--log.format", "text", "run", "--accept-tos", "--email", "test@example.com",
		"--server", l.PebbleDir, "--path", dir,
		"--dns", provider, "--dns.resolvers", l.Resolver, "--dns.propagation.disable-ans"}
	for _, n := range names {
		args = append(args, "-d", n)
	}
	return args
}

// legoRFC2136 is lego's RFC 2136 provider (dnsupdate, formerly rfc2136,
// whose RFC2136_* names it still reads) writing with the same key as Caddy
// to the alias zone's primary. lego follows the CNAME of _acme-challenge
// by default (LEGO_DISABLE_CNAME_SUPPORT unset).
func legoRFC2136(l *lab.Lab) legoProvider {
	return func(string) (string, []string) {
		return "dnsupdate", []string{"DNSUPDATE_NAMESERVER=" + l.AuthA,
			"DNSUPDATE_TSIG_KEY=" + l.CaddyKey.Name,
			"DNSUPDATE_TSIG_SECRET=" + l.CaddyKey.Secret,
			"DNSUPDATE_TSIG_ALGORITHM=hmac-sha256"}
	}
}

// legoProvider prepares lego's run in dir and returns its DNS provider and
// that provider's environment.
type legoProvider func(dir string) (name string, env []string)

var legoTable = &table{
	id:    "lego",
	title: "Against lego",
	intro: `
lego v5.6.0, the CNAME-following client that Traefik embeds, on the same
lab, from process start to its certificate written, with fresh storage
(account registration included, as for Caddy). It is built by
lab/build-lego.sh from lego's module with its documented dnslight build tags
(only the dnsupdate, acmedns and httpreq providers), since the module proxy here serves neither
23 of its DNS providers' SDKs nor its log colouriser (a stand-in on
log/slog's text handler). Configured as documented:

    LEGO_CA_CERTIFICATES=<Pebble's HTTPS CA> DNSUPDATE_NAMESERVER=127.0.0.2:53
    DNSUPDATE_TSIG_KEY=caddy-key DNSUPDATE_TSIG_SECRET=... DNSUPDATE_TSIG_ALGORITHM=hmac-sha256
    lego --log.format text run --accept-tos --email test@example.com --server <Pebble>
      --path <fresh dir> --dns dnsupdate --dns.resolvers 127.0.0.1:15353
      --dns.propagation.disable-ans -d <name> [-d '*.<name>']

It follows _acme-challenge's CNAME (its default) and writes in the alias
zone. --dns.propagation.disable-ans because lego resolves the names of the
alias zone's nameservers with the system resolver, which knows nothing of
the lab; its check through Unbound stays. "apex + wildcard" is example.com
and *.example.com: one certificate with both names for lego, two
certificates for Caddy (one per name, as Caddy always does), both
challenges at _acme-challenge.example.com. lego's dnsupdate provider solves
challenges one after the other with DNSUPDATE_SEQUENCE_INTERVAL between
them (default 60 s), since it replaces the TXT set at the name. lego looks
at the authorization once right after answering the challenge and, if it is
not valid yet, again after its Retry-After, or 5 s when that is 0, ±50 %
(its backoff's randomisation): with Pebble's retryAfter 0 its time is
about 2 s when Pebble has validated by then, 4-9 s otherwise.
"updates", "queries" and "orders" are per run here (lego makes one
certificate where Caddy makes two).

"lego v5.6.0 (acmedns, through the plugin's acme-dns endpoint)" is the same
lego with its acme-dns provider (ACME_DNS_API_BASE, ACME_DNS_STORAGE_PATH
with the account) against a Caddy serving acme_dns_server, which writes
with the RFC 2136 credential the dnsupdate rows give lego itself: the
narrow credential's cost. Its names are acmedns.example.com (and its
wildcard), delegated by a CNAME to the account's fulldomain. That Caddy is
started before each run and not timed (a server the clients share); its
exit, after lego, leaves the account's values (they stay for their
lifetime, across restarts), and the run clears them with the lab's key,
not counted with its updates (the rows below were measured when the exit
deleted them and the deletes counted: 2 and 4 updates per run where there
are now 1 and 2). Every value of the account stays within its lifetime, so
lego need not space its challenges as its dnsupdate provider does.
`,
	header: `| pebble retryAfter | names | client | runs | median | spread | ratio | certificates/run | updates/run | queries/run | orders/run | failed |
|---|---|---|---|---|---|---|---|---|---|---|---|`,
	keyCells: 3,
	run: func(b *bench, t *table, pebble string) {
		publish(b.l, "example.com", lab.Delegation("example.com", b.l.AliasZone))
		for _, c := range []struct {
			label string
			names []string
		}{
			{"1", delegate(b.l, 1)},
			{"apex + wildcard", []string{"example.com", "*.example.com"}},
		} {
			stockRuns := b.repeat(pebble, c.label, stockSetup, c.names)
			row, stock := summarizeLego(pebble, c.label, stockSetup.name, true, stockRuns, 0)
			b.add(t, row)
			if b.selected(templateSetup.name) {
				row, _ = summarizeLego(pebble, c.label, templateSetup.name, false, b.repeat(pebble, c.label, templateSetup, c.names), stock)
				b.add(t, row)
			}
			if b.selected("lego") {
				var runs []result
				for rep := range b.reps {
					r := legoObtain(b.l, b.lego, c.names, legoRFC2136(b.l), nil)
					log.Printf("pebble=%s %s lego rep %d: %s to the certificate", pebble, c.label, rep+1, r.total.Round(time.Millisecond))
					runs = append(runs, r)
				}
				row, _ = summarizeLego(pebble, c.label, "lego v5.6.0 (dnsupdate, follows the CNAME)", false, runs, stock)
				b.add(t, row)
			}
			if b.selected("acme-dns endpoint") {
				names := endpointNames(b.l, c.label)
				var runs []result
				for rep := range b.reps {
					r := endpointObtain(b, names)
					log.Printf("pebble=%s %s lego through the endpoint rep %d: %s to the certificate", pebble, c.label, rep+1, r.total.Round(time.Millisecond))
					runs = append(runs, r)
				}
				row, _ = summarizeLego(pebble, c.label, "lego v5.6.0 (acmedns, through the plugin's acme-dns endpoint)", false, runs, stock)
				b.add(t, row)
			}
		}
	},
}

// legoObtain runs lego once with fresh storage for one certificate with
// names, timed to the certificate file.
//
// finish, if set, runs after lego exits and before the meter stops (which
// waits until the alias zone is clean): the acme-dns endpoint's run stops
// its Caddy and clears the values it leaves (they outlive Caddy, for the
// clients that still need them).
func legoObtain(l *lab.Lab, bin string, names []string, provider legoProvider, finish func()) result {
	dir, err := os.MkdirTemp("", "caddy-dns-alias-bench-lego-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	m := startMeter(l)
	name, env := provider(dir)
	cmd := exec.Command(bin, legoArgs(l, dir, name, names)...)
	// Pebble's HTTPS CA, and the provider's settings.
	cmd.Env = append(append(os.Environ(), "HOME="+dir, "LEGO_CA_CERTIFICATES="+l.PebbleCAPEM), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The certificate is named after the first domain, "*" made "_".
	crt := filepath.Join(dir, "certificates", strings.ReplaceAll(names[0], "*", "_")+".crt")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var r result
	var exitErr error
	for done := false; !done; {
		select {
		case exitErr = <-exited:
			done = true
		case <-time.After(20 * time.Millisecond):
		}
		if r.total == 0 {
			if _, err := os.Stat(crt); err == nil {
				r.total, r.certs = time.Since(start), 1
				r.perCert = []time.Duration{r.total}
			}
		}
		if !done && time.Since(start) > 15*time.Minute {
			cmd.Process.Kill()
		}
	}
	if r.certs == 0 || exitErr != nil {
		r.failures = 1
		if r.total == 0 {
			r.total = time.Since(start)
		}
		log.Printf("lego failed (%v); its output:\n%s", exitErr, out.String())
	}
	if finish != nil {
		finish()
	}
	r.traffic = m.stop()
	return r
}

// summarizeLego makes one row of the lego table.
func summarizeLego(pebble, names, client string, isStock bool, runs []result, stock time.Duration) (string, time.Duration) {
	times, updates, queries, orders, _, failures, _ := totals(runs)
	certs := 0
	for _, r := range runs {
		certs += r.certs
	}
	med := median(times)
	n := float64(len(runs))
	return fmt.Sprintf("| %s | %s | %s | %d | %.2f s | %s | %s | %.1f | %.1f | %.1f | %.1f | %d |",
		pebble, names, client, len(runs), med.Seconds(), spread(times), ratio(med, stock, isStock),
		float64(certs)/n, float64(updates)/n, float64(queries)/n, float64(orders)/n, failures), med
}

// The acme-dns endpoint's account in the benchmark: lego's acme-dns
// provider writes through Caddy's acme_dns_server, which writes with
// Caddy's RFC 2136 credential.
const (
	endpointUser = "bench"
	endpointKey  = "bench-acme-dns-key-0123456789abcdefghij"
)

// endpointNames publishes, once, the delegation of the names of a row to
// the endpoint account's fulldomain: acmedns.example.com (and its
// wildcard), names of their own, since a name has one CNAME and the other
// rows' names point at the alias template.
func endpointNames(l *lab.Lab, label string) []string {
	publish(l, "example.com", fmt.Sprintf("_acme-challenge.acmedns.example.com. 60 IN CNAME %s.%s.", endpointUser, l.AliasZone))
	if label == "1" {
		return []string{"acmedns.example.com"}
	}
	return []string{"acmedns.example.com", "*.acmedns.example.com"}
}

// endpointObtain starts a Caddy serving the acme-dns endpoint (not timed:
// it is a server the clients share) and runs lego through it. Caddy's exit
// leaves the account's values (they stay for their lifetime, across
// restarts), so the run removes them with the lab's key, not counted with
// the run's updates, before the meter waits for a clean zone; each run's
// Caddy has a storage of its own, so no journal carries them over.
func endpointObtain(b *bench, names []string) result {
	hash, err := bcrypt.GenerateFromPassword([]byte(endpointKey), bcrypt.DefaultCost)
	if err != nil {
		log.Fatal(err)
	}
	port := freePort()
	c := startCaddy(b.l, b.caddy, "", fmt.Sprintf(`http://127.0.0.1:%d {
	acme_dns_server {
		zone %s
		%s
		account %s %s %s
		resolvers %s
		private_nameservers
	}
}
`, port, b.l.AliasZone, b.l.RFC2136Provider(), endpointUser, hash, endpointUser, b.l.Resolver))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitEndpoint(c, base)
	r := legoObtain(b.l, b.lego, names, func(dir string) (string, []string) {
		accounts := map[string]map[string]string{names[0]: {"username": endpointUser, "password": endpointKey,
			"subdomain": endpointUser, "fulldomain": endpointUser + "." + b.l.AliasZone, "server_url": base}}
		data, _ := json.Marshal(accounts)
		storage := filepath.Join(dir, "acme-dns.json")
		if err := os.WriteFile(storage, data, 0o600); err != nil {
			log.Fatal(err)
		}
		return "acmedns", []string{"ACME_DNS_API_BASE=" + base, "ACME_DNS_STORAGE_PATH=" + storage}
	}, func() {
		c.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.l.RemoveRRset(ctx, b.l.AliasZone, endpointUser+"."+b.l.AliasZone, dns.TypeTXT); err != nil {
			log.Printf("warning: clearing the endpoint account's values: %v", err)
		}
	})
	return r
}

// waitEndpoint waits until the acme-dns endpoint of c at base answers
// /health with 200.
func waitEndpoint(c *caddyProc, base string) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) || !c.running() {
			log.Fatalf("the acme-dns endpoint does not answer; Caddy's log:\n%s", c.log.String())
		}
	}
}
