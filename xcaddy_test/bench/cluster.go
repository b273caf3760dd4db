package main

// The scale-out benchmark (issue 12): N delegated names obtained by one
// Caddy and by three, all on the lab's Redis (caddy-storage-redis), each
// run on an empty storage (a key prefix of its own). certmagic limits
// orders to 10 per 10 s per ACME account in each process, so instances
// sharing the names may issue faster; what the CA saw is counted in
// Pebble's log.
//
//	cd xcaddy_test && go run ./bench -cluster 60,100 [-reps 3] [-pebble default,0]
//
// It writes the "Scale-out on Redis" section of -out and leaves the rest
// of the file as it is; the main benchmark keeps that section when it
// rewrites the file (sectionIn, withoutSection).

import (
	"bytes"
	"context"
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

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// clusterHeading starts the section this file writes in BENCHMARKS.md.
const clusterHeading = "## Scale-out on Redis"

// clusterInstances are the cluster sizes compared: one instance, three.
var clusterInstances = []int{1, 3}

// clusterResult is one run of k instances.
type clusterResult struct {
	total    time.Duration // from the instances' start to the last certificate in Redis
	orders   int           // orders Pebble created
	peak10s  int           // most orders Pebble created within any 10 s
	split    []int         // certificates each instance obtained
	failures int           // certificates missing at the deadline
}

// runCluster measures every N of ns with each cluster size, reps times,
// for each Pebble setting, and writes the section into out after every
// row.
func runCluster(bin, ns string, reps int, pebbles, out string) {
	var rows []string
	for _, pebble := range strings.Split(pebbles, ",") {
		l := labWith(pebble)
		for _, nStr := range strings.Split(ns, ",") {
			n, err := strconv.Atoi(nStr)
			if err != nil {
				log.Fatalf("-cluster: %v", err)
			}
			names := delegate(l, n)
			var single time.Duration
			for _, k := range clusterInstances {
				var runs []clusterResult
				for rep := range reps {
					r := clusterRun(l, bin, names, k)
					log.Printf("pebble=%s n=%d %d instance(s) on redis, rep %d: %s to the last certificate, %d orders (at most %d in 10 s), split %v",
						pebble, n, k, rep+1, r.total.Round(time.Millisecond), r.orders, r.peak10s, r.split)
					runs = append(runs, r)
				}
				row, med := clusterRow(pebble, n, k, runs, single)
				if k == 1 {
					single = med
				}
				rows = append(rows, row)
				if err := writeClusterSection(out, rows); err != nil {
					log.Fatal(err)
				}
			}
		}
	}
	log.Printf("wrote the %q section of %s", clusterHeading, out)
}

// clusterRun starts k instances with one Caddyfile on a fresh Redis key
// prefix at once and waits until Redis holds every certificate.
func clusterRun(l *lab.Lab, bin string, names []string, k int) clusterResult {
	dir, err := os.MkdirTemp("", "caddy-dns-alias-bench-cluster-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	prefix := fmt.Sprintf("bench-cluster-%d", time.Now().UnixNano())
	defer deleteRedisPrefix(l, prefix)
	// The same site as the main benchmark's template row, for every
	// instance; the ports come from each one's environment.
	cfg := l.CaddyGlobals("{$CLUSTER_ADMIN}", l.RedisStorage(prefix), "{$CLUSTER_HTTP_PORT}", "{$CLUSTER_HTTPS_PORT}", "") +
		aliasSite("alias _acme-challenge.{domain}.", "")(l, names)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}

	m := startMeter(l)
	type node struct {
		cmd    *exec.Cmd
		log    *bytes.Buffer
		exited chan struct{}
	}
	var nodes []node
	start := time.Now()
	for i := range k {
		home := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(home, 0o700); err != nil {
			log.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
		cmd.Dir = home
		cmd.Env = append(l.CaddyEnv(home), fmt.Sprintf("CLUSTER_ADMIN=127.0.0.1:%d", freePort()),
			fmt.Sprintf("CLUSTER_HTTP_PORT=%d", freePort()), fmt.Sprintf("CLUSTER_HTTPS_PORT=%d", freePort()))
		// Caddy's log needs no lock: Cmd copies its output through one
		// goroutine per buffer, and it is read after Wait.
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		n := node{cmd, &buf, make(chan struct{})}
		go func() { cmd.Wait(); close(n.exited) }()
		nodes = append(nodes, n)
	}
	alive := func() bool {
		return !slices.ContainsFunc(nodes, func(n node) bool { return isClosed(n.exited) })
	}

	var r clusterResult
	pending := slices.Clone(names)
	for deadline := start.Add(15 * time.Minute); len(pending) > 0 && time.Now().Before(deadline) && alive(); time.Sleep(100 * time.Millisecond) {
		have, err := l.RedisKeys(context.Background(), prefix+"/certificates/*.crt")
		if err != nil {
			log.Fatalf("listing certificates in redis: %v", err)
		}
		pending = slices.DeleteFunc(pending, func(n string) bool {
			return slices.ContainsFunc(have, func(k string) bool { return strings.HasSuffix(k, "/"+n+".crt") })
		})
	}
	r.total = time.Since(start)
	r.failures = len(pending)
	for _, n := range nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		<-n.exited
		r.split = append(r.split, bytes.Count(n.log.Bytes(), []byte(`"msg":"certificate obtained successfully"`)))
		if r.failures > 0 {
			log.Printf("%d certificates missing; an instance's log:\n%s", r.failures, n.log.String())
		}
	}
	t := m.stop() // waits until the alias zone is clean
	r.orders, r.peak10s = len(t.orders), t.maxOrders10s()
	return r
}

// deleteRedisPrefix removes a run's keys, so that Redis does not grow
// with every run.
func deleteRedisPrefix(l *lab.Lab, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := l.RedisKeys(ctx, prefix+"/*")
	if err != nil {
		log.Printf("warning: listing redis keys under %s: %v", prefix, err)
		return
	}
	for _, k := range keys {
		if _, err := l.Redis(ctx, "DEL", k); err != nil {
			log.Printf("warning: deleting redis key %s: %v", k, err)
		}
	}
}

// clusterRow makes the section's table row of k instances' runs; single is
// the median of one instance for the same N and Pebble setting (0 for the
// one-instance row itself).
func clusterRow(pebble string, n, k int, runs []clusterResult, single time.Duration) (string, time.Duration) {
	var totals []time.Duration
	orders, peak, failures := 0, 0, 0
	split := make([]int, k)
	for _, r := range runs {
		totals = append(totals, r.total)
		orders += r.orders
		peak = max(peak, r.peak10s)
		failures += r.failures
		// busiest instance first: which process that is differs per run
		for i, c := range slices.Sorted(slices.Values(r.split)) {
			split[len(r.split)-1-i] += c
		}
	}
	med := median(totals)
	ratio := "1.00"
	if single > 0 {
		ratio = fmt.Sprintf("%.2f", float64(med)/float64(single))
	}
	perRun := make([]string, k)
	for i, c := range split {
		perRun[i] = fmt.Sprintf("%.0f", float64(c)/float64(len(runs)))
	}
	// orders per 10 s on average, over the whole run
	mean := float64(orders) / median(totals).Seconds() * 10 / float64(len(runs))
	row := fmt.Sprintf("| %s | %d | %d | %d | %.2f s | %.2f–%.2f s | %s | %.1f | %.1f | %d | %s | %d |",
		pebble, n, k, len(runs), med.Seconds(), slices.Min(totals).Seconds(), slices.Max(totals).Seconds(),
		ratio, float64(orders)/float64(len(runs)), mean, peak, strings.Join(perRun, " + "), failures)
	return row, med
}

// writeClusterSection puts the section with rows into the file at path in
// place of the one there (or at its end), keeping everything else.
func writeClusterSection(path string, rows []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nProduced by `cd xcaddy_test && go run ./bench %s` (see docs/benchmarks.md) on %s.\n\n", clusterHeading, shellQuote(os.Args[1:]), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, %s, %s.\n\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	b.WriteString(`One Caddyfile (the template row's site above, every name in one site block)
run by 1 and by 3 Caddy instances at once, on the lab's Redis
(caddy-storage-redis) with an empty storage each run, the instances started
together. Time is from their start to the last certificate in Redis.
"ratio" is the median against one instance; "orders" what Pebble created per
run, "per 10 s" its mean rate over the run and "peak" the most it created in
any 10 s; "split" the certificates each instance obtained, the busiest
first (mean per run).
certmagic allows 10 orders per 10 s per ACME account in each process, so a
single instance averages at most 10 per 10 s (its peak can be higher: see
the first table's note on orders/10 s); several instances share the names
through the storage's locks, each with its own allowance. certmagic takes a
name's lock before it waits in that limiter, so an instance that reaches
many locks first keeps them while it works through its own 10 per 10 s, and
the others find them taken (and, once released, the certificates in
storage): the split is uneven and the gain varies from run to run.

| pebble retryAfter | N | instances | runs | median | spread | ratio | orders | per 10 s | peak in 10 s | split | failed |
|---|---|---|---|---|---|---|---|---|---|---|---|
`)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	data, _ := os.ReadFile(path)
	rest := withoutSection(string(data), clusterHeading)
	rest = strings.TrimRight(rest, "\n")
	if rest != "" {
		rest += "\n\n"
	}
	return os.WriteFile(path, []byte(rest+b.String()), 0o644)
}

// sectionIn returns the section that heading starts as it stands in the
// file at path (with the blank line before it), or "".
func sectionIn(path, heading string) string {
	data, _ := os.ReadFile(path)
	s := string(data)
	i := strings.Index(s, heading+"\n")
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s[len(heading):], "\n## "); j >= 0 {
		s = s[:len(heading)+j]
	}
	return "\n" + strings.TrimRight(s, "\n") + "\n"
}

// withoutSection is text without the section heading starts (it runs to
// the end of the file or to the next heading of its level).
func withoutSection(text, heading string) string {
	i := strings.Index(text, heading+"\n")
	if i < 0 {
		return text
	}
	rest := text[i+len(heading):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		return text[:i] + rest[j+1:]
	}
	return text[:i]
}

// isClosed reports whether c is closed.
func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
