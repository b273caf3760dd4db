package alias

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/acme-alias/caddy-dns-alias/internal/readme"
)

// TestReadmeTroubleshooting: every message that the Troubleshooting table
// (docs/troubleshooting.md) quotes is one the program prints. A row's message, with its "..."
// gaps, placeholders (X, N, <record> ...) and example values, must be a
// part of one message of the program's sources (the root package, solver/,
// providers/): a format string or string literal, or one wrapped into
// another's %w, as errors are. The check reads the sources rather than
// running a scenario per row because several rows (drift, lame servers,
// kill -9) need the lab to be produced, and what goes wrong is the wording:
// the scenarios' own tests check the codes and the behaviour.
func TestReadmeTroubleshooting(t *testing.T) {
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	rows := doc.TableRows("# Troubleshooting")
	if len(rows) < 20 {
		t.Fatalf("the Troubleshooting table has %d rows", len(rows))
	}
	formats, err := readme.SourceFormats(".", func(dir string) bool {
		top, _, _ := strings.Cut(dir, "/")
		return top != "internal" && top != "xcaddy_test"
	})
	if err != nil {
		t.Fatal(err)
	}
	findingCode := regexp.MustCompile(`^[a-z_]+$`)
	// The rows are matched in parallel: matching a quote against every
	// format (and every nesting of two) is the slowest part of the
	// hermetic suite under -race.
	for i, row := range rows {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			var quoted []string
			for _, span := range readme.CodeSpans(row[0]) {
				if !findingCode.MatchString(span) {
					quoted = append(quoted, span)
				}
			}
			if len(quoted) == 0 {
				t.Errorf("Troubleshooting row %q quotes no message", row[0])
			}
			for _, q := range quoted {
				if f, ok := quotingFormat(formats, q); ok {
					t.Logf("%q: %s", q, f.Pos)
					continue
				}
				t.Errorf("the Troubleshooting table quotes %q, which no message of the code prints (word for word, as far as it quotes)", q)
			}
		})
	}
}

// quotingFormat returns the message of the code that q quotes: one format,
// or a format with another one in one of its verbs.
func quotingFormat(formats []readme.Format, q string) (readme.Format, bool) {
	quote := readme.ParseQuote(q)
	for _, f := range formats {
		if f.Quotes(quote) {
			return f, true
		}
	}
	// shows reports whether q shows one of f's literal runs of n or more
	// characters (blanks aside).
	shows := func(f readme.Format, n int) bool {
		for _, lit := range f.Literals() {
			if len(strings.TrimSpace(lit)) >= n && strings.Contains(q, lit) {
				return true
			}
		}
		return false
	}
	var inners []readme.Format
	for _, f := range formats {
		if shows(f, 6) {
			inners = append(inners, f)
		}
	}
	for _, outer := range formats {
		if outer.Verbs() == 0 || !shows(outer, 1) {
			continue
		}
		for k := range outer.Verbs() {
			for _, inner := range inners {
				if n := outer.Nest(k, inner); n.Quotes(quote) {
					return n, true
				}
			}
		}
	}
	return readme.Format{}, false
}

// TestReadmeVersions: the versions README states (supported versions, the
// build commands) are the ones go.mod and lab/env.sh pin.
func TestReadmeVersions(t *testing.T) {
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	envsh, err := os.ReadFile("lab/env.sh")
	if err != nil {
		t.Fatal(err)
	}
	find := func(re, text, what string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s (%s)", what, re)
		}
		return m[1]
	}
	goVersion := find(`(?m)^go (\d+\.\d+\.\d+)$`, string(gomod), "go line in go.mod")
	caddyVersion := find(`(?m)^\s+github\.com/caddyserver/caddy/v2 (v\S+)$`, string(gomod), "Caddy in go.mod")
	rfc2136Version := find(`(?m)^RFC2136_VERSION=(v\S+)$`, string(envsh), "RFC2136_VERSION in lab/env.sh")
	xcaddyVersion := find(`(?m)^XCADDY_VERSION=(v\S+)$`, string(envsh), "XCADDY_VERSION in lab/env.sh")
	pebbleVersion := find(`(?m)^PEBBLE_VERSION=(v\S+)$`, string(envsh), "PEBBLE_VERSION in lab/env.sh")
	caddyMinor := caddyVersion[:strings.LastIndex(caddyVersion, ".")]

	var rows strings.Builder
	for _, r := range doc.TableRows("## Supported versions") {
		rows.WriteString(strings.Join(r, " | ") + "\n")
	}
	var build strings.Builder
	for _, b := range doc.In("## Building Caddy with the plugin") {
		build.WriteString(b.Text)
	}
	for _, want := range []struct{ where, text, want string }{
		{"Supported versions", rows.String(), "Go | " + goVersion + " or newer"},
		{"Supported versions", rows.String(), "Caddy | " + caddyMinor + ".x (built and tested: " + caddyVersion + ")"},
		{"Supported versions", rows.String(), "xcaddy | " + xcaddyVersion},
		{"Supported versions", rows.String(), "Pebble " + pebbleVersion},
		{"the build commands", build.String(), "xcaddy build " + caddyVersion + " "},
		{"the build commands", build.String(), "github.com/caddy-dns/rfc2136@" + rfc2136Version},
	} {
		if !strings.Contains(want.text, want.want) {
			t.Errorf("README's %s do not say %q (go.mod, lab/env.sh):\n%s", want.where, want.want, want.text)
		}
	}
}

// TestDocsLinks: every relative link of README.md and docs/ leads to a file
// of the repository and, with a #fragment, to a heading of it; and every
// document of docs/ is linked from README.md, so that none is orphaned by a
// move.
func TestDocsLinks(t *testing.T) {
	docs, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, d := range docs {
		for _, l := range d.Links() {
			if strings.Contains(l.Target, "://") || strings.HasPrefix(l.Target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(l.Target, "#")
			target := d.File
			if file != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(d.File), file))
			}
			if d.File == "README.md" {
				linked[target] = true
			}
			if _, err := os.Stat(filepath.Join(readme.Root(), target)); err != nil {
				t.Errorf("%s:%d links to %s, which does not exist", d.File, l.Line, l.Target)
				continue
			}
			if anchor == "" {
				continue
			}
			to := docs.Doc(target)
			if to == nil {
				t.Errorf("%s:%d links to #%s in %s, which is no document of the set", d.File, l.Line, anchor, target)
			} else if !to.Anchors()[anchor] {
				t.Errorf("%s:%d links to %s, but %s has no heading #%s", d.File, l.Line, l.Target, target, anchor)
			}
		}
	}
	for _, d := range docs[1:] {
		if !linked[d.File] {
			t.Errorf("README.md does not link to %s", d.File)
		}
	}
}

// TestDocsTablesOnce: no table row of README.md and docs/ appears in two
// documents. A fact has one place (the mapping table is README's; the
// configuration reference links to it), so that a change is made once
// and no copy is left to drift.
func TestDocsTablesOnce(t *testing.T) {
	docs, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]string{} // row -> the document it appears in first
	for _, d := range docs {
		for _, line := range d.Lines {
			row := strings.TrimSpace(line)
			if !strings.HasPrefix(row, "|") || strings.Trim(row, "|-: ") == "" {
				continue
			}
			if in, ok := first[row]; !ok {
				first[row] = d.File
			} else if in != d.File {
				t.Errorf("%s and %s both hold the table row %s: keep it in one and link to it", in, d.File, row)
			}
		}
	}
}

// TestDocsJSON: every ```json block of README.md and docs/ is JSON, those
// no Caddyfile stands before (the JSON reference, an IAM policy, API
// answers) included.
func TestDocsJSON(t *testing.T) {
	docs, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range docs.Blocks() {
		if b.Lang == "json" && !json.Valid([]byte(b.Text)) {
			t.Errorf("%s is no JSON:\n%s", b, b.Text)
		}
	}
}
