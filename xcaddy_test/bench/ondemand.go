package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// onDemandSetup is one way of running on-demand TLS for delegated names.
type onDemandSetup struct {
	name  string // without the ask endpoint's policy (label)
	stock bool
	// global is the Caddyfile's extra global options; ask is the URL of
	// the harness's ask endpoint.
	global func(l *lab.Lab, ask string) string
	// delegation is the record a customer publishes for name, and alias
	// the name its challenge is written at.
	delegation func(l *lab.Lab, name string) string
	alias      func(l *lab.Lab, name string) string
}

// label names s in a table: for stock Caddy, with what its ask endpoint
// admits.
func (s onDemandSetup) label(askAll bool) string {
	switch {
	case !s.stock:
		return s.name
	case askAll:
		return s.name + ", ask says yes"
	default:
		return s.name + ", ask admits the delegated names"
	}
}

// onDemandSite is the catch-all site of both setups: every name that
// reaches it gets a certificate at its first handshake, if admitted.
const onDemandSite = `https:// {
	tls {
		on_demand
	}
	respond "ok"
}
`

// staticAlias is the one name stock Caddy writes every challenge at.
func staticAlias(l *lab.Lab) string { return "_acme-challenge.static." + l.AliasZone }

var onDemandSetups = []onDemandSetup{
	{
		name:  "stock: on_demand, one static dns_challenge_override_domain",
		stock: true,
		// dns_challenge_override_domain is no global option, and a
		// hostless site's policy is the catch-all one, which may not get
		// issuers of its own once global options exist: the issuer goes
		// in cert_issuer. It may have either ask or permission: ask.
		global: func(l *lab.Lab, ask string) string {
			return fmt.Sprintf(`cert_issuer acme {
		%s
		dns_challenge_override_domain %s
		resolvers %s
	}
	on_demand_tls {
		ask %s
	}`, stockDNS(l), staticAlias(l), l.Resolver, ask)
		},
		delegation: func(l *lab.Lab, name string) string {
			return fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME %s.", name, staticAlias(l))
		},
		alias: func(l *lab.Lab, _ string) string { return staticAlias(l) },
	},
	{
		// As docs/on-demand.md configures it (and
		// xcaddy_test's on-demand scenarios test it).
		name: "alias: on_demand, permission alias, template",
		global: func(l *lab.Lab, _ string) string {
			return fmt.Sprintf(`acme_dns alias {
		%s
		zone %s
		alias _acme-challenge.{domain}.%s
		resolvers %s
		private_nameservers
	}
	tls_resolvers %s
	on_demand_tls {
		permission alias
	}`, l.RFC2136Provider(), l.AliasZone, l.AliasZone, l.Resolver, l.Resolver)
		},
		delegation: func(l *lab.Lab, name string) string { return lab.Delegation(name, l.AliasZone) },
		alias: func(l *lab.Lab, name string) string {
			return "_acme-challenge." + name + "." + l.AliasZone
		},
	},
}

// stockDNS is stock Caddy's rfc2136 provider for the alias zone.
func stockDNS(l *lab.Lab) string {
	return fmt.Sprintf(`dns rfc2136 {
			key_name %s
			key {env.TSIG_SECRET}
			key_alg hmac-sha256
			server %s
		}`, l.CaddyKey.Name, l.AuthA)
}

var onDemandTable = &table{
	id:    "ondemand",
	title: "On-demand TLS: the first handshake for a fresh delegated name",
	intro: `
Time from the first TLS ClientHello (TCP connect included, on loopback) for
a name Caddy has never seen to the completed handshake with its new
certificate. One Caddy per configuration with fresh storage, started with
the catch-all site "https:// { tls { on_demand } }"; it first issues one
certificate that is not counted (so the ACME account exists, as on a
running platform), then takes the fresh names one after another. Before
each, the customer's CNAME is published and Unbound's cache for the alias
name is flushed, so that a previous name's TXT record at stock Caddy's one
shared static name is not served stale (in production, names arriving
within the TXT record's TTL can hit that). Stock Caddy: the best it can do,
dns_challenge_override_domain set to one static name,
_acme-challenge.static.validation.example.org, with every customer's
_acme-challenge CNAMEd to it, and an ask endpoint in the harness that says
yes to every name (stock on_demand needs ask or a permission module). The
plugin: docs/on-demand.md's platform config, acme_dns alias with the template,
on_demand_tls { permission alias }. Traffic columns are per name.
`,
	header: `| pebble retryAfter | configuration | names | median | spread | ratio | updates/name | queries/name | orders/name | failed |
|---|---|---|---|---|---|---|---|---|---|`,
	keyCells: 2,
	run: func(b *bench, t *table, pebble string) {
		var stock time.Duration
		for _, s := range onDemandSetups {
			if !s.stock && !b.selected(s.name) {
				continue
			}
			c, stopAsk := b.startOnDemand(s, func(string) bool { return true })
			var times []time.Duration
			updates, queries, orders, failures := 0, 0, 0, 0
			for rep := range b.onDemandReps {
				name := b.fresh("od", pebble)
				b.delegate(s, name)
				flush(b.l, s.alias(b.l, name))
				m := startMeter(b.l)
				took, err := handshake(c.httpsPort, name, 3*time.Minute)
				tr := m.stop()
				updates, queries, orders = updates+tr.updates, queries+tr.queries, orders+len(tr.orders)
				if err != nil {
					failures++
					log.Printf("pebble=%s on-demand %s: %s: %v", pebble, s.name, name, err)
					continue
				}
				log.Printf("pebble=%s on-demand %s rep %d: %s to the first handshake", pebble, s.name, rep+1, took.Round(time.Millisecond))
				times = append(times, took)
			}
			if failures > 0 {
				log.Printf("Caddy's log:\n%s", c.log.String())
			}
			c.stop()
			stopAsk()
			med := median(times)
			if s.stock {
				stock = med
			}
			n := float64(b.onDemandReps)
			b.add(t, fmt.Sprintf("| %s | %s | %d | %.2f s | %s | %s | %.1f | %.1f | %.1f | %d |",
				pebble, s.label(true), b.onDemandReps, med.Seconds(), spread(times), ratio(med, stock, s.stock),
				float64(updates)/n, float64(queries)/n, float64(orders)/n, failures))
		}
	},
}

// floodUnknown is how many handshakes for names nobody delegated arrive at
// once in the flood table.
const floodUnknown = 200

var floodTable = &table{
	id:    "flood",
	title: "On-demand TLS: an issued name while unknown names flood in",
	intro: fmt.Sprintf(`
Handshake latency for a name whose certificate Caddy already has (TCP
connect included), one handshake after another: first alone (50
handshakes), then while %d handshakes for names nobody delegated (no CNAME)
arrive at once ("a flood"; floods of fresh names follow each other until
100 handshakes fell inside one, at most 20); "during" counts the
handshakes that started before the last of their flood ended. Measured once, under the first Pebble setting (no
order is placed). The plugin refuses the unknown names by their missing
delegation (one DNS lookup each). Stock Caddy has no such check, and with an
ask endpoint that says yes to every name each unknown name would become an
ACME order: its ask endpoint here admits only the names the harness
delegated, as a platform's customer list would.
`, floodUnknown),
	header: `| configuration | handshakes alone | median alone | floods | handshakes during | median | p99 | max | a flood took | refused | orders | queries/unknown name |
|---|---|---|---|---|---|---|---|---|---|---|---|`,
	keyCells: 1,
	run: func(b *bench, t *table, pebble string) {
		if pebble != b.pebbles[0] {
			return
		}
		for _, s := range onDemandSetups {
			if !s.stock && !b.selected(s.name) {
				continue
			}
			b.add(t, b.flood(s))
		}
	},
}

// flood measures one row of the flood table.
func (b *bench) flood(s onDemandSetup) string {
	c, stopAsk := b.startOnDemand(s, b.customer)
	defer stopAsk()
	defer c.stop()
	issued := b.fresh("issued", "")
	b.delegate(s, issued)
	if _, err := handshake(c.httpsPort, issued, 3*time.Minute); err != nil {
		log.Fatalf("flood %s: the first handshake for %s: %v; Caddy's log:\n%s", s.name, issued, err, c.log.String())
	}
	var alone []time.Duration
	for range 50 {
		took, err := handshake(c.httpsPort, issued, 10*time.Second)
		if err != nil {
			log.Fatalf("flood %s: handshake for %s: %v", s.name, issued, err)
		}
		alone = append(alone, took)
	}

	// Rounds of floodUnknown concurrent handshakes, each with names of its
	// own, until enough handshakes for the issued name fell inside one.
	m := startMeter(b.l)
	var during []time.Duration
	var floodTook time.Duration
	refused, admitted, rounds := 0, 0, 0
	for ; rounds < 20 && (rounds == 0 || len(during) < 100); rounds++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := time.Now()
		for range floodUnknown {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := handshake(c.httpsPort, b.fresh("unknown", ""), time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refused++
				} else {
					admitted++
				}
			}()
		}
		floodDone := make(chan struct{})
		go func() { wg.Wait(); floodTook += time.Since(start); close(floodDone) }()
		took, failed := handshakesUntil(floodDone, c.httpsPort, issued, 30*time.Second)
		if failed > 0 {
			log.Printf("flood %s: %d handshakes for %s failed during the flood", s.name, failed, issued)
		}
		during = append(during, took...)
	}
	tr := m.stop()
	if admitted > 0 {
		log.Printf("flood %s: %d unknown names got a certificate", s.name, admitted)
	}
	log.Printf("flood %s: %d handshakes during %d floods, median %s, max %s; a flood took %s",
		s.name, len(during), rounds, median(during), percentile(during, 100), (floodTook / time.Duration(rounds)).Round(time.Millisecond))
	unknown := float64(rounds * floodUnknown)
	return fmt.Sprintf("| %s | %d | %s | %d × %d | %d | %s | %s | %s | %s | %d | %d | %.1f |",
		s.label(false), len(alone), ms(median(alone)), rounds, floodUnknown, len(during), ms(median(during)), ms(percentile(during, 99)), ms(percentile(during, 100)),
		ms(floodTook/time.Duration(rounds)), refused, len(tr.orders), float64(tr.queries)/unknown)
}

// startOnDemand starts the harness's ask endpoint (admit decides) and
// Caddy for s, and waits until Caddy listens and has issued one
// certificate (not measured: the ACME account then exists).
func (b *bench) startOnDemand(s onDemandSetup, admit func(string) bool) (*caddyProc, func()) {
	ask, stopAsk := startAsk(admit)
	c := startCaddy(b.l, b.caddy, s.global(b.l, ask), onDemandSite)
	if err := c.listening(30 * time.Second); err != nil {
		log.Fatal(err)
	}
	warm := b.fresh("warm", "")
	b.delegate(s, warm)
	if _, err := handshake(c.httpsPort, warm, 3*time.Minute); err != nil {
		log.Fatalf("on-demand %s: the first certificate (%s): %v; Caddy's log:\n%s", s.name, warm, err, c.log.String())
	}
	waitClean(b.l)
	return c, stopAsk
}

// startAsk serves Caddy's ask endpoint: 200 for a name admit admits, 403
// otherwise. It returns its URL and the function that stops it.
func startAsk(admit func(string) bool) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !admit(r.URL.Query().Get("domain")) {
			w.WriteHeader(http.StatusForbidden)
		}
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/ask", func() { srv.Close() }
}

// handshake dials Caddy's HTTPS port with SNI name and returns the time to
// a completed handshake whose certificate is valid for name.
func handshake(port int, name string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	// The dialer's timeout covers the handshake, which waits for an
	// on-demand certificate.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", fmt.Sprintf("127.0.0.1:%d", port),
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return took, fmt.Errorf("no certificate for %s", name)
	}
	if err := certs[0].VerifyHostname(name); err != nil {
		return took, fmt.Errorf("the certificate served for %s: %w", name, err)
	}
	return took, nil
}

// fresh returns a name in example.com or example.net (alternating) that
// this run has not used.
func (b *bench) fresh(prefix, tag string) string {
	b.seq++
	zone := "example.com"
	if b.seq%2 == 0 {
		zone = "example.net"
	}
	return fmt.Sprintf("%s%s%d-%s.%s", prefix, tag, b.seq, b.runID, zone)
}

// delegate publishes name's delegation for s and adds it to the
// customers.
func (b *bench) delegate(s onDemandSetup, name string) {
	publish(b.l, zoneOf(name), s.delegation(b.l, name))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.customers == nil {
		b.customers = map[string]bool{}
	}
	b.customers[name] = true
}

// customer reports whether name was delegated: what a platform's customer
// list would say.
func (b *bench) customer(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.customers[name]
}

// zoneOf is the lab zone a fresh name is in.
func zoneOf(name string) string {
	_, zone, _ := strings.Cut(name, ".")
	return zone
}

// flush drops Unbound's cache at name.
func flush(l *lab.Lab, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.FlushResolver(ctx, name); err != nil {
		log.Fatal(err)
	}
}

// handshakesUntil shakes hands for name, one after the other, until done
// is closed: the latencies of those that succeeded and how many failed.
func handshakesUntil(done <-chan struct{}, port int, name string, timeout time.Duration) (took []time.Duration, failed int) {
	for {
		select {
		case <-done:
			return took, failed
		default:
		}
		d, err := handshake(port, name, timeout)
		if err != nil {
			failed++
			continue
		}
		took = append(took, d)
	}
}

// ms formats d in milliseconds, for the tables.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
