package main

import (
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// innerProvider is an inner provider of the providers table: where its
// alias zone is, how Caddy writes to it, and how many calls a run cost.
type innerProvider struct {
	name string
	// zone is the alias zone the provider writes in.
	zone func(l *lab.Lab) string
	// block is its Caddyfile block inside `dns alias { }`; stock Caddy
	// takes the same block after `dns` (without the word "provider").
	block func(l *lab.Lab) string
	// calls returns the calls the provider made so far (a counter read
	// before and after a run).
	calls func(l *lab.Lab, r result) int
	// txt lists the TXT owner names in the zone, and remove deletes the
	// TXT set at one, through the lab's own access (not the client's).
	txt    func(ctx context.Context, l *lab.Lab) ([]string, error)
	remove func(ctx context.Context, l *lab.Lab, name string) error
}

var innerProviders = []innerProvider{
	{
		name:  "rfc2136 (BIND)",
		zone:  func(l *lab.Lab) string { return l.AliasZone },
		block: func(l *lab.Lab) string { return l.RFC2136Provider() },
		// one UPDATE per record change: the meter counts them
		calls: func(_ *lab.Lab, r result) int { return r.traffic.updates },
		txt: func(ctx context.Context, l *lab.Lab) ([]string, error) {
			rrs, err := l.TXTRecords(ctx, l.AuthA, l.AliasZone)
			var names []string
			for _, rr := range rrs {
				names = append(names, rr.Hdr.Name)
			}
			return names, err
		},
		remove: func(ctx context.Context, l *lab.Lab, name string) error {
			return l.RemoveRRset(ctx, l.AliasZone, name, dns.TypeTXT)
		},
	},
	{
		name:  "powerdns (HTTP API)",
		zone:  func(l *lab.Lab) string { return mustPowerDNS(l).Zone },
		block: func(l *lab.Lab) string { return mustPowerDNS(l).ProviderBlock() },
		calls: func(l *lab.Lab, _ result) int {
			n, err := mustPowerDNS(l).APIRequests()
			if err != nil {
				log.Fatal(err)
			}
			return n
		},
		txt: func(ctx context.Context, l *lab.Lab) ([]string, error) {
			txt, err := mustPowerDNS(l).TXT(ctx)
			return slices.Collect(maps.Keys(txt)), err
		},
		remove: func(ctx context.Context, l *lab.Lab, name string) error {
			return mustPowerDNS(l).SetTXT(ctx, strings.TrimSuffix(name, "."))
		},
	},
}

// leftBehind waits up to 30 s for p's zone to hold no TXT record (a run's
// cleanup is counted in that run), then removes what is still there, so
// that the next run starts clean, and returns how many names that was.
func (p innerProvider) leftBehind(l *lab.Lab) int {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var names []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if names, err = p.txt(ctx, l); err == nil && len(names) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, n := range names {
		if err := p.remove(ctx, l, n); err != nil {
			log.Fatalf("removing the TXT records left at %s: %v", n, err)
		}
	}
	if len(names) > 0 {
		log.Printf("%s: TXT records left at %d names after 30 s, removed", p.name, len(names))
	}
	return len(names)
}

func mustPowerDNS(l *lab.Lab) lab.PowerDNS {
	p, err := l.PowerDNS()
	if err != nil {
		log.Fatal(err)
	}
	return p
}

// providerSetups are stock Caddy (dns_challenge_override_domain, one site
// block per name) and the plugin's default config (one site block, the
// template alias), both with p.
func providerSetups(p innerProvider) []setup {
	return []setup{
		{
			name:  "stock: dns_challenge_override_domain",
			stock: true,
			site: func(l *lab.Lab, names []string) string {
				dns := "dns " + strings.TrimPrefix(p.block(l), "provider ")
				var b strings.Builder
				for _, n := range names {
					fmt.Fprintf(&b, "%s {\n\ttls {\n\t\t%s\n\t\tdns_challenge_override_domain _acme-challenge.%s.%s\n\t\tresolvers %s\n\t}\n\trespond \"ok\"\n}\n",
						n, dns, n, p.zone(l), l.Resolver)
				}
				return b.String()
			},
		},
		{
			name: "alias template (default config)",
			site: func(l *lab.Lab, names []string) string {
				return fmt.Sprintf("%s {\n\ttls {\n\t\tdns alias {\n\t\t\t%s\n\t\t\tzone %s\n\t\t\talias _acme-challenge.{domain}.%s\n\t\t\tresolvers %s\n\t\t\tprivate_nameservers\n\t\t}\n\t\tresolvers %s\n\t}\n\trespond \"ok\"\n}\n",
					strings.Join(names, ", "), p.block(l), p.zone(l), p.zone(l), l.Resolver, l.Resolver)
			},
		},
	}
}

// providerNs are the table's numbers of names: the one and twenty.
var providerNs = []int{1, 20}

var providersTable = &table{
	id:    "providers",
	title: "Inner providers: RFC 2136 against PowerDNS's HTTP API",
	intro: `
The same issuance through two inner providers: caddy-dns/rfc2136 writing to
BIND, and caddy-dns/powerdns writing through the HTTP API of the lab's
PowerDNS Authoritative 4.7 (which serves the zone). Each against stock Caddy
with the same provider (dns_challenge_override_domain, one site block per
name) in the same run; the plugin has its default config (template alias,
no propagation option). Time is from Caddy's start to its last certificate
in fresh storage. "calls/cert" are the provider's calls per certificate:
RFC 2136 record changes BIND applied, or HTTP requests PowerDNS's API
logged (libdns/powerdns finds the zone and reads it before each change).
"left" counts the names that still held a TXT record 30 s after a run, all
runs together (the harness removes them before the next run). Names are
pbench<i>.example.com/.net, delegated by
_acme-challenge.<name> CNAME _acme-challenge.<name>.<alias zone>, where the
alias zone is validation.example.org (BIND) or pdns.example (PowerDNS).
`,
	header: `| pebble retryAfter | N | provider | configuration | runs | median | spread | ratio | calls/cert | left | failed |
|---|---|---|---|---|---|---|---|---|---|---|`,
	keyCells: 4,
	run: func(b *bench, t *table, pebble string) {
		// the provider block's placeholder; Caddy inherits the environment
		os.Setenv(lab.PowerDNSKeyEnv, mustPowerDNS(b.l).APIKey)
		for _, p := range innerProviders {
			for _, n := range providerNs {
				names := delegateTo(b.l, "pbench", p.zone(b.l), n)
				var stock time.Duration
				for _, s := range providerSetups(p) {
					var times []time.Duration
					calls, failures, left := 0, 0, 0
					for rep := range b.reps {
						before := p.calls(b.l, result{})
						r := obtain(b.l, b.caddy, s, names)
						left += p.leftBehind(b.l)
						calls += p.calls(b.l, r) - before
						failures += r.failures
						times = append(times, r.total)
						log.Printf("pebble=%s %s n=%d %s rep %d: %s to the last certificate", pebble, p.name, n, s.name, rep+1, r.total.Round(time.Millisecond))
					}
					med := median(times)
					if s.stock {
						stock = med
					}
					b.add(t, fmt.Sprintf("| %s | %d | %s | %s | %d | %.2f s | %s | %s | %.1f | %d | %d |",
						pebble, n, p.name, s.name, len(times), med.Seconds(), spread(times), ratio(med, stock, s.stock),
						float64(calls)/float64(n*len(times)), left, failures))
				}
			}
		}
	},
}

// delegateTo publishes the CNAMEs of n names <prefix><i>, half in
// example.com and half in example.net, to the template alias in zone.
func delegateTo(l *lab.Lab, prefix, zone string, n int) []string {
	var names []string
	for i := range n {
		parent := "example.com"
		if i%2 == 1 {
			parent = "example.net"
		}
		name := fmt.Sprintf("%s%03d.%s", prefix, i, parent)
		publish(l, parent, lab.Delegation(name, zone))
		names = append(names, name)
	}
	return names
}
