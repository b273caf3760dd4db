package main

import (
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// setup is one way of configuring Caddy for delegated names.
type setup struct {
	name  string
	stock bool
	// site returns the Caddyfile for names (global options excluded).
	site func(l *lab.Lab, names []string) string
}

var (
	stockSetup = setup{
		name:  "stock: dns_challenge_override_domain",
		stock: true,
		// The override is one name per policy: one site block per name.
		site: func(l *lab.Lab, names []string) string {
			var b strings.Builder
			for _, n := range names {
				fmt.Fprintf(&b, `%s {
	tls {
		%s
		dns_challenge_override_domain _acme-challenge.%s.%s
		resolvers %s
	}
	respond "ok"
}
`, n, stockDNS(l), strings.TrimPrefix(n, "*."), l.AliasZone, l.Resolver)
			}
			return b.String()
		},
	}
	templateSetup = setup{
		name: "alias template (default config)",
		site: aliasSite("alias _acme-challenge.{domain}.", ""),
	}
	issueSetups = []setup{
		stockSetup,
		templateSetup,
		{
			name: "alias follow (default config)",
			site: aliasSite("follow", ""),
		},
		{
			// An explicit propagation_timeout keeps certmagic's own
			// check, with its fixed 2 s sleep before the first look.
			name: "alias template, certmagic's check kept (propagation_timeout 2m)",
			site: aliasSite("alias _acme-challenge.{domain}.", "propagation_timeout 2m"),
		},
	}
)

// aliasSite is one site block for all names with the alias provider; a
// mode ending in a dot is completed with the alias zone. The resolvers are
// the lab's, since the system resolver knows nothing of it; nothing else
// is set, so that this is the plugin's default config.
func aliasSite(mode, tlsExtra string) func(*lab.Lab, []string) string {
	return func(l *lab.Lab, names []string) string {
		if strings.HasSuffix(mode, ".") {
			mode += l.AliasZone
		}
		return fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			zone %s
			%s
			resolvers %s
			private_nameservers
		}
		resolvers %s
		%s
	}
	respond "ok"
}
`, strings.Join(names, ", "), l.RFC2136Provider(), l.AliasZone, mode, l.Resolver, l.Resolver, tlsExtra)
	}
}

var issueTable = &table{
	id:    "issue",
	title: "Time to certificate: stock Caddy and the plugin",
	intro: `
Every run starts Caddy with fresh storage (so the ACME account is registered
in it too); time is from Caddy's start to its last certificate in storage.
"updates/cert" and "queries/cert" are per certificate, "orders/10 s" the
most orders Pebble received within any 10 s of the run (certmagic allows
itself 10 per 10 s per account, counted when an obtain passes its limiter,
so orders that reach the CA late, as the first ten do behind the account's
registration and each other, share a 10 s window of the CA's with the next
ones and the CA can see more than 10; stamped by the
harness reading Pebble's log every 20 ms, since Pebble's own stamps have
whole seconds only). Stock Caddy
needs one site block per name, since dns_challenge_override_domain is one
name per policy; the plugin has one site block for all names, with no
propagation option: its default config. The last configuration sets
propagation_timeout, which keeps certmagic's own propagation check (and its
fixed 2 s sleep before the first look). Names are
bench<i>.example.com/.net, each delegated by
_acme-challenge.<name> CNAME _acme-challenge.<name>.validation.example.org.
`,
	header: `| pebble retryAfter | N | configuration | runs | median | spread | median per cert | ratio | updates/cert | queries/cert | orders/run | orders/10 s (max) | peak RSS | failed |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|`,
	keyCells: 3,
	run: func(b *bench, t *table, pebble string) {
		for _, n := range b.ns {
			names := delegate(b.l, n)
			var stock time.Duration
			for _, s := range issueSetups {
				if !s.stock && !b.selected(s.name) {
					continue
				}
				runs := b.repeat(pebble, fmt.Sprintf("n=%d", n), s, names)
				row, med := summarizeIssue(pebble, n, s, runs, stock)
				if s.stock {
					stock = med
				}
				b.add(t, row)
			}
		}
	},
}

// largeN is where the issue table's runs take long enough that -large-reps
// counts instead of -reps.
const largeN = 50

// repeat runs s for names b.reps (or b.largeReps) times.
func (b *bench) repeat(pebble, what string, s setup, names []string) []result {
	reps := b.reps
	if len(names) >= largeN {
		reps = b.largeReps
	}
	var runs []result
	for rep := range reps {
		r := obtain(b.l, b.caddy, s, names)
		log.Printf("pebble=%s %s %s rep %d: %s to the last certificate", pebble, what, s.name, rep+1, r.total.Round(time.Millisecond))
		runs = append(runs, r)
	}
	return runs
}

// delegate publishes the CNAMEs of n names, half in example.com and half in
// example.net. Every setup uses the same delegation:
// _acme-challenge.<name> CNAME _acme-challenge.<name>.<alias zone>.
func delegate(l *lab.Lab, n int) []string { return delegateTo(l, "bench", l.AliasZone, n) }

// result is one run: a client from start to its last certificate.
type result struct {
	total    time.Duration
	perCert  []time.Duration // start to each certificate
	certs    int
	traffic  traffic
	peakRSS  int64 // kB
	failures int
}

// obtain starts Caddy with fresh storage and waits for every certificate.
func obtain(l *lab.Lab, bin string, s setup, names []string) result {
	m := startMeter(l)
	c := startCaddy(l, bin, "", s.site(l, names))
	var r result
	pending := slices.Clone(names)
	deadline := c.start.Add(15 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) && c.running() {
		pending = slices.DeleteFunc(pending, func(n string) bool {
			if lab.CertFile(c.storage, n) != "" {
				r.perCert = append(r.perCert, time.Since(c.start))
				return true
			}
			return false
		})
		time.Sleep(20 * time.Millisecond)
	}
	r.total = time.Since(c.start)
	r.failures = len(pending)
	r.certs = len(names) - len(pending)
	if r.failures > 0 {
		log.Printf("%d certificates missing; Caddy's log:\n%s", r.failures, c.log.String())
	}
	r.peakRSS = c.stop()
	r.traffic = m.stop()
	return r
}

// totals sums runs.
func totals(runs []result) (times []time.Duration, updates, queries, orders, maxOrders, failures int, rss int64) {
	for _, r := range runs {
		times = append(times, r.total)
		updates += r.traffic.updates
		queries += r.traffic.queries
		orders += len(r.traffic.orders)
		maxOrders = max(maxOrders, r.traffic.maxOrders10s())
		failures += r.failures
		rss = max(rss, r.peakRSS)
	}
	return
}

// summarizeIssue makes one row of the issue table.
func summarizeIssue(pebble string, n int, s setup, runs []result, stock time.Duration) (string, time.Duration) {
	times, updates, queries, orders, maxOrders, failures, rss := totals(runs)
	var perCert []time.Duration
	for _, r := range runs {
		perCert = append(perCert, r.perCert...)
	}
	med := median(times)
	certs := float64(n * len(runs))
	row := fmt.Sprintf("| %s | %d | %s | %d | %.2f s | %s | %.2f s | %s | %.1f | %.1f | %.1f | %d | %.0f MiB | %d |",
		pebble, n, s.name, len(runs), med.Seconds(), spread(times), median(perCert).Seconds(), ratio(med, stock, s.stock),
		float64(updates)/certs, float64(queries)/certs, float64(orders)/float64(len(runs)), maxOrders, float64(rss)/1024, failures)
	return row, med
}
