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
	r := newReport(path, nil, tables)
	r.load()
	if len(r.rows) != 0 {
		t.Errorf("the main report read rows of the cluster section as its own: %q", r.rows)
	}
	section := sectionIn(path, clusterHeading)
	r.put(issueTable, "| 0 | 20 | rewritten |")
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(data), section) || !strings.Contains(string(data), "rewritten") {
		t.Errorf("the main report dropped the section:\n%s", data)
	}
	// a section followed by another
	text := "a\n\n" + clusterHeading + "\n\nx\n\n## Other\n\ny\n"
	if got := withoutSection(text, clusterHeading); got != "a\n\n## Other\n\ny\n" {
		t.Errorf("withoutSection = %q", got)
	}
}
