package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMaxOrders10s(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) traffic {
		var tr traffic
		for _, m := range ms {
			tr.orders = append(tr.orders, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return tr
	}
	for _, c := range []struct {
		tr   traffic
		want int
	}{
		{at(), 0},
		{at(0), 1},
		// 10 s apart exactly: two windows.
		{at(0, 10000), 1},
		{at(0, 9999), 2},
		// certmagic's 10 in 10 s, then the 11th: the densest window
		// holds 10; an 11th within 10 s of the first counts 11.
		{at(0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 10100), 10},
		{at(500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 10400), 11},
	} {
		if got := c.tr.maxOrders10s(); got != c.want {
			t.Errorf("%v: got %d, want %d", c.tr.orders, got, c.want)
		}
	}
}

func TestPercentileMedian(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got := percentile(ds, 99); got != 99*time.Millisecond {
		t.Errorf("p99 = %s", got)
	}
	if got := percentile(ds, 100); got != 100*time.Millisecond {
		t.Errorf("max = %s", got)
	}
	if got := median(ds); got != 50500*time.Microsecond {
		t.Errorf("median = %s", got)
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %s", got)
	}
}

// TestReportAppend: a report written and loaded again keeps each table's
// rows under its own heading, and a row measured again replaces its
// namesake by its key cells only.
func TestReportAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	a := &table{id: "a", title: "Table A", header: "| x | y | v |\n|---|---|---|", keyCells: 2}
	b := &table{id: "b", title: "Table B", header: "| x | v |\n|---|---|", keyCells: 1}
	r := newReport(path, []string{"-n", "1", "-setups", "alias follow"}, []*table{a, b})
	r.put(a, "| 0 | one | 1 s |")
	r.put(a, "| 0 | two | 2 s |")
	r.put(b, "| one | 3 s |")
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "    cd xcaddy_test && go run ./bench -n 1 -setups 'alias follow'\n") {
		t.Errorf("the command is not in the header:\n%s", data)
	}

	r2 := newReport(path, nil, []*table{a, b})
	r2.load()
	r2.put(a, "| 0 | one | 9 s |")
	want := map[string][]string{
		"a": {"| 0 | one | 9 s |", "| 0 | two | 2 s |"},
		"b": {"| one | 3 s |"},
	}
	for id, rows := range want {
		if strings.Join(r2.rows[id], "\n") != strings.Join(rows, "\n") {
			t.Errorf("table %s: rows %q, want %q", id, r2.rows[id], rows)
		}
	}
}

// TestTargets: the targets section judges the measured rows against their
// limits (lego's own ratio for the lego target) and says why one is missed.
func TestTargets(t *testing.T) {
	row := func(tb *table, cells map[string]string) string {
		var out []string
		for _, name := range splitRow(strings.SplitN(tb.header, "\n", 2)[0]) {
			out = append(out, cells[name])
		}
		return "| " + strings.Join(out, " | ") + " |"
	}
	r := newReport(filepath.Join(t.TempDir(), "B.md"), nil, tables)
	r.put(issueTable, row(issueTable, map[string]string{"pebble retryAfter": "0", "N": "1", "configuration": "alias template (default config)", "ratio": "0.23"}))
	r.put(issueTable, row(issueTable, map[string]string{"pebble retryAfter": "0", "N": "1", "configuration": "alias template, certmagic's check kept (propagation_timeout 2m)", "ratio": "1.01"}))
	r.put(issueTable, row(issueTable, map[string]string{"pebble retryAfter": "0", "N": "20", "configuration": "alias template (default config)", "ratio": "0.93"}))
	r.put(legoTable, row(legoTable, map[string]string{"pebble retryAfter": "0", "names": "1", "client": "alias template (default config)", "ratio": "0.23"}))
	r.put(legoTable, row(legoTable, map[string]string{"pebble retryAfter": "0", "names": "1", "client": "lego v5.6.0", "ratio": "2.59"}))
	var b strings.Builder
	r.writeTargets(&b)
	got := b.String()
	for _, want := range []string{
		"| N = 1, default config, Pebble retryAfter 0: ratio at most 0.3 | 0 | alias template (default config) | 0.23 | met |",
		"| N = 20, default config: ratio at most 0.9 | 0 | alias template (default config) | 0.93 | missed: certmagic allows itself 10 orders",
		"| N = 1: the plugin faster than lego (ratio below lego's) | 0 | alias template (default config) | 0.23 | met |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "check kept") {
		t.Errorf("a row that is not the default config was judged:\n%s", got)
	}
}
