package solver

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s with every rune that could act on a terminal or
// mislead a reader of a log escaped the way Go writes it (\x1b, \u202e):
// control characters (escape sequences, line breaks that forge log lines),
// invisible format characters (bidirectional overrides) and bytes that are
// no UTF-8. The rest stays as it is, so that a name stays readable.
//
// Every string that came from DNS (a CAA value, a TXT record) or from a
// remote server (an HTTP status, a Location header, an ACME directory)
// goes through it before it reaches a terminal, a log line, an event or a
// metric label.
func Printable(s string) string {
	if !strings.ContainsFunc(s, notPrintable) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if notPrintable(r) {
			q := strconv.Quote(s[i : i+size])
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// notPrintable reports whether r is to be escaped: anything but a graphic
// character or a plain space. An invalid byte decodes as utf8.RuneError,
// which ContainsFunc sees as such.
func notPrintable(r rune) bool {
	return r == utf8.RuneError || (r != ' ' && !unicode.IsPrint(r))
}
