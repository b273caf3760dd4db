package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterSection: -cluster writes its section in place of the old one
// (or at the end), keeping the rest of the file; the main benchmark keeps
// the section when it rewrites the file, and reads none of its rows as its
// own.
func TestClusterSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "BENCHMARKS.md")
	main := "# Benchmarks\n\n| pebble retryAfter | N |\n|---|---|\n| 0 | 1 | main row |\n"
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeClusterSection(path, []string{"| 0 | 60 | 1 | old |"}); err != nil {
		t.Fatal(err)
	}
	if err := writeClusterSection(path, []string{"| 0 | 60 | 3 | new |"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	got := string(data)
	if !strings.HasPrefix(got, main+"\n"+clusterHeading+"\n") || strings.Count(got, clusterHeading) != 1 || strings.Contains(got, "old") || !strings.HasSuffix(got, "| 0 | 60 | 3 | new |\n") {
		t.Fatalf("after two writes:\n%s", got)
	}
	if rows := existingRows(path); len(rows) != 1 || rows[0] != "| 0 | 1 | main row |" {
		t.Errorf("existingRows = %q, want the main table's row only", rows)
	}
	section := clusterSection(path)
	if err := writeReport(path, []string{"| 0 | 20 | rewritten |"}); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(data), section) || !strings.Contains(string(data), "rewritten") {
		t.Errorf("the main report dropped the section:\n%s", data)
	}
	// a section followed by another
	text := "a\n\n" + clusterHeading + "\n\nx\n\n## Other\n\ny\n"
	if got := withoutClusterSection(text); got != "a\n\n## Other\n\ny\n" {
		t.Errorf("withoutClusterSection = %q", got)
	}
}

func TestPebbleOrders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pebble.log")
	var b strings.Builder
	b.WriteString("Pebble 2026/12/01 12:00:00 Added order \"before\" to the db\n")
	mark := int64(b.Len())
	for _, ts := range []string{"12:00:01", "12:00:01", "12:00:05", "12:00:10", "12:00:11", "12:00:30"} {
		b.WriteString("Pebble 2026/12/01 " + ts + " POST /order-plz -> calling handler()\n")
		b.WriteString("Pebble 2026/12/01 " + ts + " Added order \"x\" to the db\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// 12:00:01 .. 12:00:10 holds four; 12:00:05 .. 12:00:11 three
	if total, peak := pebbleOrders(path, mark); total != 6 || peak != 4 {
		t.Errorf("pebbleOrders = %d, %d; want 6 orders, at most 4 in 10 s", total, peak)
	}
}
