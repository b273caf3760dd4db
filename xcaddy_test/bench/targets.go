package main

import (
	"fmt"
	"strconv"
	"strings"
)

// target is one of the performance targets (issue 16), judged from the
// rows the run measured.
type target struct {
	what  string
	table string // its id
	// rows selects the rows the target is about, by their cells.
	rows func(cell func(column string) string) bool
	// value is the cell that is judged, and limit its bound (at most).
	column string
	limit  float64
	// why says what bounds the number where the target is missed.
	why string
}

var targets = []target{
	{what: "N = 1, default config, Pebble retryAfter 0: ratio at most 0.3", table: "issue",
		rows: issueRows("0", "1"), column: "ratio", limit: 0.3},
	{what: "N = 1, default config, Pebble's default retryAfter: ratio at most 0.75", table: "issue",
		rows: issueRows("default", "1"), column: "ratio", limit: 0.75,
		why: "both clients spend about 4.5 s honouring Pebble's Retry-After (3 s authz, 5 s order polls); which poll a run lands on decides the spread"},
	{what: "on-demand first handshake, Pebble retryAfter 0: ratio at most 0.3", table: "ondemand",
		rows: func(cell func(string) string) bool {
			return cell("pebble retryAfter") == "0" && strings.HasPrefix(cell("configuration"), "alias")
		}, column: "ratio", limit: 0.3},
	{what: "N = 20, default config: ratio at most 0.9", table: "issue",
		rows: func(cell func(string) string) bool {
			return cell("N") == "20" && strings.HasSuffix(cell("configuration"), "(default config)")
		}, column: "ratio", limit: 0.9,
		why: "certmagic allows itself 10 orders per 10 s per account: the second ten names wait for its limiter whichever client runs, so one name's 2 s are all there is to save, and when the limiter lets a run's second ten go moves its total by a second (see the spread)"},
	{what: "N = 100, default config: at the floor of certmagic's 10 orders per 10 s (about 90 s to the last certificate)", table: "issue",
		rows: func(cell func(string) string) bool {
			return cell("N") == "100" && strings.HasSuffix(cell("configuration"), "(default config)")
		}, column: "median", limit: 99,
		why: "Pebble's default Retry-After adds its polls to the last ten names' time"},
	{what: "N = 1: the plugin faster than lego (ratio below lego's)", table: "lego",
		rows: func(cell func(string) string) bool {
			return cell("names") == "1" && strings.HasPrefix(cell("client"), "alias")
		}, column: "ratio"},
}

// issueRows selects the issue table's default-config rows for a Pebble
// setting and N.
func issueRows(pebble, n string) func(func(string) string) bool {
	return func(cell func(string) string) bool {
		return cell("pebble retryAfter") == pebble && cell("N") == n && strings.HasSuffix(cell("configuration"), "(default config)")
	}
}

// writeTargets renders the targets section from the report's rows: each
// row a target is about, its number, and whether it is met.
func (r *report) writeTargets(b *strings.Builder) {
	var lines []string
	for _, tg := range targets {
		for _, row := range r.rows[tg.table] {
			cell := rowCells(r.header(tg.table), row)
			if !tg.rows(cell) {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(cell(tg.column), " s"), 64)
			if err != nil {
				continue
			}
			limit := tg.limit
			if tg.table == "lego" {
				limit = r.legoRatio(cell("pebble retryAfter"))
			}
			verdict := "met"
			if v > limit || limit == 0 {
				verdict = "missed"
				if tg.why != "" {
					verdict += ": " + tg.why
				}
			}
			lines = append(lines, fmt.Sprintf("| %s | %s | %s | %s | %s |", tg.what, cell("pebble retryAfter"), firstOf(cell("configuration"), cell("client")), cell(tg.column), verdict))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\n## Targets\n\nJudged from the rows above (ratios to stock Caddy in the same run).\n\n")
	b.WriteString("| target | pebble retryAfter | configuration | measured | verdict |\n|---|---|---|---|---|\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
}

// legoRatio is lego's ratio for one name under a Pebble setting, 0 if not
// measured.
func (r *report) legoRatio(pebble string) float64 {
	for _, row := range r.rows["lego"] {
		cell := rowCells(r.header("lego"), row)
		if cell("pebble retryAfter") == pebble && cell("names") == "1" && strings.HasPrefix(cell("client"), "lego") {
			v, _ := strconv.ParseFloat(cell("ratio"), 64)
			return v
		}
	}
	return 0
}

// header is the header row of the table with id.
func (r *report) header(id string) string {
	for _, t := range r.tables {
		if t.id == id {
			return t.header
		}
	}
	return ""
}

// rowCells returns a lookup of row's cells by the column names of header.
func rowCells(header, row string) func(string) string {
	names := splitRow(strings.SplitN(header, "\n", 2)[0])
	cells := splitRow(row)
	return func(column string) string {
		for i, n := range names {
			if n == column && i < len(cells) {
				return cells[i]
			}
		}
		return ""
	}
}

func splitRow(row string) []string {
	parts := strings.Split(strings.Trim(strings.TrimSpace(row), "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
