package readme

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// A message as README quotes it and a message as the code writes it are
// both sequences of tokens: literal characters and holes. README's holes:
// "..." (text left out: matches anything) and placeholders (X, Y, Z, N, M,
// U, NS, IP, <word>: stand for a value, so only a format verb matches them).
// The code's holes: format verbs (%s, %q, %d, %v, %w ...) and, in a string
// built with +, the non-literal operands.

type tokKind uint8

const (
	tokLit tokKind = iota
	tokEllipsis
	tokPlaceholder
	tokVerb
)

type tok struct {
	kind tokKind
	c    byte
	// proseStart marks the first character of a README word made of
	// letters only: prose, of which a verb may swallow one word at most (a
	// verb stands for one value, and a value may look like one word).
	proseStart bool
}

// Format is one message as the code writes it.
type Format struct {
	Text string // as written, verbs included; operands of + shown as %v
	Pos  string // file:line
	toks []tok
}

// readmePlaceholders are the upper-case words README's messages use for a
// value (README also shows literal TXT, CNAME, CAA ...).
var readmePlaceholders = map[string]bool{"X": true, "Y": true, "Z": true, "N": true, "M": true, "U": true, "NS": true, "IP": true}

// quotedTokens splits a message as README quotes it into tokens.
func quotedTokens(s string) []tok {
	var out []tok
	for _, word := range splitKeep(s) {
		switch {
		case word == " ":
			out = append(out, tok{kind: tokLit, c: ' '})
			continue
		case readmePlaceholders[strings.Trim(word, "(),;:.")]:
			core := strings.Trim(word, "(),;:.")
			pre, post, _ := strings.Cut(word, core)
			out = appendLits(out, pre)
			out = append(out, tok{kind: tokPlaceholder})
			out = appendLits(out, post)
			continue
		}
		prose := isProse(word)
		for i := 0; i < len(word); i++ {
			switch {
			case strings.HasPrefix(word[i:], "..."):
				out = append(out, tok{kind: tokEllipsis})
				i += 2
			case word[i] == '<':
				if end := strings.IndexByte(word[i:], '>'); end > 1 {
					out = append(out, tok{kind: tokPlaceholder})
					i += end
					continue
				}
				out = append(out, tok{kind: tokLit, c: word[i]})
			default:
				out = append(out, tok{kind: tokLit, c: word[i], proseStart: prose && i == strings.IndexFunc(word, isLetter)})
			}
		}
	}
	return out
}

func appendLits(out []tok, s string) []tok {
	for i := 0; i < len(s); i++ {
		out = append(out, tok{kind: tokLit, c: s[i]})
	}
	return out
}

// splitKeep splits s into words and single spaces.
func splitKeep(s string) []string {
	var out []string
	for s != "" {
		if s[0] == ' ' {
			out = append(out, " ")
			s = s[1:]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

func isLower(r rune) bool  { return r >= 'a' && r <= 'z' }
func isLetter(r rune) bool { return isLower(r) || (r >= 'A' && r <= 'Z') }

// isProse: a word of letters (two or more; CNAME and TXT count), with
// punctuation around it at most. Values have dots, digits, braces ...
func isProse(word string) bool {
	core := strings.Trim(word, "()[],;:.!?\"'")
	if len(core) < 2 {
		return false
	}
	for _, r := range core {
		if !isLower(r) && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// formatTokens splits a format string into tokens.
func formatTokens(s string) []tok {
	var out []tok
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, tok{kind: tokLit, c: s[i]})
			continue
		}
		j := i + 1
		for j < len(s) && strings.IndexByte("+-# 0123456789.[]*", s[j]) >= 0 {
			j++
		}
		switch {
		case j < len(s) && s[j] == '%':
			out = append(out, tok{kind: tokLit, c: '%'})
		case j < len(s):
			out = append(out, tok{kind: tokVerb})
		default:
			out = append(out, tok{kind: tokLit, c: '%'})
		}
		i = j
	}
	return out
}

// NewFormat makes a Format from a format string.
func NewFormat(text, pos string) Format {
	return Format{Text: text, Pos: pos, toks: formatTokens(text)}
}

// Verbs returns the number of holes in f.
func (f Format) Verbs() int {
	n := 0
	for _, t := range f.toks {
		if t.kind == tokVerb {
			n++
		}
	}
	return n
}

// Nest returns f with its k-th hole (from 0) replaced by inner: the message
// when inner's error is wrapped into f's.
func (f Format) Nest(k int, inner Format) Format {
	var toks []tok
	for _, t := range f.toks {
		if t.kind == tokVerb {
			if k == 0 {
				toks = append(toks, inner.toks...)
				k--
				continue
			}
			k--
		}
		toks = append(toks, t)
	}
	return Format{Text: f.Text + " <- " + inner.Text, Pos: f.Pos + " <- " + inner.Pos, toks: toks}
}

// Literals returns the runs of literal characters of f, between its verbs.
func (f Format) Literals() []string {
	var out []string
	var cur []byte
	for _, t := range f.toks {
		if t.kind == tokLit {
			cur = append(cur, t.c)
			continue
		}
		if len(cur) > 0 {
			out = append(out, string(cur))
		}
		cur = cur[:0]
	}
	if len(cur) > 0 {
		out = append(out, string(cur))
	}
	return out
}

// Quote is a message as README shows it, split into tokens once for the
// many formats it is matched against. It is for one goroutine: its
// matches share one table.
type Quote struct {
	toks []tok // between two ellipses: a quote may show a part of a message
	need int   // how many of a format's characters it must show
	memo []int32
}

// ParseQuote splits quoted, a message as README shows it, into tokens.
func ParseQuote(quoted string) *Quote {
	q := &Quote{toks: append([]tok{{kind: tokEllipsis}}, quotedTokens(quoted)...)}
	q.toks = append(q.toks, tok{kind: tokEllipsis})
	for _, t := range q.toks {
		if t.kind == tokLit && t.c != ' ' {
			q.need++
		}
	}
	q.need = min(q.need, minShown)
	return q
}

// Quotes reports whether q is (a part of) what f prints: every character
// of f that q shows is the same, README's "..." stand for what it leaves
// out, its placeholders and example values for f's verbs, no verb stands
// for more than one word of prose, and at least minShown of f's own
// characters (blanks aside; all of q's, if it has fewer) are shown, so that
// a message of values only does not quote every format that ends in a verb.
func (f Format) Quotes(q *Quote) bool {
	n := (len(q.toks) + 1) * (len(f.toks) + 1) * 2
	if cap(q.memo) < n {
		q.memo = make([]int32, n)
	}
	m := &matcher{r: q.toks, f: f.toks, memo: q.memo[:n]}
	clear(m.memo)
	return m.match(0, 0, 0) >= q.need
}

// minShown is how many of a format's own characters a quote must show.
const minShown = 8

type matcher struct {
	r, f []tok
	// memo holds match's results by (i, j, k), plus one: 0 is unknown.
	memo []int32
}

// no is the score of an alignment that cannot be.
const no = -1

// match returns the most non-blank characters of f that r[i:] can show in
// an alignment with f[j:] (no if none exists), k (0 or 1) being the number
// of prose words the verb at f[j] has swallowed so far.
func (m *matcher) match(i, j, k int) int {
	key := (i*(len(m.f)+1)+j)*2 + k
	if v := m.memo[key]; v != 0 {
		return int(v) - 1
	}
	v := m.step(i, j, k)
	m.memo[key] = int32(v) + 1
	return v
}

func (m *matcher) step(i, j, k int) int {
	if i == len(m.r) {
		if j == len(m.f) {
			return 0
		}
		return no
	}
	if m.r[i].kind == tokEllipsis {
		best := m.match(i+1, j, 0)
		if j < len(m.f) {
			best = max(best, m.match(i, j+1, 0))
		}
		return best
	}
	if j == len(m.f) {
		return no
	}
	if m.f[j].kind == tokVerb {
		best := m.match(i, j+1, 0)
		nk := k
		if m.r[i].proseStart {
			nk++
		}
		if nk <= 1 {
			best = max(best, m.match(i+1, j, nk))
		}
		return best
	}
	if m.r[i].kind == tokPlaceholder || m.r[i].c != m.f[j].c {
		return no
	}
	rest := m.match(i+1, j+1, 0)
	if rest == no || m.r[i].c == ' ' {
		return rest
	}
	return rest + 1
}

// SourceFormats returns every string literal of the non-test Go files below
// root, in the directories keep accepts (relative paths, "." for root), as
// a Format; strings joined with + count as one, other operands as holes.
func SourceFormats(root string, keep func(dir string) bool) ([]Format, error) {
	var out []Format
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || !keep(rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.AssignStmt:
				// msg += "; more" + v: the message so far, then the rest
				if x.Tok == token.ADD_ASSIGN && len(x.Rhs) == 1 {
					if text, ok := concat(x.Rhs[0]); ok {
						out = append(out, NewFormat("%v"+text, fset.Position(x.Pos()).String()))
						return false
					}
				}
			case *ast.BinaryExpr:
				if x.Op != token.ADD {
					return true
				}
				if text, ok := concat(x); ok {
					out = append(out, NewFormat(text, fset.Position(x.Pos()).String()))
					return false
				}
			case *ast.BasicLit:
				if x.Kind == token.STRING {
					if s, err := strconv.Unquote(x.Value); err == nil {
						out = append(out, NewFormat(s, fset.Position(x.Pos()).String()))
					}
				}
			}
			return true
		})
		return nil
	})
	return out, err
}

// concat renders a + chain that holds at least one string literal, with
// every other operand as %v; ok is false when there is no string literal.
func concat(e ast.Expr) (text string, ok bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			s, err := strconv.Unquote(x.Value)
			return s, err == nil
		}
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			l, lok := concat(x.X)
			r, rok := concat(x.Y)
			return l + r, lok || rok
		}
	case *ast.ParenExpr:
		return concat(x.X)
	}
	return "%v", false
}
