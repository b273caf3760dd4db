// Command bench measures time to certificate and DNS traffic of Caddy with
// this plugin against stock Caddy (dns_challenge_override_domain), in one run
// on the lab (BIND, Unbound, Pebble on loopback), and writes BENCHMARKS.md.
//
//	go run ./bench [-n 1,20,100] [-reps 3] [-pebble default,0] [-out BENCHMARKS.md]
//
// It needs root (the lab binds port 53 on 127.0.0.2 and 127.0.0.3) and brings
// the lab up itself; CADDY_BIN skips the xcaddy build.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/lab"
)

// setup is one way of configuring Caddy for N delegated names.
type setup struct {
	name  string
	stock bool
	// site returns the Caddyfile for names (global options excluded).
	site func(l *lab.Lab, names []string) string
}

var setups = []setup{
	{
		name:  "stock: dns_challenge_override_domain",
		stock: true,
		// The override is one name per policy: one site block per name.
		site: func(l *lab.Lab, names []string) string {
			var b strings.Builder
			for _, n := range names {
				fmt.Fprintf(&b, `%s {
	tls {
		dns rfc2136 {
			key_name %s
			key {env.TSIG_SECRET}
			key_alg hmac-sha256
			server %s
		}
		dns_challenge_override_domain _acme-challenge.%s.%s
		resolvers %s
	}
	respond "ok"
}
`, n, l.CaddyKey.Name, l.AuthA, n, l.AliasZone, l.Resolver)
			}
			return b.String()
		},
	},
	{
		name: "alias template (Caddy's default propagation check)",
		site: aliasSite("alias _acme-challenge.{domain}.", ""),
	},
	{
		name: "alias template, propagation_timeout -1",
		site: aliasSite("alias _acme-challenge.{domain}.", "propagation_timeout -1"),
	},
	{
		name: "alias follow, propagation_timeout -1",
		site: aliasSite("follow", "propagation_timeout -1"),
	},
}

// aliasSite is one site block for all names with the alias provider; a
// mode ending in a dot is completed with the alias zone.
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
		}
		resolvers %s
		%s
	}
	respond "ok"
}
`, strings.Join(names, ", "), l.RFC2136Provider(), l.AliasZone, mode, l.Resolver, l.Resolver, tlsExtra)
	}
}

// result is one run: Caddy from start to its last certificate.
type result struct {
	total    time.Duration
	perCert  []time.Duration // start to each certificate
	updates  int             // RR changes the alias zone's server applied
	queries  int             // queries Unbound and the authoritative servers received
	peakRSS  int64           // kB
	failures int
}

func main() {
	ns := flag.String("n", "1,20,100", "numbers of delegated names")
	reps := flag.Int("reps", 3, "repetitions of each configuration")
	pebbles := flag.String("pebble", "default,0", "Pebble retryAfter settings: default (3 s / 5 s) or seconds")
	out := flag.String("out", "BENCHMARKS.md", "where to write the table")
	appendRows := flag.Bool("append", false, "keep the rows already in -out (but those measured again) and add these")
	only := flag.String("setups", "", "comma-separated parts of configuration names to run (default: all)")
	clusterNs := flag.String("cluster", "", "instead: the scale-out on Redis (cluster.go) for these numbers of names, e.g. 60,100")
	flag.Parse()
	log.SetFlags(log.Ltime)

	if err := lab.Hold(); err != nil {
		log.Fatal(err)
	}
	bin, cleanup := caddyBinary()
	defer cleanup()
	if *clusterNs != "" {
		runCluster(bin, *clusterNs, *reps, *pebbles, *out)
		return
	}

	var rows []string
	if *appendRows {
		rows = existingRows(*out)
	}
	for _, pebble := range strings.Split(*pebbles, ",") {
		os.Setenv("PEBBLE_RETRY_AFTER", pebble)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		l, err := lab.Up(ctx)
		cancel()
		if err != nil {
			log.Fatal(err)
		}
		for _, nStr := range strings.Split(*ns, ",") {
			n, err := strconv.Atoi(nStr)
			if err != nil {
				log.Fatalf("-n: %v", err)
			}
			names := delegate(l, n)
			var stockMedian time.Duration
			for _, s := range setups {
				if !selected(s.name, *only) && !s.stock {
					continue
				}
				var runs []result
				for rep := range *reps {
					r := run(l, bin, s, names)
					log.Printf("pebble=%s n=%d %s rep %d: %s to the last certificate", pebble, n, s.name, rep+1, r.total.Round(time.Millisecond))
					runs = append(runs, r)
				}
				row, median := summarize(pebble, n, s, runs, stockMedian)
				if s.stock {
					stockMedian = median
				}
				rows = replaceRow(rows, row)
				// Written after every row, so that a long run that is
				// stopped keeps what it measured.
				if err := writeReport(*out, rows); err != nil {
					log.Fatal(err)
				}
			}
		}
	}
	log.Printf("wrote %s", *out)
}

// caddyBinary builds Caddy with xcaddy (or takes $CADDY_BIN).
func caddyBinary() (string, func()) {
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		return bin, func() {}
	}
	root, err := lab.RepoRoot()
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "caddy-dns-alias-bench-")
	if err != nil {
		log.Fatal(err)
	}
	bin := filepath.Join(dir, "caddy")
	log.Printf("building Caddy with xcaddy")
	cmd := exec.Command("bash", filepath.Join(root, "lab", "build-caddy.sh"), bin)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("building Caddy: %v", err)
	}
	return bin, func() { os.RemoveAll(dir) }
}

// delegate publishes the CNAMEs of n names, half in example.com and half in
// example.net. Every setup uses the same delegation:
// _acme-challenge.<name> CNAME _acme-challenge.<name>.<alias zone>.
func delegate(l *lab.Lab, n int) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var names []string
	for i := range n {
		zone := "example.com"
		if i%2 == 1 {
			zone = "example.net"
		}
		name := fmt.Sprintf("bench%03d.%s", i, zone)
		rr := lab.Delegation(name, l.AliasZone)
		if err := l.Publish(ctx, zone, rr); err != nil {
			log.Fatalf("publishing %s: %v", rr, err)
		}
		names = append(names, name)
	}
	return names
}

// run starts Caddy with fresh storage and waits for every certificate.
func run(l *lab.Lab, bin string, s setup, names []string) result {
	dir, err := os.MkdirTemp("", "caddy-dns-alias-bench-run-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	storage := filepath.Join(dir, "storage")
	cfg := l.CaddyGlobalOptions(fmt.Sprintf("127.0.0.1:%d", freePort()), storage, freePort(), freePort(), "log {\n\t\tlevel WARN\n\t}") + s.site(l, names)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}

	updMark, qMarks := logSize(namedLog(l, "a")), queryLogSizes(l)
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = l.CaddyEnv(dir)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var r result
	pending := slices.Clone(names)
	deadline := start.Add(15 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) && !isClosed(exited) {
		pending = slices.DeleteFunc(pending, func(n string) bool {
			if lab.CertFile(storage, n) != "" {
				r.perCert = append(r.perCert, time.Since(start))
				return true
			}
			return false
		})
		time.Sleep(20 * time.Millisecond)
	}
	r.total = time.Since(start)
	r.failures = len(pending)
	r.peakRSS = peakRSS(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if r.failures > 0 {
		log.Printf("%d certificates missing; Caddy's log:\n%s", r.failures, logBuf.String())
	}
	waitClean(l)
	r.updates = countLines(namedLog(l, "a"), updMark, "/key "+l.CaddyKey.Name+": updating zone")
	for f, mark := range qMarks {
		r.queries += countLines(f, mark, "")
	}
	return r
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func namedLog(l *lab.Lab, inst string) string { return filepath.Join(l.Dir, inst, "named.log") }

// queryLogSizes marks the query logs of Unbound and both BIND instances.
func queryLogSizes(l *lab.Lab) map[string]int64 {
	out := map[string]int64{}
	for _, f := range []string{l.UnboundLog, filepath.Join(l.Dir, "a", "queries.log"), filepath.Join(l.Dir, "b", "queries.log")} {
		out[f] = logSize(f)
	}
	return out
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// countLines counts the lines after offset that contain substr; for
// Unbound's log only query lines (not the replies) count.
func countLines(path string, offset int64, substr string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if substr != "" && !strings.Contains(line, substr) {
			continue
		}
		if strings.Contains(line, "unbound[") && !strings.HasSuffix(strings.TrimSpace(line), " IN") {
			continue // a reply line, not a query
		}
		n++
	}
	return n
}

// peakRSS reads the process's high-water resident set size in kB.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// waitClean waits until the alias zone holds no TXT record, so that one
// run's cleanup does not land in the next run's numbers.
func waitClean(l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		txts, err := l.TXTRecords(ctx, l.AuthA, l.AliasZone)
		if err == nil && len(txts) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Printf("warning: TXT records left in %s after 30 s", l.AliasZone)
}

func freePort() int {
	port, err := lab.FreePort()
	if err != nil {
		log.Fatal(err)
	}
	return port
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize makes one table row of a configuration's runs.
func summarize(pebble string, n int, s setup, runs []result, stock time.Duration) (string, time.Duration) {
	var totals, perCert []time.Duration
	updates, queries, failures := 0, 0, 0
	var rss int64
	for _, r := range runs {
		totals = append(totals, r.total)
		perCert = append(perCert, r.perCert...)
		updates += r.updates
		queries += r.queries
		failures += r.failures
		rss = max(rss, r.peakRSS)
	}
	med := median(totals)
	ratio := "1.00"
	if !s.stock && stock > 0 {
		ratio = fmt.Sprintf("%.2f", float64(med)/float64(stock))
	}
	certs := float64(n * len(runs))
	row := fmt.Sprintf("| %s | %d | %s | %d | %.2f s | %.2f–%.2f s | %.2f s | %s | %.1f | %.1f | %.0f MiB | %d |",
		pebble, n, s.name, len(runs), med.Seconds(), slices.Min(totals).Seconds(), slices.Max(totals).Seconds(),
		median(perCert).Seconds(), ratio, float64(updates)/certs, float64(queries)/certs, float64(rss)/1024, failures)
	return row, med
}

// selected reports whether a configuration is among the comma-separated
// parts of names in only (all when only is empty).
func selected(name, only string) bool {
	if only == "" {
		return true
	}
	for _, part := range strings.Split(only, ",") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}

// replaceRow puts row in place of an earlier row of the same Pebble
// setting, N and configuration, or appends it.
func replaceRow(rows []string, row string) []string {
	key := func(r string) string {
		cells := strings.Split(r, "|")
		if len(cells) < 4 {
			return r
		}
		return strings.Join(cells[1:4], "|")
	}
	for i, r := range rows {
		if key(r) == key(row) {
			rows[i] = row
			return rows
		}
	}
	return append(rows, row)
}

// existingRows returns the table rows of an earlier report.
func existingRows(path string) []string {
	data, _ := os.ReadFile(path)
	var rows []string
	for _, line := range strings.Split(withoutClusterSection(string(data)), "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| pebble") {
			rows = append(rows, line)
		}
	}
	return rows
}

func writeReport(path string, rows []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nProduced by `go run ./bench` (see README.md, Benchmarks) on %s.\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, %s, %s.\n\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	b.WriteString(`Every run starts Caddy (built with xcaddy from this tree) with fresh storage
against the lab: BIND 9 (alias zone, RFC 2136 with TSIG), Unbound (the resolver
of Caddy and Pebble) and Pebble, all on loopback. Time is from Caddy's start to
its last certificate in storage. "updates" are the RR changes the alias zone's
server applied, "queries" every query Unbound and both BIND instances received
(Caddy's and Pebble's), both per certificate. "ratio" is the median against
stock Caddy for the same N and Pebble setting. Stock Caddy needs one site
block per name, since dns_challenge_override_domain is one name per policy.

| pebble retryAfter | N | configuration | runs | median | spread | median per cert | ratio | updates/cert | queries/cert | peak RSS | failed |
|---|---|---|---|---|---|---|---|---|---|---|---|
`)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString(clusterSection(path)) // -cluster's section stays
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return fmt.Sprintf("%.0f GiB RAM", float64(kb)/1024/1024)
		}
	}
	return "unknown RAM"
}
