package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// report is BENCHMARKS.md: a header (machine, date, command) and one
// section per table that has rows.
type report struct {
	path   string
	args   []string
	tables []*table
	rows   map[string][]string // by table id
}

func newReport(path string, args []string, tables []*table) *report {
	return &report{path: path, args: args, tables: tables, rows: map[string][]string{}}
}

// load keeps the rows of an earlier report, section by section (-append).
func (r *report) load() {
	data, _ := os.ReadFile(r.path)
	var cur *table
	for _, line := range strings.Split(string(data), "\n") {
		if title, ok := strings.CutPrefix(line, "## "); ok {
			cur = nil
			for _, t := range r.tables {
				if t.title == title {
					cur = t
				}
			}
			continue
		}
		if cur != nil && strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, strings.SplitN(cur.header, "\n", 2)[0]) {
			r.rows[cur.id] = append(r.rows[cur.id], line)
		}
	}
}

// put puts row in place of an earlier row of t with the same key cells, or
// appends it.
func (r *report) put(t *table, row string) {
	key := func(s string) string {
		cells := strings.Split(s, "|")
		if len(cells) <= t.keyCells {
			return s
		}
		return strings.Join(cells[1:t.keyCells+1], "|")
	}
	rows := r.rows[t.id]
	for i, old := range rows {
		if key(old) == key(row) {
			rows[i] = row
			return
		}
	}
	r.rows[t.id] = append(rows, row)
}

func (r *report) write() error {
	var b strings.Builder
	now := time.Now().UTC()
	fmt.Fprintf(&b, "# Benchmarks\n\nProduced on %s at %s UTC by (as root, see docs/benchmarks.md):\n\n", now.Format("2006-01-02"), now.Format("15:04"))
	fmt.Fprintf(&b, "    cd xcaddy_test && go run ./bench %s\n\n", shellQuote(r.args))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, %s, %s.\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	b.WriteString(`
Every run is on the lab: BIND 9 (the production zones and the alias zone,
RFC 2136 with TSIG), Unbound (the resolver of every client and of Pebble)
and Pebble, all on loopback (lab/README.md). Caddy is built with xcaddy from
this tree (lab/build-caddy.sh), lego v5.6.0 by lab/build-lego.sh. "ratio" is
a median against stock Caddy's for the same names and Pebble setting, in the
same run. "updates" are the RR changes the alias zone's server applied,
"queries" every query Unbound and both BIND instances received (the
client's and Pebble's), "orders" the orders Pebble's log shows ("Added
order"). "retryAfter default" is Pebble's sample config (authz 3 s, order
5 s), which the clients honour; 0 removes it.
`)
	for _, t := range r.tables {
		rows := r.rows[t.id]
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s\n%s\n", t.title, strings.TrimSpace(t.intro)+"\n", t.header)
		for _, row := range rows {
			b.WriteString(row + "\n")
		}
	}
	r.writeTargets(&b)
	// -cluster's, -soak's and -attack's sections stay.
	b.WriteString(sectionIn(r.path, clusterHeading))
	b.WriteString(sectionIn(r.path, soakHeading))
	b.WriteString(sectionIn(r.path, attackHeading))
	return os.WriteFile(r.path, []byte(b.String()), 0o644)
}

// shellQuote writes args as a shell would need them.
func shellQuote(args []string) string {
	var out []string
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?&;|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
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
