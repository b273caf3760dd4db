package main

// The soak benchmark (issue 19): what anonymous TLS clients, hostile zones
// and a platform's scale make Caddy do, with the plugin and with stock
// Caddy where stock Caddy does the same job.
//
//	cd xcaddy_test && go run ./bench -soak 2000,10000
//
// For each size it runs a flood of that many handshakes for distinct names
// under a nameserver that never answers, and a monitor run over that many
// certificates in storage followed by 5 reloads; once, the handshakes for
// fresh names in a zone of 120 nameservers. It writes the "Soak" section
// of -out and leaves the rest of the file as it is.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// soakHeading starts the section this file writes in BENCHMARKS.md.
const soakHeading = "## Soak: on-demand TLS against hostile input and at platform scale"

const (
	// floodClients is how many flood clients handshake at once, each
	// giving up after floodGiveUp, as scanners and bots do: 50 keep the
	// two cores of the benchmark machine from being all TLS (clients and
	// server share them), so that what the issued name waits for is the
	// server's work, and the flood lasts long enough to sample it.
	floodClients = 50
	floodGiveUp  = 200 * time.Millisecond
	// floodDomains spreads the flood's names over this many registrable
	// domains (d0.silent ... d999.silent), so that domain_rate lets
	// their checks start and max_checks is what bounds them.
	floodDomains = 1000
	// manyNS is the NS count of the hostile zone, each with three
	// addresses.
	manyNS     = 120
	manyNSZone = "manyns.example"
	// soakReloads is how many config reloads follow the monitor run.
	soakReloads = 5
)

// soak holds the run's rows, the section's parts.
type soak struct {
	b                        *bench
	flood, ns, monitor       []string
	out                      string
	silentPackets            atomic.Int64
	nsTargets                sync.Map // challenge name -> CNAME target
	nsPackets, nsStubPackets atomic.Int64
}

// runSoak measures the soak tables for each size and writes the section.
func runSoak(bin string, sizes []int, out string) {
	b := &bench{caddy: bin, runID: strconv.FormatInt(time.Now().Unix()%(36*36*36*36), 36)}
	b.l = labWith("0")
	s := &soak{b: b, out: out}
	stop := s.startSilent()
	defer stop()
	for _, n := range sizes {
		for _, setup := range onDemandSetups {
			s.flood = append(s.flood, s.floodRow(setup, n))
			s.write()
		}
	}
	stopNS := s.startManyNS()
	defer stopNS()
	for _, setup := range nsSetups() {
		s.ns = append(s.ns, s.nsRow(setup))
		s.write()
	}
	for _, n := range sizes {
		s.monitor = append(s.monitor, s.monitorRow(n))
		s.write()
	}
	log.Printf("wrote the %q section of %s", soakHeading, out)
}

// unboundControl runs unbound-control on the lab's Unbound.
func unboundControl(l *lab.Lab, args ...string) {
	out, err := exec.Command("unbound-control", append([]string{"-c", l.UnboundConf}, args...)...).CombinedOutput()
	if err != nil {
		log.Fatalf("unbound-control %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// startSilent opens the nameserver that never answers for the TLD
// "silent" (silentNameserver).
func (s *soak) startSilent() func() {
	return silentNameserver(s.b.l, "silent", &s.silentPackets)
}

// silentNameserver opens a nameserver that never answers on loopback
// (lab.ServeSilently), counting in packets what reaches it, and makes
// Unbound send it every question about the TLD tld. It returns the
// function that undoes both.
func silentNameserver(l *lab.Lab, tld string, packets *atomic.Int64) func() {
	addr, stop, err := lab.ServeSilently("127.0.0.1:0", packets)
	if err != nil {
		log.Fatal(err)
	}
	unboundControl(l, "stub_add", tld, fmt.Sprintf("127.0.0.1@%d", addr.Port))
	return func() { unboundControl(l, "stub_remove", tld); stop() }
}

// sample is what the harness reads of Caddy's process.
type sample struct{ goroutines, fds, rssKB int64 }

// sampleCaddy reads Caddy's goroutines (its /metrics), open file
// descriptors and resident memory.
func sampleCaddy(c *caddyProc) sample {
	pid := c.cmd.Process.Pid
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return sample{goroutines: int64(metricValue(c, "go_goroutines")), fds: int64(len(fds)), rssKB: procStatusKB(pid, "VmRSS:")}
}

func procStatusKB(pid int, field string) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// metricsText returns Caddy's /metrics.
func metricsText(c *caddyProc) string {
	resp, err := http.Get("http://" + c.admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// metricValue sums the values of the series whose line starts with
// prefix (a name, or a name and labels).
func metricValue(c *caddyProc, prefix string) float64 {
	return sumSeries(metricsText(c), prefix)
}

func sumSeries(text, prefix string) float64 {
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		// The whole name: "x_total" is no series of "x".
		if rest := line[len(prefix):]; !strings.HasSuffix(prefix, "}") && !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// floodRow floods Caddy of setup with n handshakes for distinct names
// under the silent TLD, floodClients at once, each client giving up after
// floodGiveUp, while one client handshakes for an issued name one
// handshake after another.
func (s *soak) floodRow(setup onDemandSetup, n int) string {
	b := s.b
	c, stopAsk := b.startOnDemand(setup, b.customer)
	defer stopAsk()
	defer c.stop()
	issued := b.fresh("issued", "")
	b.delegate(setup, issued)
	if _, err := handshake(c.httpsPort, issued, 3*time.Minute); err != nil {
		log.Fatalf("soak %s: the first handshake for %s: %v; Caddy's log:\n%s", setup.name, issued, err, c.log.String())
	}
	time.Sleep(2 * time.Second) // the issuance's goroutines end
	before := sampleCaddy(c)
	queriesBefore := metricValue(c, "caddy_dns_alias_dns_queries_total")
	overloadBefore := metricValue(c, "caddy_dns_alias_permission_overload_total")
	silentBefore := s.silentPackets.Load()
	m := startMeter(b.l)

	var peak sample
	samplerDone := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Add(1)
	go func() {
		defer samplerWG.Done()
		for {
			smp := sampleCaddy(c)
			peak.goroutines, peak.fds, peak.rssKB = max(peak.goroutines, smp.goroutines), max(peak.fds, smp.fds), max(peak.rssKB, smp.rssKB)
			select {
			case <-samplerDone:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	var next atomic.Int64
	var gaveUp atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range floodClients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				name := fmt.Sprintf("h%d-%s.d%d.silent", i, b.runID, i%floodDomains)
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: floodGiveUp}, "tcp", fmt.Sprintf("127.0.0.1:%d", c.httpsPort),
					&tls.Config{ServerName: name, InsecureSkipVerify: true})
				if err != nil {
					gaveUp.Add(1)
					continue
				}
				conn.Close()
			}
		})
	}
	floodDone := make(chan struct{})
	go func() { wg.Wait(); close(floodDone) }()
	during, failed := handshakesUntil(floodDone, c.httpsPort, issued, 10*time.Second)
	floodTook := time.Since(start)
	// The checks the clients abandoned run on: keep sampling while they
	// may (the longest a check takes is its 30 s timeout).
	time.Sleep(35 * time.Second)
	close(samplerDone)
	samplerWG.Wait()
	after := sampleCaddy(c)
	tr := m.stop()
	queries := metricValue(c, "caddy_dns_alias_dns_queries_total") - queriesBefore
	overload := metricValue(c, "caddy_dns_alias_permission_overload_total") - overloadBefore
	silent := s.silentPackets.Load() - silentBefore
	log.Printf("soak flood %s n=%d: took %s, goroutines %d -> peak %d -> %d, fds %d -> peak %d -> %d, peak rss %d MiB, issued p50 %s p99 %s (%d, %d failed)",
		setup.name, n, floodTook.Round(time.Millisecond), before.goroutines, peak.goroutines, after.goroutines, before.fds, peak.fds, after.fds,
		peak.rssKB/1024, percentile(during, 50), percentile(during, 99), len(during), failed)
	plugin := "–"
	if !setup.stock {
		plugin = fmt.Sprintf("%.0f", queries)
	}
	return fmt.Sprintf("| %s | %d | %s | %d / %d / %d | %d / %d / %d | %.0f MiB | %d | %s | %d | %s | %.0f | %s | %s | %d | %d |",
		setup.label(false), n, floodTook.Round(100*time.Millisecond), before.goroutines, peak.goroutines, after.goroutines,
		before.fds, peak.fds, after.fds, float64(peak.rssKB)/1024, tr.queries, plugin, silent, fmt.Sprint(gaveUp.Load()), overload,
		ms(percentile(during, 50)), ms(percentile(during, 99)), len(during), failed)
}

// nsSetup is a configuration of the 120-nameserver table.
type nsSetup struct {
	onDemandSetup
	private bool // the alias provider may ask non-global addresses
}

// nsSetups: the plugin as the lab runs it (private_nameservers, since
// every lab server is on loopback), the plugin as production runs it
// (without; its propagation wait then cannot ask the lab's alias zone
// either, so authoritative_wait is off and certmagic's check stays on), and
// stock Caddy.
func nsSetups() []nsSetup {
	withPrivate := onDemandSetups[1]
	without := withPrivate
	without.name = "alias: on_demand, permission alias, template, without private_nameservers"
	without.global = func(l *lab.Lab, ask string) string {
		return strings.Replace(withPrivate.global(l, ask), "private_nameservers", "authoritative_wait -1", 1)
	}
	withPrivate.name += ", private_nameservers (the lab's config)"
	return []nsSetup{{withPrivate, true}, {without, false}, {onDemandSetups[0], false}}
}

// nsAddrs are the three addresses of nameserver i of the hostile zone: all
// on loopback, as everything in the lab; none global.
func nsAddrs(i int) []string {
	return []string{fmt.Sprintf("127.0.1.%d", i+2), fmt.Sprintf("127.0.2.%d", i+2), fmt.Sprintf("127.0.3.%d", i+2)}
}

// nsStubAddr is where Unbound asks about the hostile zone.
const nsStubAddr = "127.0.1.1"

// startManyNS serves manyNSZone: 120 NS records, each name with three
// addresses, every address an authoritative server that answers the
// challenge CNAMEs the harness sets, and counts the packets its addresses
// get apart from Unbound's (at nsStubAddr).
func (s *soak) startManyNS() func() {
	var servers []*dns.Server
	serve := func(addr, network string, count *atomic.Int64) {
		srv := &dns.Server{Addr: addr + ":53", Net: network, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			count.Add(1)
			w.WriteMsg(s.answerManyNS(r, network))
		})}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			log.Fatalf("serving %s on %s/%s: %v", manyNSZone, addr, network, err)
		}
		servers = append(servers, srv)
	}
	serve(nsStubAddr, "udp", &s.nsStubPackets)
	serve(nsStubAddr, "tcp", &s.nsStubPackets)
	for i := range manyNS {
		for _, a := range nsAddrs(i) {
			serve(a, "udp", &s.nsPackets)
		}
	}
	unboundControl(s.b.l, "stub_add", manyNSZone, nsStubAddr+"@53")
	return func() {
		unboundControl(s.b.l, "stub_remove", manyNSZone)
		for _, srv := range servers {
			srv.Shutdown()
		}
	}
}

// answerManyNS answers as the authoritative servers of manyNSZone.
func (s *soak) answerManyNS(r *dns.Msg, network string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(dns.Fqdn(q.Name))
	zone := manyNSZone + "."
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60}, Ns: "ns000." + zone, Mbox: "hostmaster." + zone,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 1}
	nodata := func() { m.Ns = append(m.Ns, soa) }
	switch {
	case name == zone:
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = append(m.Answer, soa)
		case dns.TypeNS:
			for i := range manyNS {
				m.Answer = append(m.Answer, &dns.NS{Hdr: hdr(dns.TypeNS), Ns: fmt.Sprintf("ns%03d.%s", i, zone)})
			}
		default:
			nodata()
		}
	case strings.HasPrefix(name, "ns") && strings.Count(name, ".") == strings.Count(zone, ".")+1:
		i, err := strconv.Atoi(name[2:5])
		if err != nil || i >= manyNS {
			m.Rcode = dns.RcodeNameError
			break
		}
		if q.Qtype != dns.TypeA {
			nodata()
			break
		}
		for _, a := range nsAddrs(i) {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(a)})
		}
	default:
		if target, ok := s.nsTargets.Load(name); ok {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: target.(string)})
		} else if _, ok := s.nsTargets.Load("_acme-challenge." + name); ok {
			nodata() // the delegated name itself exists
		} else {
			m.Rcode = dns.RcodeNameError
			nodata()
		}
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	return m
}

// nsHandshakes is how many fresh names of the hostile zone each
// configuration gets.
const nsHandshakes = 3

// nsRow measures the first handshakes for fresh names delegated from the
// zone of 120 nameservers: the packets that reach its nameservers' 360
// addresses directly, per handshake.
func (s *soak) nsRow(setup nsSetup) string {
	b := s.b
	c, stopAsk := b.startOnDemand(setup.onDemandSetup, b.customer)
	defer stopAsk()
	defer c.stop()
	var direct, stub []int64
	var times []time.Duration
	for range nsHandshakes {
		name := fmt.Sprintf("ns%d-%s.%s", b.seq, b.runID, manyNSZone)
		b.seq++
		b.mu.Lock()
		b.customers[name] = true
		b.mu.Unlock()
		s.nsTargets.Store("_acme-challenge."+name+".", dns.Fqdn(setup.alias(b.l, name)))
		d0, s0 := s.nsPackets.Load(), s.nsStubPackets.Load()
		took, err := handshake(c.httpsPort, name, 3*time.Minute)
		if err != nil {
			log.Fatalf("soak ns %s: %s: %v; Caddy's log:\n%s", setup.name, name, err, c.log.String())
		}
		waitClean(b.l)
		direct, stub, times = append(direct, s.nsPackets.Load()-d0), append(stub, s.nsStubPackets.Load()-s0), append(times, took)
		log.Printf("soak ns %s: %s in %s, %d packets at the nameservers, %d at the stub", setup.name, name, took.Round(time.Millisecond), direct[len(direct)-1], stub[len(stub)-1])
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %.2f s |", setup.label(true), nsHandshakes, slices.Max(direct), slices.Max(stub), median(times).Seconds())
}

// monitorRow starts the plugin's on-demand Caddy on a storage that holds n
// self-signed certificates of on-demand names, half of them delegated and
// half not, waits for the monitor's first run, then reloads the config
// soakReloads times.
func (s *soak) monitorRow(n int) string {
	b := s.b
	l := b.l
	healthy := n / 2
	var names []string
	var records []dns.RR
	for i := range n {
		name := fmt.Sprintf("mon%d-%s.example.net", i, b.runID)
		names = append(names, name)
		if i < healthy {
			rr, err := dns.NewRR(lab.Delegation(name, l.AliasZone))
			if err != nil {
				log.Fatal(err)
			}
			records = append(records, rr)
		}
	}
	servers, err := l.Servers("example.net")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := 0; i < len(records); i += 500 {
		for _, srv := range servers {
			if err := l.Update(ctx, srv, "example.net", records[i:min(i+500, len(records))], nil); err != nil {
				log.Fatalf("publishing the monitor's delegations: %v", err)
			}
		}
	}
	defer func() {
		for i := 0; i < len(records); i += 500 {
			for _, srv := range servers {
				l.Update(ctx, srv, "example.net", nil, records[i:min(i+500, len(records))])
			}
		}
	}()

	setup := onDemandSetups[1]
	global := "dns_alias {\n\t\tcheck_interval 1h\n\t}\n\t" + setup.global(l, "")
	var storeTook time.Duration
	c := startCaddyWith(l, b.caddy, global, onDemandSite, func(storage string) {
		t0 := time.Now()
		storeCertificates(storage, (&certmagic.ACMEIssuer{CA: l.PebbleDir}).IssuerKey(), names)
		storeTook = time.Since(t0)
	})
	defer c.stop()
	if err := c.listening(60 * time.Second); err != nil {
		log.Fatal(err)
	}
	log.Printf("soak monitor n=%d: %d certificates stored in %s", n, n, storeTook.Round(time.Millisecond))
	text := waitSeries(c, "caddy_dns_alias_monitor_last_run_duration_seconds", 10*time.Minute)
	took := sumSeries(text, "caddy_dns_alias_monitor_last_run_duration_seconds")
	recursive := sumSeries(text, `caddy_dns_alias_dns_queries_total{kind="recursive"}`)
	direct := sumSeries(text, `caddy_dns_alias_dns_queries_total{kind="direct"}`)
	brokenSeries := countSeries(text, "caddy_dns_alias_delegation_broken")
	allSeries := countSeries(text, "caddy_dns_alias_")
	warnings := brokenWarnings(c)
	rss := procStatusKB(c.cmd.Process.Pid, "VmHWM:")
	log.Printf("soak monitor n=%d: run took %.1f s, %.0f recursive + %.0f direct queries, %d series (%d broken), %d warnings, peak rss %d MiB",
		n, took, recursive, direct, allSeries, brokenSeries, warnings, rss/1024)

	m := startMeter(l)
	for range soakReloads {
		reload(c)
	}
	// Longer than a fresh monitor's first delay (at most 5.5 s): a run
	// that a reload started would have begun.
	time.Sleep(15 * time.Second)
	queriesAfter := m.stop().queries
	text = metricsText(c)
	runs := sumSeries(text, "caddy_dns_alias_monitor_runs_total")
	warningsAfter := brokenWarnings(c) - warnings
	seriesAfter := countSeries(text, "caddy_dns_alias_")
	return fmt.Sprintf("| %d | %d | %d | %.1f s | %.2f | %.2f | %.0f MiB | %d | %.0f | %d | %d | %d / %d | %d |",
		n, healthy, n-healthy, took, recursive/float64(n), direct/float64(n), float64(rss)/1024, warnings,
		runs, queriesAfter, warningsAfter, allSeries-brokenSeries, seriesAfter-countSeries(text, "caddy_dns_alias_delegation_broken"), brokenSeries)
}

// brokenWarnings counts the monitor's broken-delegation warnings in
// Caddy's log.
func brokenWarnings(c *caddyProc) int {
	text := c.log.String()
	return strings.Count(text, " will fail: ") + strings.Count(text, " cannot be obtained: ")
}

// storeCertificates writes a self-signed certificate, key and metadata for
// each name where certmagic keeps the issuer's certificates, as a
// platform's storage holds its on-demand certificates.
func storeCertificates(storage, issuerKey string, names []string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	fs := &certmagic.FileStorage{Path: storage}
	ctx := context.Background()
	now := time.Now()
	for i, name := range names {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(60 * 24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			log.Fatal(err)
		}
		for k, v := range map[string][]byte{
			certmagic.StorageKeys.SiteCert(issuerKey, name):       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			certmagic.StorageKeys.SitePrivateKey(issuerKey, name): keyPEM,
			certmagic.StorageKeys.SiteMeta(issuerKey, name):       []byte(`{"sans":["` + name + `"],"issuer_data":{}}`),
		} {
			if err := fs.Store(ctx, k, v); err != nil {
				log.Fatal(err)
			}
		}
	}
}

// waitSeries waits until Caddy's /metrics has a series of name.
func waitSeries(c *caddyProc, name string, timeout time.Duration) string {
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		if text := metricsText(c); countSeries(text, name) > 0 {
			return text
		}
		if time.Now().After(deadline) || !c.running() {
			log.Fatalf("no %s within %s; Caddy's log:\n%s", name, timeout, c.log.String())
		}
	}
}

// countSeries counts the series whose name starts with prefix.
func countSeries(text, prefix string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// reload posts Caddy's running config back to /load, forced: the same
// config reloaded, as a platform reloads through the API.
func reload(c *caddyProc) {
	resp, err := http.Get("http://" + c.admin + "/config/")
	if err != nil {
		log.Fatal(err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.admin+"/load", strings.NewReader(string(cfg)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("reloading: %d %s", resp.StatusCode, body)
	}
}

// write puts the section with the rows so far into the file.
func (s *soak) write() {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nProduced by `cd xcaddy_test && go run ./bench %s` (as root, see README.md, Benchmarks) on %s.\n\n", soakHeading, shellQuote(os.Args[1:]), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, %s, %s.\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, `
### A flood of handshakes for names whose nameserver never answers

One Caddy per row, on-demand for every name (the configurations of the
on-demand table; stock Caddy's ask endpoint admits the names the harness
delegated, as a platform's customer list would). After one certificate is
issued, %d clients handshake at once for distinct names
h<i>.d<i mod %d>.silent until all the row's handshakes are sent, each
client giving up after %s; Unbound sends every question about the TLD
"silent" to a UDP socket that never answers. Meanwhile one client
handshakes for the issued name, one handshake after another. Goroutines
(Caddy's go_goroutines), open file descriptors and resident memory are
sampled every 50 ms: before the flood / at the peak / 35 s after it (the
checks the clients abandoned live at most 30 s). "queries" are what Unbound
received, "plugin's" the DNS queries the alias providers sent
(caddy_dns_alias_dns_queries_total), "silent" the packets that reached the
nameserver that never answers, "refused for load" the handshakes the
permission module refused at once (caddy_dns_alias_permission_overload_total).

| configuration | handshakes | flood took | goroutines | open FDs | peak RSS | queries | plugin's | silent | clients gave up | refused for load | issued name p50 | p99 | issued handshakes | failed |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
`, floodClients, floodDomains, floodGiveUp)
	for _, r := range s.flood {
		b.WriteString(r + "\n")
	}
	fmt.Fprintf(&b, `
### A production zone of %d nameservers

%s has %d NS records, each name with three addresses (127.0.1.x,
127.0.2.x, 127.0.3.x: on loopback like every lab server, so none is global
unicast), every one an authoritative server of the harness that counts what
reaches it; Unbound asks the zone at a separate address. Each row takes %d
fresh names of the zone, one after another, each delegated to the row's
alias, and counts per handshake (the permission module, the gate and the
issuance together) the packets that reached the %d addresses directly,
the largest of the %d.

| configuration | handshakes | packets at the zone's nameservers (all non-global) | packets Unbound sent the zone | median first handshake |
|---|---|---|---|---|
`, manyNS, manyNSZone, manyNS, nsHandshakes, 3*manyNS, nsHandshakes)
	for _, r := range s.ns {
		b.WriteString(r + "\n")
	}
	fmt.Fprintf(&b, `
### The monitor over a platform's certificates, and reloads

The plugin's on-demand Caddy (check_interval 1h) started on a storage that
holds n self-signed certificates of on-demand names in example.net, half
of them delegated and half not. The row waits for the monitor's first run
(caddy_dns_alias_monitor_last_run_duration_seconds), then reloads the same
config %d times through POST /load (forced with Cache-Control:
must-revalidate) and waits 15 s. Queries are per name
(caddy_dns_alias_dns_queries_total); "warnings" are the broken-delegation
warnings of the run; "queries during the reloads" what Unbound and BIND
received from the first reload to 15 s after the last; "series" the caddy_dns_alias_ series of /metrics
besides the per-name series of broken delegations, after the run and
after the reloads. Stock Caddy has no monitor to compare.

| certificates | delegated | broken | run took | recursive queries/name | direct queries/name | Caddy peak RSS | warnings | runs after the reloads | queries during the reloads | warnings during the reloads | series (not per broken name): after the run / after the reloads | series per broken name |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
`, soakReloads)
	for _, r := range s.monitor {
		b.WriteString(r + "\n")
	}
	putSection(s.out, soakHeading, b.String())
}
