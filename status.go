package alias

import (
	"slices"
	"strconv"
	"strings"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

const (
	defaultStatusLimit = 1000
	maxStatusLimit     = 10000
)

// statusPage is one page of /dns-alias/status: the names after After, in
// order, at most Limit, of Total that match the filter; Next is the
// ?after= of the following page, if there is one.
type statusPage struct {
	Total int       `json:"total"`
	Names []*health `json:"names"`
	Next  string    `json:"next,omitempty"`
}

// monitorSnapshot counts the tracked names by policy and state, for the
// metrics.
func (w *watcher) snapshot() monitorSnapshot {
	w.state.mu.Lock()
	defer w.state.mu.Unlock()
	s := monitorSnapshot{counts: map[[2]string]int{}, lastRun: w.state.lastRun, runs: w.state.runs, runTook: w.state.runTook}
	for _, h := range w.state.names {
		s.counts[[2]string{strconv.Itoa(h.Policy), h.State}]++
		if h.broken() {
			c := *h
			s.broken = append(s.broken, &c)
		}
	}
	return s
}

// status lists the tracked names' health in name order, filtered by
// domain and state ("broken" matches every finding), from the name after
// after, at most limit (0: the default).
func (w *watcher) status(domain, state, after string, limit int) statusPage {
	if limit <= 0 {
		limit = defaultStatusLimit
	}
	w.state.mu.Lock()
	var match []*health
	for _, h := range w.state.names {
		if domain != "" && h.Domain != solver.Normalize(domain) {
			continue
		}
		if state != "" && h.State != state && !(state == "broken" && h.broken()) {
			continue
		}
		match = append(match, h)
	}
	page := statusPage{Total: len(match), Names: []*health{}}
	slices.SortFunc(match, func(x, y *health) int { return strings.Compare(x.Domain, y.Domain) })
	after = solver.Normalize(after)
	start, _ := slices.BinarySearchFunc(match, after, func(h *health, s string) int { return strings.Compare(h.Domain, s) })
	if start < len(match) && after != "" && match[start].Domain == after {
		start++
	}
	for _, h := range match[start:min(len(match), start+limit)] {
		c := *h
		page.Names = append(page.Names, &c)
	}
	if start+limit < len(match) {
		page.Next = page.Names[len(page.Names)-1].Domain
	}
	w.state.mu.Unlock()
	return page
}
