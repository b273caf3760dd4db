package lab

// BIND's update log: every RR change a dynamic update made, as the alias
// zone's server logged it (category update, severity info, in named.log).
// The cluster scenarios compare it with what each Caddy logged writing and
// deleting.

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// Update is one change BIND applied.
type Update struct {
	Time time.Time
	Key  string // the TSIG key that signed it, e.g. "caddy-key"
	Zone string
	// Op is "add" (one RR), "delete" (one RR: BIND does not log its
	// value), or "delete rrset" (every record of the type at the name).
	Op    string
	Name  string // without the trailing dot, as BIND logs it
	Type  string
	Value string // the TXT value of an add, its strings joined; "" otherwise
}

// updateLine matches, e.g.
//
//	01-Dec-2026 12:22:52.682 update: info: client @0x7f20ad6fe098 127.0.0.2#33320/key caddy-key: updating zone 'validation.example.org/IN': adding an RR at '_acme-challenge.t1.example.com.validation.example.org' TXT "abc"
//	01-Dec-2026 12:22:52.682 update: info: client @0x7f20b149b098 127.0.0.2#60615/key caddy-key: updating zone 'validation.example.org/IN': deleting an RR at _acme-challenge.t1.example.com.validation.example.org TXT
var updateLine = regexp.MustCompile(`^(\S+ \S+) update: info: client @\S+ \S+/key ([^:]+): updating zone '([^/']+)/IN': (adding an RR|deleting an RR|deleting rrset) at '?([^' ]+)'? (\S+)(?: (.*))?$`)

// AliasUpdateMark returns the end of BIND A's log (the server of the alias
// zone), for AliasUpdatesSince.
func (l *Lab) AliasUpdateMark() int64 {
	st, err := os.Stat(l.namedALog())
	if err != nil {
		return 0
	}
	return st.Size()
}

func (l *Lab) namedALog() string {
	if f := l.Env["NAMED_A_LOG"]; f != "" {
		return f
	}
	return l.Dir + "/a/named.log"
}

// AliasUpdatesSince returns the changes BIND A logged after mark, in
// order. BIND A serves the alias zone (validation.example.org) and every
// production zone but drift.example's copy on B.
func (l *Lab) AliasUpdatesSince(mark int64) ([]Update, error) {
	f, err := os.Open(l.namedALog())
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(mark, 0); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var out []Update
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if u, ok := parseUpdateLine(sc.Text()); ok {
			out = append(out, u)
		}
	}
	return out, sc.Err()
}

func parseUpdateLine(line string) (Update, bool) {
	m := updateLine.FindStringSubmatch(line)
	if m == nil {
		return Update{}, false
	}
	ts, _ := time.ParseInLocation("02-Jan-2006 15:04:05.000", m[1], time.Local)
	u := Update{Time: ts, Key: m[2], Zone: m[3], Name: strings.TrimSuffix(m[5], "."), Type: m[6]}
	switch m[4] {
	case "adding an RR":
		u.Op = "add"
		// "a" "b": the strings of a TXT record, joined as its value
		u.Value = strings.Join(strings.Split(strings.Trim(m[7], `"`), `" "`), "")
	case "deleting an RR":
		u.Op = "delete"
	default:
		u.Op = "delete rrset"
	}
	return u, true
}
