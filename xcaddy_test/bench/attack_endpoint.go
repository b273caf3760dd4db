package main

// The acme-dns endpoint under attack (issue 29): legitimate updates while
// sources, each at the most its source rate allows, send updates naming
// an account that does not exist or one that does with a wrong key.
//
// Sources: every request comes from 127.0.0.1, and Caddy trusts loopback
// as a proxy (servers { trusted_proxies static 127.0.0.0/8 }), so the
// endpoint takes each request's source from its X-Forwarded-For, as it
// does behind a real proxy: the attack's sources are IPv6 addresses (one;
// the 16 /64s of a /60; 256 /64s of one /48, 2001:db8:c:XX00::/64), and
// the legitimate clients' are in /48s of their own.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"
)

// endpointAttacks are the rows' attacks: the number of sources and their
// /48.
var endpointAttacks = []struct {
	name    string
	sources int
	network string
}{
	{"none", 0, ""},
	{"1 source", 1, "2001:db8:a::/48"},
	{"16 sources (the /64s of one /60)", 16, "2001:db8:b::/48"},
	{"256 /64s of one /48", 256, "2001:db8:c::/48"},
}

// attackSources are n /64s of network, one address of each.
func attackSources(n int, network string) []string {
	base := netip.MustParsePrefix(network).Addr().As16()
	out := make([]string, n)
	for i := range n {
		a := base
		a[6], a[7], a[15] = byte(i), 0, 1 // 2001:db8:c:XX00::1
		if n <= 16 {
			a[6], a[7] = 0, byte(i) // 2001:db8:b:X::1, one /60
		}
		out[i] = netip.AddrFrom16(a).String()
	}
	return out
}

// endpointClient is a legitimate client: an account and its source.
type endpointClient struct {
	name, user, key, source string
	hash                    string
}

const (
	endpointUpdates     = 10
	endpointUpdateEvery = 2 * time.Second
	endpointDeadline    = 5 * time.Second
	endpointSourceRate  = 5 // requests a second per source: the endpoint's default limit
)

// endpointAttack measures each attack with cost-14 hashes (those of caddy
// hash-password) and returns its subsection.
func endpointAttack(b *bench) string {
	clients := []*endpointClient{
		{name: "updated before the attack", user: "known", source: "2001:db8:1000::1"},
		{name: "first update during the attack", user: "first", source: "2001:db8:2000::1"},
	}
	for _, c := range clients {
		c.key = randomValue()[:40]
		hash, err := bcrypt.GenerateFromPassword([]byte(c.key), 14)
		if err != nil {
			log.Fatal(err)
		}
		c.hash = string(hash)
	}
	start := time.Now()
	bcrypt.CompareHashAndPassword([]byte(clients[0].hash), []byte("wrong"))
	alone := time.Since(start)
	load, _ := os.ReadFile("/proc/loadavg")
	var s strings.Builder
	s.WriteString(`### The acme-dns endpoint

Two accounts with cost-14 key hashes (` + "`caddy hash-password`" + `'s) each make 10 updates, one every 2 s,
through a fresh Caddy per row: one made an update before the attack began, the other's first
update comes 2 s into it (p99 of its 10 is that first update, the one that needs a key check;
the others are recognized by their key's HMAC). Each attacking source sends updates at 5 a second (the endpoint's
per-source rate), alternately for a user that does not exist and for the first account with a
wrong key. Sources come from X-Forwarded-For (Caddy trusts loopback as a proxy), so they are
real IPv6 /64s: one, the 16 of one /60, and 256 of one /48. "ok" is a 200 within 5 s.
The attackers (a Go client sending up to 1,280 requests a second), the clients and Caddy share
the machine's cores, and so does the rest of its load: a cost-14 check's time, and with it a
first update's, depends on what is left of them;
`)
	fmt.Fprintf(&s, "one cost-14 check alone took %.2f s at the start, load average %s.\n\n", alone.Seconds(), strings.Join(strings.Fields(string(load))[:3], " "))
	s.WriteString(`| attack | client | ok | p50 | p99 | attacker's requests | 401 | 429 | 503 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
`)
	for _, a := range endpointAttacks {
		for _, row := range endpointRow(b, clients, attackSources(a.sources, orDefault(a.network))) {
			fmt.Fprintf(&s, "| %s %s\n", a.name, row)
		}
	}
	return s.String()
}

func orDefault(network string) string {
	if network == "" {
		return "2001:db8::/48"
	}
	return network
}

// endpointRow starts the endpoint, makes the first client's update before
// the attack, then runs the attack from sources while both clients update,
// and returns a row's cells (after the attack's) per client.
func endpointRow(b *bench, clients []*endpointClient, sources []string) []string {
	port := freePort()
	var accounts []string
	for _, c := range clients {
		accounts = append(accounts, fmt.Sprintf("account %s %s %s", c.user, c.hash, c.user))
	}
	proc := startCaddy(b.l, b.caddy, "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}", fmt.Sprintf(`http://127.0.0.1:%d {
	acme_dns_server {
		zone %s
		%s
		%s
		resolvers %s
		private_nameservers
	}
}
`, port, b.l.AliasZone, b.l.RFC2136Provider(), strings.Join(accounts, "\n\t\t"), b.l.Resolver))
	defer func() {
		proc.stop()
		// Values may outlive the Caddy that wrote them: none is left for
		// the next row or table.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range clients {
			if err := b.l.RemoveRRset(ctx, b.l.AliasZone, c.user+"."+b.l.AliasZone, dns.TypeTXT); err != nil {
				log.Printf("warning: clearing the values of %s: %v", c.user, err)
			}
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	waitEndpoint(proc, base)
	post := func(source, user, key string) (int, time.Duration) {
		req, _ := http.NewRequest(http.MethodPost, base+"/update", strings.NewReader(fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, user, randomValue())))
		req.Header.Set("X-Forwarded-For", source)
		req.Header.Set("X-Api-User", user)
		req.Header.Set("X-Api-Key", key)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Since(start)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	if code, _ := post(clients[0].source, clients[0].user, clients[0].key); code != http.StatusOK {
		log.Fatalf("the first client's update before the attack: %d; Caddy's log:\n%s", code, proc.log.String())
	}

	stop := make(chan struct{})
	var attack sync.WaitGroup
	var sent atomic.Int64
	var statuses sync.Map // status → *atomic.Int64
	for i, src := range sources {
		attack.Go(func() {
			tick := time.NewTicker(time.Second / endpointSourceRate)
			defer tick.Stop()
			for n := i; ; n++ {
				user, key := "nobody", "guess"
				if n%2 == 1 {
					user, key = clients[0].user, fmt.Sprint("guess-", n)
				}
				code, _ := post(src, user, key)
				sent.Add(1)
				v, _ := statuses.LoadOrStore(code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	if len(sources) > 0 {
		time.Sleep(2 * time.Second) // the attack under way
	}
	lat := make([][]time.Duration, len(clients))
	ok := make([]int, len(clients))
	var legit sync.WaitGroup
	for ci, c := range clients {
		legit.Go(func() {
			for range endpointUpdates {
				code, took := post(c.source, c.user, c.key)
				lat[ci] = append(lat[ci], took)
				if code == http.StatusOK && took <= endpointDeadline {
					ok[ci]++
				}
				time.Sleep(endpointUpdateEvery)
			}
		})
	}
	legit.Wait()
	close(stop)
	attack.Wait()
	count := func(code int) int64 {
		if v, ok := statuses.Load(code); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	var rows []string
	for ci, c := range clients {
		attackCells := "| – | – | – | – |"
		if len(sources) > 0 {
			attackCells = fmt.Sprintf("| %d | %d | %d | %d |", sent.Load(), count(401), count(429), count(503))
		}
		rows = append(rows, fmt.Sprintf("| %s | %d/%d | %.3f s | %.3f s %s", c.name, ok[ci], endpointUpdates,
			percentile(lat[ci], 50).Seconds(), percentile(lat[ci], 99).Seconds(), attackCells))
		log.Printf("endpoint attack (%d sources), %s: %d/%d ok, latencies %v", len(sources), c.name, ok[ci], endpointUpdates, lat[ci])
	}
	return rows
}

// randomValue is a value shaped like an ACME DNS-01 digest.
func randomValue() string {
	b := make([]byte, 32)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
