package main

// On-demand TLS under attack (issue 29 item 6): handshakes for names under
// thousands of registrable domains whose nameserver never answers, from
// one address or from 16, while a customer's fresh delegated names are
// asked for from another address.

import (
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// onDemandAttackSetup is one row: the attack's client addresses (none: no
// attack).
type onDemandAttackSetup struct {
	name    string
	sources []string
}

// addresses returns the n loopback addresses at(0) ... at(n-1).
func addresses(n int, at func(i int) string) []string {
	var out []string
	for i := range n {
		out = append(out, at(i))
	}
	return out
}

// The legitimate client handshakes from 127.0.0.1 (the harness's own
// dialer), a network of its own; the attackers from other /24s of
// loopback, which Linux serves whole on lo, so that Caddy sees each as a
// client address of its own.
var onDemandAttacks = []onDemandAttackSetup{
	{"no attack", nil},
	{"1 source (127.0.66.1)", []string{"127.0.66.1"}},
	{"16 sources of one /24 (127.0.67.1-16)", addresses(16, func(i int) string { return fmt.Sprintf("127.0.67.%d", i+1) })},
	{"16 sources of 16 /24s (127.0.71-86.1)", addresses(16, func(i int) string { return fmt.Sprintf("127.0.%d.1", 71+i) })},
}

const (
	// attackClients is how many attack clients handshake at once, spread
	// over the row's sources; each gives up after attackGiveUp and starts
	// at most one handshake per attackPace (256 a second in all: the
	// checks they start last seconds, so this keeps every slot the
	// attacker may have busy without making the run a CPU benchmark of TLS
	// on two cores).
	attackClients = 64
	attackGiveUp  = 200 * time.Millisecond
	attackPace    = 250 * time.Millisecond
	// attackRamp is how long the attack runs before the first legitimate
	// handshake.
	attackRamp = 5 * time.Second
	// legitNames is how many fresh delegated names the legitimate client
	// asks for per row, one after another.
	legitNames = 20
)

// onDemandAttack measures the on-demand rows and returns the subsection.
func onDemandAttack(b *bench) string {
	var silent atomic.Int64
	stop := silentNameserver(b.l, "silent", &silent)
	defer stop()
	setup := onDemandSetups[1]
	var rows []string
	for _, a := range onDemandAttacks {
		rows = append(rows, b.onDemandAttackRow(setup, a, &silent))
	}
	return fmt.Sprintf(`
### On-demand TLS: fresh delegated names while one source, or 16, floods

The plugin's on-demand Caddy (the on-demand table's configuration, the
permission module's default limits), one per row. After one certificate is
issued, %d attack clients, spread over the row's source addresses, send
ClientHellos for names www.flood<i>-<run>.silent, each under a registrable
domain of its own (so domain_rate never binds), whose nameserver never
answers (Unbound sends the TLD "silent" to a UDP socket that reads and
never answers); each client gives up after %s and starts at most one
handshake per %s. %s after the attack started, a customer's client at
127.0.0.1 asks for %d fresh delegated names, one after another (the
first handshake: the permission check and the issuance from Pebble);
"admitted" are those that completed with their certificate, latencies are
theirs. "refused for load" is caddy_dns_alias_permission_overload_total,
"log lines" the warnings about them in Caddy's log (sampled: at most one
per limit per 10 s), "silent" the packets the silent nameserver received.

| attack | attack handshakes | refused for load | log lines | silent | legitimate names | admitted | success | p50 | p99 | max |
|---|---|---|---|---|---|---|---|---|---|---|
%s`, attackClients, attackGiveUp, attackPace, attackRamp, legitNames, strings.Join(rows, "\n"))
}

// onDemandAttackRow measures one row.
func (b *bench) onDemandAttackRow(setup onDemandSetup, a onDemandAttackSetup, silent *atomic.Int64) string {
	c, stopAsk := b.startOnDemand(setup, b.customer)
	defer stopAsk()
	defer c.stop()
	overloadBefore := metricValue(c, "caddy_dns_alias_permission_overload_total")
	logBefore := strings.Count(c.log.String(), "refused for load")
	silentBefore := silent.Load()

	stopAttack := make(chan struct{})
	var sent, next atomic.Int64
	var wg sync.WaitGroup
	for i := range attackClients {
		if len(a.sources) == 0 {
			break
		}
		src := &net.TCPAddr{IP: net.ParseIP(a.sources[i%len(a.sources)])}
		wg.Go(func() {
			for {
				start := time.Now()
				select {
				case <-stopAttack:
					return
				default:
				}
				name := fmt.Sprintf("www.flood%d-%s.silent", next.Add(1), b.runID)
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: attackGiveUp, LocalAddr: src}, "tcp", fmt.Sprintf("127.0.0.1:%d", c.httpsPort),
					&tls.Config{ServerName: name, InsecureSkipVerify: true})
				if err == nil {
					conn.Close()
				}
				sent.Add(1)
				time.Sleep(time.Until(start.Add(attackPace)))
			}
		})
	}
	if len(a.sources) > 0 {
		time.Sleep(attackRamp)
	}

	var took []time.Duration
	for range legitNames {
		name := b.fresh("legit", "")
		b.delegate(setup, name)
		d, err := handshake(c.httpsPort, name, time.Minute)
		if err != nil {
			log.Printf("attack %s: %s: %v", a.name, name, err)
			continue
		}
		took = append(took, d)
	}
	close(stopAttack)
	wg.Wait()
	overload := metricValue(c, "caddy_dns_alias_permission_overload_total") - overloadBefore
	lines := strings.Count(c.log.String(), "refused for load") - logBefore
	log.Printf("attack %s: %d of %d admitted, p50 %s p99 %s; %d attack handshakes, %.0f refused for load, %d log lines",
		a.name, len(took), legitNames, percentile(took, 50), percentile(took, 99), sent.Load(), overload, lines)
	return fmt.Sprintf("| %s | %d | %.0f | %d | %d | %d | %d | %.0f%% | %s | %s | %s |",
		a.name, sent.Load(), overload, lines, silent.Load()-silentBefore, legitNames, len(took),
		100*float64(len(took))/legitNames, ms(percentile(took, 50)), ms(percentile(took, 99)), ms(percentile(took, 100)))
}
