// Command bench measures, in one run on the lab (BIND, Unbound, Pebble on
// loopback), time to certificate and DNS traffic of Caddy with this plugin
// against stock Caddy (dns_challenge_override_domain) and against lego, and
// on-demand TLS latency, and writes BENCHMARKS.md.
//
//	cd xcaddy_test && go run ./bench [-n 1,20,100] [-reps 3] [-large-reps 1] [-ondemand-reps 5] [-pebble default,0]
//	               [-tables issue,providers,lego,ondemand,flood] [-setups PART,...] [-out BENCHMARKS.md] [-append]
//	cd xcaddy_test && go run ./bench -cluster 60,100 ...   (cluster.go)
//	cd xcaddy_test && go run ./bench -soak 2000,10000      (soak.go)
//	cd xcaddy_test && go run ./bench -attack               (attack.go, attack_ondemand.go, attack_endpoint.go)
//
// It needs root and runs inside the lab's network namespace, as the tests
// do: build both binaries outside (the builds need the module proxy), then
//
//	lab/lab.sh up
//	cd xcaddy_test && bash ../lab/lab.sh exec env CADDY_BIN=... LEGO_BIN=... go run ./bench
//
// CADDY_BIN skips the xcaddy build (lab/build-caddy.sh --lab),
// LEGO_BIN the lego build (lab/build-lego.sh).
//
// The tables are in tables (issue.go, lego.go, ondemand.go: the first
// handshake and the flood); another table is one more entry there (its run
// is called once per Pebble setting with the lab up), and -tables picks
// among them. measure.go holds what they share: the meter of DNS updates,
// queries and orders, and starting Caddy; report.go writes BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// table is one section of BENCHMARKS.md.
type table struct {
	id     string // its name for -tables
	title  string // the section heading
	intro  string // what the rows measure, above the table
	header string // the table's header row
	// keyCells is how many leading cells identify a row: a row measured
	// again replaces the earlier one (-append).
	keyCells int
	// run measures the table's rows under one Pebble setting and adds them
	// with b.add(t, row).
	run func(b *bench, t *table, pebble string)
}

// tables in the order BENCHMARKS.md shows them.
var tables = []*table{issueTable, providersTable, legoTable, onDemandTable, floodTable}

// bench is what every table's run gets: the lab under the current Pebble
// setting, the binaries, the flags.
type bench struct {
	l            *lab.Lab
	caddy        string
	lego         string // when the lego table runs
	ns           []int
	reps         int
	largeReps    int // for the issue table's N of largeN or more
	onDemandReps int
	pebbles      []string
	only         string
	rep          *report
	// runID makes the names of one harness run unique, so that nothing a
	// resolver or Pebble remembers from an earlier run applies; seq
	// numbers the names within it.
	runID string
	seq   int
	// customers are the names the on-demand tables delegated (read by
	// the ask endpoint's goroutine).
	mu        sync.Mutex
	customers map[string]bool
}

func main() {
	ns := flag.String("n", "1,20,100", "numbers of delegated names (issue table)")
	reps := flag.Int("reps", 3, "repetitions of each configuration")
	largeReps := flag.Int("large-reps", 1, fmt.Sprintf("repetitions of the issue table's configurations for N of %d or more (about 1.5 min each at 100)", largeN))
	odReps := flag.Int("ondemand-reps", 5, "fresh names per configuration in the on-demand table")
	pebbles := flag.String("pebble", "default,0", "Pebble retryAfter settings: default (3 s / 5 s) or seconds")
	out := flag.String("out", "", "where to write the tables (default: BENCHMARKS.md at the repository's root)")
	appendRows := flag.Bool("append", false, "keep the rows already in -out (but those measured again) and add these")
	only := flag.String("setups", "", "comma-separated parts of configuration names to run (default: all; stock Caddy always runs, for the ratios)")
	which := flag.String("tables", "", "comma-separated tables to run: "+tableIDs()+" (default: all)")
	clusterNs := flag.String("cluster", "", "instead: the scale-out on Redis (cluster.go) for these numbers of names, e.g. 60,100")
	soakNs := flag.String("soak", "", "instead: the soak tables (soak.go) for these flood and storage sizes, e.g. 2000,10000")
	attack := flag.Bool("attack", false, "instead: what legitimate clients get with and without attacks (attack.go, attack_ondemand.go, attack_endpoint.go)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *out == "" {
		// The benchmark runs from xcaddy_test, its module; the report
		// belongs to the repository.
		root, err := lab.RepoRoot()
		if err != nil {
			log.Fatal(err)
		}
		*out = filepath.Join(root, "BENCHMARKS.md")
	}

	b := &bench{reps: *reps, largeReps: *largeReps, onDemandReps: *odReps, pebbles: strings.Split(*pebbles, ","), only: *only,
		runID: strconv.FormatInt(time.Now().Unix()%(36*36*36*36), 36)}
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			log.Fatalf("-n: %v", err)
		}
		b.ns = append(b.ns, n)
	}
	var run []*table
	for _, t := range tables {
		if *which == "" || slices.Contains(strings.Split(*which, ","), t.id) {
			run = append(run, t)
		}
	}
	if len(run) == 0 {
		log.Fatalf("-tables %q: none of %s", *which, tableIDs())
	}

	if err := lab.Hold(); err != nil {
		log.Fatal(err)
	}
	// Removed at the end; log.Fatal leaves them, as it leaves the lab up.
	var cleanups []func()
	defer func() {
		for _, c := range cleanups {
			c()
		}
	}()
	bin, c := caddyBinary()
	b.caddy, cleanups = bin, append(cleanups, c)
	if *clusterNs != "" {
		runCluster(bin, *clusterNs, *reps, *pebbles, *out)
		return
	}
	if *attack {
		runAttacks(bin, *out)
		return
	}
	if *soakNs != "" {
		var sizes []int
		for _, s := range strings.Split(*soakNs, ",") {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				log.Fatalf("-soak: %q is no size", s)
			}
			sizes = append(sizes, n)
		}
		runSoak(bin, sizes, *out)
		return
	}
	// Built before anything is measured: a build that fails (inside a
	// network namespace without LEGO_BIN) should not end an hour's run.
	if slices.Contains(run, legoTable) {
		bin, c := legoBinary()
		b.lego, cleanups = bin, append(cleanups, c)
	}

	b.rep = newReport(*out, os.Args[1:], tables)
	if *appendRows {
		b.rep.load()
	}
	for _, pebble := range b.pebbles {
		b.l = labWith(pebble)
		for _, t := range run {
			t.run(b, t, pebble)
		}
	}
	log.Printf("wrote %s", *out)
}

// labWith brings the lab up (again) with Pebble's retryAfter set to pebble.
func labWith(pebble string) *lab.Lab {
	os.Setenv("PEBBLE_RETRY_AFTER", pebble)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx)
	if err == nil {
		err = l.Inside()
	}
	if err != nil {
		log.Fatal(err)
	}
	return l
}

func tableIDs() string {
	var ids []string
	for _, t := range tables {
		ids = append(ids, t.id)
	}
	return strings.Join(ids, ",")
}

// add puts a row into t's section and writes the report at once, so that a
// long run that is stopped keeps what it measured.
func (b *bench) add(t *table, row string) {
	b.rep.put(t, row)
	if err := b.rep.write(); err != nil {
		log.Fatal(err)
	}
}

// selected reports whether a configuration is among the comma-separated
// parts of names in -setups (all when it is empty).
func (b *bench) selected(name string) bool {
	if b.only == "" {
		return true
	}
	for _, part := range strings.Split(b.only, ",") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}

// caddyBinary builds Caddy with xcaddy (or takes $CADDY_BIN).
func caddyBinary() (string, func()) {
	return binary("CADDY_BIN", "caddy", "build-caddy.sh", "--lab")
}

// legoBinary builds lego (or takes $LEGO_BIN).
func legoBinary() (string, func()) {
	return binary("LEGO_BIN", "lego", "build-lego.sh")
}

// binary returns $env, or builds name with lab/<script> (and its flags)
// into a temporary directory that the returned function removes.
func binary(env, name, script string, flags ...string) (string, func()) {
	if bin := os.Getenv(env); bin != "" {
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
	bin := filepath.Join(dir, name)
	log.Printf("building %s with lab/%s (set %s to skip)", name, script, env)
	cmd := exec.Command("bash", append(append([]string{filepath.Join(root, "lab", script)}, flags...), bin)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("building %s: %v", name, err)
	}
	return bin, func() { os.RemoveAll(dir) }
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

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// spread is "min–max s" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f–%.2f s", slices.Min(ds).Seconds(), slices.Max(ds).Seconds())
}

// ratio is a against stock, or "1.00" for stock itself.
func ratio(a, stock time.Duration, isStock bool) string {
	if isStock {
		return "1.00"
	}
	if stock <= 0 || a <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(stock))
}
