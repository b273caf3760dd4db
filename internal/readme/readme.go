// Package readme reads the project's documentation, README.md and docs/*.md,
// the way the tests check it against the program: its fenced code blocks,
// with the heading each stands under, the rows of its tables and its links.
// It is imported by tests only.
package readme

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unicode"
)

// Block is one fenced code block.
type Block struct {
	Lang    string // the word after the opening fence: "caddyfile", "json", "sh", "" ...
	Text    string // the lines between the fences, each ending in "\n"
	File    string // the document, relative to the repository: "README.md", "docs/clusters.md"
	Line    int    // the line of the opening fence, from 1
	Heading string // the closest heading above it, e.g. "#### Static alias with RFC 2136 ..."
	// Section is the closest "## " heading above it.
	Section string
}

func (b Block) String() string {
	return fmt.Sprintf("%s:%d (%s, ```%s)", b.File, b.Line, b.Heading, b.Lang)
}

// Doc is one Markdown document, parsed.
type Doc struct {
	Path   string // as read
	File   string // relative to the repository (Block.File)
	Lines  []string
	Blocks []Block
}

// Root returns the repository this package is part of.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Set is the project's documentation: README.md first, then docs/*.md in
// name order. What README.md once held alone now lies in either, so the
// tests look for a heading or a table in all of them.
type Set []*Doc

// Load reads and parses README.md and docs/*.md of the repository.
func Load() (Set, error) {
	root := Root()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, fmt.Errorf("readme: %w", err)
	}
	var set Set
	for _, path := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		d, err := LoadFile(path)
		if err != nil {
			return nil, err
		}
		if d.File, err = filepath.Rel(root, path); err != nil {
			return nil, fmt.Errorf("readme: %w", err)
		}
		for i := range d.Blocks {
			d.Blocks[i].File = d.File
		}
		set = append(set, d)
	}
	return set, nil
}

// Doc returns the document of the set at file (relative to the
// repository), or nil.
func (s Set) Doc(file string) *Doc {
	for _, d := range s {
		if d.File == file {
			return d
		}
	}
	return nil
}

// Blocks returns the fenced blocks of every document.
func (s Set) Blocks() []Block {
	var out []Block
	for _, d := range s {
		out = append(out, d.Blocks...)
	}
	return out
}

// In returns the blocks under heading (see Doc.In) in every document.
func (s Set) In(heading string) []Block {
	var out []Block
	for _, d := range s {
		out = append(out, d.In(heading)...)
	}
	return out
}

// TableRows returns the rows of the first table under heading in the
// first document that has one.
func (s Set) TableRows(heading string) [][]string {
	for _, d := range s {
		if rows := d.TableRows(heading); len(rows) > 0 {
			return rows
		}
	}
	return nil
}

// JSONAfter is Doc.JSONAfter in b's document.
func (s Set) JSONAfter(b Block) (Block, bool) {
	if d := s.Doc(b.File); d != nil {
		return d.JSONAfter(b)
	}
	return Block{}, false
}

// LoadFile reads and parses a Markdown file.
func LoadFile(path string) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("readme: %w", err)
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("readme: %s: %w", path, err)
	}
	d.Path, d.File = path, filepath.Base(path)
	for i := range d.Blocks {
		d.Blocks[i].File = d.File
	}
	return d, nil
}

// Parse parses Markdown text. Fences are lines that start with ``` after
// any indentation (blocks in list items are indented); an indented block's
// lines lose that indentation.
func Parse(data []byte) (*Doc, error) {
	d := &Doc{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var heading, section string
	var cur *Block
	var indent string
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		d.Lines = append(d.Lines, line)
		trimmed := strings.TrimLeft(line, " \t")
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") && strings.TrimSpace(trimmed) == "```" {
				d.Blocks = append(d.Blocks, *cur)
				cur = nil
				continue
			}
			cur.Text += strings.TrimPrefix(line, indent) + "\n"
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			indent = line[:len(line)-len(trimmed)]
			cur = &Block{Lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), Line: n, Heading: heading, Section: section}
			continue
		}
		if strings.HasPrefix(line, "#") {
			heading = line
			if strings.HasPrefix(line, "## ") {
				section = line
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: the ```%s block is not closed", cur.Line, cur.Lang)
	}
	return d, nil
}

// In returns the blocks under the heading that starts with heading (any
// level), down to the next heading of the same or a higher level.
func (d *Doc) In(heading string) []Block {
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	var out []Block
	for _, b := range d.Blocks {
		if d.under(b.Line, heading, level) {
			out = append(out, b)
		}
	}
	return out
}

// under reports whether line n lies under the first heading that starts
// with heading, before the next heading of level or higher.
func (d *Doc) under(n int, heading string, level int) bool {
	in := false
	fence := false
	for i, line := range d.Lines {
		if i+1 >= n {
			return in
		}
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), "```") {
			fence = !fence
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		l := len(line) - len(strings.TrimLeft(line, "#"))
		switch {
		case strings.HasPrefix(line, heading) && l == level:
			in = true
		case l <= level:
			in = false
		}
	}
	return in
}

// JSONAfter returns the ```json block that follows b, if the next fenced
// block after b is one, under the same heading: the JSON README shows for
// b's Caddyfile.
func (d *Doc) JSONAfter(b Block) (Block, bool) {
	for i, x := range d.Blocks {
		if x.Line == b.Line && i+1 < len(d.Blocks) {
			next := d.Blocks[i+1]
			return next, next.Lang == "json" && next.Heading == b.Heading
		}
	}
	return Block{}, false
}

// TableRows returns the rows of the first table under heading (not its
// header or separator), each split into its cells, trimmed. A "|" inside a
// `code span` does not split a cell.
func (d *Doc) TableRows(heading string) [][]string {
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	var rows [][]string
	started, body := false, false
	for i, line := range d.Lines {
		if !d.under(i+1, heading, level) || !strings.HasPrefix(line, "|") {
			if started {
				break
			}
			continue
		}
		started = true
		cells := splitRow(line)
		switch {
		case isSeparator(cells):
			body = true
		case body:
			rows = append(rows, cells)
		}
	}
	return rows
}

func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	var cells []string
	var cur strings.Builder
	code := false
	for _, r := range line {
		switch {
		case r == '`':
			code = !code
			cur.WriteRune(r)
		case r == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return len(cells) > 0
}

// CodeSpans returns the `code spans` of a line of Markdown, without the
// backticks.
func CodeSpans(s string) []string {
	var out []string
	for {
		_, rest, ok := strings.Cut(s, "`")
		if !ok {
			return out
		}
		span, after, ok := strings.Cut(rest, "`")
		if !ok {
			return out
		}
		out = append(out, span)
		s = after
	}
}

// Commands returns the shell commands of a ```sh block: comments and blank
// lines dropped, lines ending in "\" joined with the next.
func Commands(b Block) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(b.Text, "\n") {
		if t := strings.TrimSpace(line); cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if before, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), "\\"); ok {
			cur.WriteString(strings.TrimSpace(before) + " ")
			continue
		}
		cur.WriteString(strings.TrimSpace(line))
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// Link is one inline link of a document: [text](Target).
type Link struct {
	Target string
	Line   int
}

// Links returns the inline links outside fenced blocks and code spans.
func (d *Doc) Links() []Link {
	var out []Link
	fence := false
	for i, line := range d.Lines {
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), "```") {
			fence = !fence
		}
		if fence {
			continue
		}
		// drop code spans, whose brackets are no links
		var prose strings.Builder
		for j, part := range strings.Split(line, "`") {
			if j%2 == 0 {
				prose.WriteString(part)
			}
		}
		rest := prose.String()
		for {
			_, after, ok := strings.Cut(rest, "](")
			if !ok {
				break
			}
			target, tail, ok := strings.Cut(after, ")")
			if !ok {
				break
			}
			out = append(out, Link{Target: target, Line: i + 1})
			rest = tail
		}
	}
	return out
}

// Anchors returns the anchors GitHub gives the document's headings: lower
// case, punctuation but "-" and "_" dropped, spaces as "-", a repeated
// anchor numbered ("-1", "-2" ...).
func (d *Doc) Anchors() map[string]bool {
	out := map[string]bool{}
	fence := false
	for _, line := range d.Lines {
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), "```") {
			fence = !fence
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#"))) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		a := slug.String()
		for n := 1; out[a]; n++ {
			a = fmt.Sprintf("%s-%d", slug.String(), n)
		}
		out[a] = true
	}
	return out
}
