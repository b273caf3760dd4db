package readme

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestQuotes(t *testing.T) {
	tests := []struct {
		format, quoted string
		want           bool
	}{
		{"%s has no CNAME record", "_acme-challenge.example.com has no CNAME record", true},
		{"%s has no CNAME record", "... has no CNAME record", true},
		{"%s has no CNAME record", "X has no CNAME record", true},
		{"%s has no CNAME record", "_acme-challenge.example.com has no CNAME", true}, // a part of it
		{"%s has no CNAME record", "_acme-challenge.example.com lacks a CNAME record", false},
		// a placeholder stands for a value, never for the code's words
		{"%s: the policy that covers it does not use %s", "the policy that covers X does not use dns.providers.alias", false},
		{"%s: the policy that covers it does not use %s", "the policy that covers it does not use dns.providers.alias", true},
		// a verb stands for one word of prose at most
		{"CAA %s at %s allows only %s", "CAA issue at example.com allows only X", true},
		{"deleting %s (remove it by hand)", "deleting TXT X in alias zone Z (remove it by hand)", false},
		{"deleting TXT %s in alias zone %s (remove it by hand)", "deleting TXT X in alias zone Z ... (remove it by hand)", true},
		{"CNAME loop", "CNAME loop: ...", false}, // the ": ..." comes from a wrapping format: see TestNest
		{"%s: %s", "CNAME loop: ...", false},     // a verb swallows one word at most
		{"the chain ends at %s, outside %v; nothing was written", "the chain ends at X, outside [...]; nothing was written", true},
		{"the chain ends at %s, outside %v; nothing was written", "the chain ends at X, outside [...]; nothing written", false},
		{"100%% sure, %d%%", "100% sure, N%", true},
		{"rules[%d].match: %s", "rules[N].match: ...", true},
		{"max_hops: %v", "rules[N].match: ...", false}, // values only: shows none of the format's text
		{"refusing to write %s record %s: only TXT", "refusing to write <TYPE> record ...", true},
		{"refusing to write TXT %s: only TXT", "refusing to write <TYPE> record ...", false},
	}
	for _, tt := range tests {
		t.Run(tt.quoted, func(t *testing.T) {
			if got := NewFormat(tt.format, "").Quotes(ParseQuote(tt.quoted)); got != tt.want {
				t.Errorf("%q quotes %q: %v, want %v", tt.quoted, tt.format, got, tt.want)
			}
		})
	}
}

func TestNest(t *testing.T) {
	outer := NewFormat("%w: more than %d hops", "a")
	inner := NewFormat("CNAME chain too long", "b")
	if outer.Quotes(ParseQuote("CNAME chain too long: more than N hops")) {
		t.Error("outer alone quotes the whole message: the verb swallowed prose")
	}
	if !outer.Nest(0, inner).Quotes(ParseQuote("CNAME chain too long: more than N hops")) {
		t.Error("nested format does not quote the message")
	}
	if got := outer.Verbs(); got != 2 {
		t.Errorf("Verbs = %d, want 2", got)
	}
	if got := NewFormat("ab %s abcd", "").Literals(); !reflect.DeepEqual(got, []string{"ab ", " abcd"}) {
		t.Errorf("Literals = %q", got)
	}
}

func TestParse(t *testing.T) {
	md := "# T\n\n## A\n\ntext\n\n```sh\nx \\\n  --y\n# c\nz\n```\n\n### A.1\n\n" +
		"| m | w |\n|---|---|\n| `a | b` (`c`) | d |\n| e | f |\n\n  ```json\n  {}\n  ```\n\n## B\n\n```caddyfile\nq\n```\n"
	d, err := Parse([]byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Blocks) != 3 {
		t.Fatalf("%d blocks: %+v", len(d.Blocks), d.Blocks)
	}
	if b := d.Blocks[1]; b.Lang != "json" || b.Text != "{}\n" || b.Heading != "### A.1" || b.Section != "## A" {
		t.Errorf("indented block: %+v", b)
	}
	if got := Commands(d.Blocks[0]); !reflect.DeepEqual(got, []string{"x --y", "z"}) {
		t.Errorf("Commands = %q", got)
	}
	if got := d.In("## A"); len(got) != 2 {
		t.Errorf("In(## A) = %+v", got)
	}
	if got := d.In("### A.1"); len(got) != 1 || got[0].Lang != "json" {
		t.Errorf("In(### A.1) = %+v", got)
	}
	if got := d.In("## B"); len(got) != 1 || got[0].Lang != "caddyfile" {
		t.Errorf("In(## B) = %+v", got)
	}
	if j, ok := d.JSONAfter(d.Blocks[0]); ok {
		t.Errorf("JSONAfter(sh block) = %+v, under another heading", j)
	}
	md2 := "## X\n\n```caddyfile\na\n```\n\ntext\n\n```json\n{}\n```\n\n```caddyfile\nb\n```\n"
	d2, err := Parse([]byte(md2))
	if err != nil {
		t.Fatal(err)
	}
	if j, ok := d2.JSONAfter(d2.Blocks[0]); !ok || j.Text != "{}\n" {
		t.Errorf("JSONAfter = %+v, %v", j, ok)
	}
	if _, ok := d2.JSONAfter(d2.Blocks[2]); ok {
		t.Error("JSONAfter of the last block found one")
	}
	want := [][]string{{"`a | b` (`c`)", "d"}, {"e", "f"}}
	if got := d.TableRows("### A.1"); !reflect.DeepEqual(got, want) {
		t.Errorf("TableRows = %q, want %q", got, want)
	}
	if got := CodeSpans("`a | b` (`c`)"); !reflect.DeepEqual(got, []string{"a | b", "c"}) {
		t.Errorf("CodeSpans = %q", got)
	}
	if _, err := Parse([]byte("```sh\nx\n")); err == nil {
		t.Error("an unclosed block parsed")
	}
}

func TestSourceFormats(t *testing.T) {
	dir := t.TempDir()
	src := "package p\n\nimport \"fmt\"\n\nfunc f(z string) error {\n\t_ = \"served by \" + z + \" (lame)\"\n\tz += \"; fix: \" + z\n\treturn fmt.Errorf(\"%s: no\", z)\n}\n"
	for _, f := range []string{"p.go", "skip/q.go", "p_test.go"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := SourceFormats(dir, func(d string) bool { return d != "skip" })
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, f := range fs {
		texts = append(texts, f.Text)
	}
	want := []string{"fmt", "served by %v (lame)", "%v; fix: %v", "%s: no"}
	if !reflect.DeepEqual(texts, want) {
		t.Errorf("formats = %q, want %q", texts, want)
	}
}

func TestLinksAndAnchors(t *testing.T) {
	d, err := Parse([]byte("# The `dns_alias` app\n\nSee [a](docs/x.md#y) and `[b](no)`.\n```\n[c](no)\n```\n## Fast, by default\n## Fast, by default\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Links(); !reflect.DeepEqual(got, []Link{{Target: "docs/x.md#y", Line: 3}}) {
		t.Errorf("Links = %+v", got)
	}
	want := map[string]bool{"the-dns_alias-app": true, "fast-by-default": true, "fast-by-default-1": true}
	if got := d.Anchors(); !reflect.DeepEqual(got, want) {
		t.Errorf("Anchors = %v, want %v", got, want)
	}
}
