package lab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The resolver's queries are counted from Unbound's log (log-queries: yes,
// in UNBOUND_LOG), not from unbound-control statistics: the log names each
// query, so a test can count those for one name and type. Unbound writes a
// line per query as it arrives ("[epoch] unbound[pid:0] info: CLIENT NAME
// TYPE CLASS") and, with log-replies, a longer line per answer; only the
// query lines are counted. The log starts empty whenever Unbound starts.

// ResolverQuery is one query that Unbound received.
type ResolverQuery struct {
	Time   time.Time
	Client string // client IP
	Name   string // lower case, fully qualified
	Type   uint16
	Class  string
	Offset int64 // byte offset of the line in the log
}

// ResolverMark is a position in Unbound's log (see ResolverLogMark).
type ResolverMark int64

// ResolverLogMark returns the current end of Unbound's log; pass it to
// ResolverQueriesSince to see only the queries that came after.
func (l *Lab) ResolverLogMark() (ResolverMark, error) {
	fi, err := os.Stat(l.UnboundLog)
	if err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	return ResolverMark(fi.Size()), nil
}

// ResolverQueries returns every query in Unbound's log.
func (l *Lab) ResolverQueries() ([]ResolverQuery, error) {
	return l.ResolverQueriesSince(0)
}

// ResolverQueriesSince returns the queries logged after mark.
func (l *Lab) ResolverQueriesSince(mark ResolverMark) ([]ResolverQuery, error) {
	f, err := os.Open(l.UnboundLog)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && int64(mark) > fi.Size() {
		mark = 0 // the log was truncated (Unbound restarted)
	}
	if _, err := f.Seek(int64(mark), 0); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var out []ResolverQuery
	r := bufio.NewReader(f)
	off := int64(mark)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 && strings.HasSuffix(line, "\n") {
			if q, ok := parseQueryLine(strings.TrimSuffix(line, "\n")); ok {
				q.Offset = off
				out = append(out, q)
			}
		}
		off += int64(len(line))
		if err != nil {
			break
		}
	}
	return out, nil
}

// CountResolverQueries counts the queries in Unbound's log for name
// (any case, with or without the trailing dot; "" for every name) and qtype
// (0 for every type).
func (l *Lab) CountResolverQueries(name string, qtype uint16) (int, error) {
	return l.CountResolverQueriesSince(0, name, qtype)
}

// CountResolverQueriesSince is CountResolverQueries for the queries after mark.
func (l *Lab) CountResolverQueriesSince(mark ResolverMark, name string, qtype uint16) (int, error) {
	qs, err := l.ResolverQueriesSince(mark)
	if err != nil {
		return 0, err
	}
	want := ""
	if name != "" {
		want = strings.ToLower(dns.Fqdn(name))
	}
	n := 0
	for _, q := range qs {
		if (want == "" || q.Name == want) && (qtype == 0 || q.Type == qtype) {
			n++
		}
	}
	return n, nil
}

// parseQueryLine parses "[1700000000] unbound[12:0] info: 127.0.0.1 a.example. TXT IN".
func parseQueryLine(line string) (ResolverQuery, bool) {
	var q ResolverQuery
	head, rest, ok := strings.Cut(line, " info: ")
	if !ok {
		return q, false
	}
	f := strings.Fields(rest)
	if len(f) != 4 || net.ParseIP(f[0]) == nil || !strings.HasSuffix(f[1], ".") {
		return q, false
	}
	t, ok := dns.StringToType[f[2]]
	if !ok {
		if !strings.HasPrefix(f[2], "TYPE") {
			return q, false
		}
		n, err := strconv.ParseUint(f[2][4:], 10, 16)
		if err != nil {
			return q, false
		}
		t = uint16(n)
	}
	if _, ok := dns.StringToClass[f[3]]; !ok && !strings.HasPrefix(f[3], "CLASS") {
		return q, false
	}
	if strings.HasPrefix(head, "[") {
		if end := strings.IndexByte(head, ']'); end > 0 {
			if sec, err := strconv.ParseInt(head[1:end], 10, 64); err == nil {
				q.Time = time.Unix(sec, 0)
			}
		}
	}
	q.Client, q.Name, q.Type, q.Class = f[0], strings.ToLower(f[1]), t, f[3]
	return q, true
}
