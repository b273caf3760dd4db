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
	if !strings.Contains(string(data), "    go run ./bench -n 1 -setups 'alias follow'\n") {
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
