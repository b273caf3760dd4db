package solver

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libdns/libdns"
)

type presentedKey struct{ name, value string }

// presentation is one challenge value this process wrote. Deleting uses the
// name recorded here, never a fresh resolution of the chain: a CNAME that
// changed meanwhile must not send the delete elsewhere.
//
// A presentation is registered, with its journal ID, before its journal
// entry is stored, and stays registered (presented, then retiring) until
// its delete finishes: for its whole life Renew renews the entry and Sweep
// passes it by.
type presentation struct {
	target    Target
	original  string          // challenge name in the production zone
	value     string          // the TXT value
	written   []libdns.Record // as the inner provider returned them; set when done closes
	refs      int
	since     time.Time
	journalID string
	ttl       time.Duration // the largest TTL the alias zone served it with
	// forgotten is set before the entry is dropped once its record is
	// handled: a journal write racing the drop (Renew's) sees it
	// afterwards and drops the entry again, or a sweep would delete the
	// value later, when another challenge may present it.
	forgotten atomic.Bool
	// done is closed when the write (and the wait for the authoritative
	// servers) finished; err is its failure. Concurrent presents of the
	// same value wait for it instead of writing (and journalling) again.
	done chan struct{}
	err  error
}

// finished reports whether the presentation's write is over.
func (pr *presentation) finished() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// Presented describes a challenge record currently presented. It carries no
// record value: listings of it are shown to operators.
type Presented struct {
	Domain string    `json:"domain"`
	Name   string    `json:"name"`
	Zone   string    `json:"zone"`
	Since  time.Time `json:"since"`
}

// presentations is the registry of what this process presents: by alias
// name and value while presented, by journal ID while its delete is under
// way (retiring), and until when a recursive resolver may still answer a
// removed value's TXT set from its cache.
type presentations struct {
	mu        sync.Mutex
	presented map[presentedKey]*presentation
	retiring  map[string]*presentation
	// cachedUntil holds, by alias name, until when a recursive resolver
	// may answer from its cache a TXT set of that name that a value since
	// removed was part of.
	cachedUntil map[string]time.Time
}

// claim registers pr under key, or, if the same value is presented at the
// same name already, takes one more reference to that one and returns it
// (one record, deleted when its last user deletes it, and one journal
// entry). shared reports whether a recursive resolver may hold a TXT set of
// the name without the new value: another value is presented there (or
// being deleted), or was until lately.
func (ps *presentations) claim(key presentedKey, pr *presentation, now time.Time) (existing *presentation, shared bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if old, ok := ps.presented[key]; ok {
		old.refs++
		return old, false
	}
	for k := range ps.presented {
		shared = shared || k.name == key.name
	}
	for _, r := range ps.retiring {
		shared = shared || r.target.Name == key.name
	}
	shared = shared || now.Before(ps.cachedUntil[key.name])
	if ps.presented == nil {
		ps.presented = make(map[presentedKey]*presentation)
	}
	ps.presented[key] = pr
	return nil, shared
}

// settle records the outcome of pr's write, dropping pr if it failed, and
// lets the presents waiting for it go on.
func (ps *presentations) settle(key presentedKey, pr *presentation, written []libdns.Record, ttl time.Duration, err error) {
	ps.mu.Lock()
	pr.written, pr.err, pr.ttl = written, err, ttl
	if err != nil && ps.presented[key] == pr {
		delete(ps.presented, key)
	}
	ps.mu.Unlock()
	close(pr.done)
}

// await waits for the write of a presentation another present started,
// and returns its failure. A present that gives up drops its reference.
func (ps *presentations) await(ctx context.Context, pr *presentation, domain string) error {
	select {
	case <-pr.done:
	case <-ctx.Done():
		ps.mu.Lock()
		pr.refs--
		ps.mu.Unlock()
		return fmt.Errorf("waiting for a concurrent write of the same challenge value of %s: %w", domain, ctx.Err())
	}
	if pr.err != nil {
		return fmt.Errorf("a concurrent write of the same challenge value of %s failed: %w", domain, pr.err)
	}
	return nil
}

// take drops one reference to the presentation of value at name, which is
// either the alias name or the original challenge name. The presentation is
// moved from the table to the retiring ones once no reference is left; last
// reports that, so that exactly one caller deletes the record (decided
// under the lock), and then calls retired.
func (ps *presentations) take(name, value string) (presentedKey, *presentation, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	key := presentedKey{name, value}
	pr, ok := ps.presented[key]
	if !ok {
		for k, candidate := range ps.presented {
			if candidate.original == name && k.value == value {
				key, pr, ok = k, candidate, true
				break
			}
		}
	}
	if !ok {
		return key, nil, false
	}
	pr.refs--
	if pr.refs == 0 {
		// Its delete is under way: still in flight (retiring) until
		// the caller's retired.
		delete(ps.presented, key)
		if ps.retiring == nil {
			ps.retiring = make(map[string]*presentation)
		}
		ps.retiring[pr.journalID] = pr
	}
	return key, pr, pr.refs == 0
}

// retired ends the retirement that take began: pr's delete is over.
func (ps *presentations) retired(pr *presentation) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.retiring, pr.journalID)
}

// restore presents pr again after its delete failed.
func (ps *presentations) restore(key presentedKey, pr *presentation) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pr.refs++
	ps.presented[key] = pr
}

// removed notes that a value at name, served with ttl, is gone now: a
// resolver may keep answering the set it was part of for that long.
func (ps *presentations) removed(name string, ttl time.Duration, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for n, until := range ps.cachedUntil {
		if !now.Before(until) {
			delete(ps.cachedUntil, n)
		}
	}
	if until := now.Add(ttl); until.After(now) && until.After(ps.cachedUntil[name]) {
		if ps.cachedUntil == nil {
			ps.cachedUntil = make(map[string]time.Time)
		}
		ps.cachedUntil[name] = until
	}
}

// isPresented reports whether the write of value at name (alias or
// original) is done.
func (ps *presentations) isPresented(name, value string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pr, ok := ps.presented[presentedKey{name, value}]; ok && pr.finished() {
		return true
	}
	for k, pr := range ps.presented {
		if pr.original == name && k.value == value && pr.finished() {
			return true
		}
	}
	return false
}

// list returns what is presented, oldest first.
func (ps *presentations) list() []Presented {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]Presented, 0, len(ps.presented))
	for _, pr := range ps.presented {
		out = append(out, Presented{Domain: pr.target.Domain, Name: pr.target.Name, Zone: pr.target.Zone, Since: pr.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// records returns the records written for the challenges of domains in
// zone, under their alias names.
func (ps *presentations) records(zone string) []libdns.Record {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []libdns.Record
	for k, pr := range ps.presented {
		if pr.finished() && pr.err == nil && InZone(pr.original, zone) {
			out = append(out, libdns.TXT{Name: FQDN(k.name), Text: k.value})
		}
	}
	return out
}

// inFlight returns every presentation whose journal entry is in use:
// presented, being written, or being deleted.
func (ps *presentations) inFlight() []*presentation {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*presentation, 0, len(ps.presented)+len(ps.retiring))
	for _, pr := range ps.presented {
		out = append(out, pr)
	}
	for _, pr := range ps.retiring {
		out = append(out, pr)
	}
	return out
}

// written returns the presentations whose write is done.
func (ps *presentations) written() []*presentation {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []*presentation
	for _, pr := range ps.presented {
		if pr.finished() {
			out = append(out, pr)
		}
	}
	return out
}

// holds reports whether this process presents value at name in zone, or is
// deleting it, under any journal entry.
func (ps *presentations) holds(rec heldRecord) bool {
	for _, pr := range ps.inFlight() {
		if heldRecordOf(pr.target.Zone, pr.target.Name, pr.value) == rec {
			return true
		}
	}
	return false
}

// hasEntry reports whether the journal entry id is one of this process's
// presentations'.
func (ps *presentations) hasEntry(id string) bool {
	for _, pr := range ps.inFlight() {
		if pr.journalID == id {
			return true
		}
	}
	return false
}
