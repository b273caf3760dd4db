package solver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Sweeper keeps a Provider's journal: it renews the entries of the
// challenges the provider presents (Renew), removes the records of entries
// nobody renews any more (Sweep: processes that died between present and
// cleanup, here or on another instance), and withdraws the provider's own
// records when the process exits (Withdraw).
type Sweeper struct {
	// Reach, if set, is the journal storage's reachability: Sweep counts
	// an entry's age from no earlier than the start of the storage's
	// current reachable run, and Renew and Restore feed it nothing (the
	// journal observes its own operations).
	Reach *Reachability
	// Siblings, if set, returns the sweepers of every alias provider of
	// the config, this one among them: an entry that one of them could
	// have written is that one's to sweep, and no reason to warn here.
	Siblings func() []*Sweeper

	p      *Provider
	mu     sync.Mutex
	warned map[string]bool // journal keys Sweep has warned about
	// missed is set when a renewal failed: the storage was unreachable
	// from here, a sweep elsewhere may have taken this process's entries
	// meanwhile, and Restore must look before the next renewal.
	missed bool
	// rewrite holds the journal IDs whose values Restore found swept and
	// could not write back yet (their entries are stored again). Only
	// Restore uses it, from the journal's rounds, one call at a time.
	rewrite map[string]bool
}

// NewSweeper returns the sweeper of p's journal (p.Journal, which may be
// set later).
func NewSweeper(p *Provider) *Sweeper { return &Sweeper{p: p} }

// Sweep deletes the records of journal entries nobody has renewed for
// maxAge (or for the entry's own lease, if longer) through the writer that
// wrote them, and then the entries. A process renews the entries of the
// challenges it presents (Renew), so a challenge in flight, here or on
// another instance, is never swept however long it takes; only the records
// of processes that died between present and cleanup are. With Reach set,
// an entry's age counts from no earlier than the moment the storage became
// reachable (Reachability): after an outage, or right after this process
// started, nothing is swept by age until the owners have had maxAge of
// reachable storage to renew in. A stale entry's
// record is deleted only if no unexpired entry of the listing and no
// presentation of this process (presented or being deleted) holds the same
// zone, name and value; otherwise only the entry goes. It returns how many
// records it removed.
//
// Nothing an entry says is trusted: an entry that is unreadable or fails
// ValidateEntry, or that no rule of this config could have written, is
// logged once with its key and left alone, and the entry deleted is the key
// listed, never one built from the entry's content.
func (s *Sweeper) Sweep(ctx context.Context, maxAge time.Duration) (int, error) {
	p := s.p
	if p.Journal == nil {
		return 0, nil
	}
	entries, err := s.list(ctx)
	if err != nil {
		if len(entries) == 0 {
			return 0, fmt.Errorf("reading the challenge journal: %w", err)
		}
		p.logger().Warn("some challenge journal entries could not be read", zap.Error(err))
	}
	removed := 0
	now := p.clock()
	reachable, err := s.Reach.Since(now)
	if err != nil {
		return 0, fmt.Errorf("not sweeping the challenge journal by age: %w", err)
	}
	stale := func(e JournalEntry) bool {
		return now.Sub(later(e.lastSeen(), reachable)) >= max(maxAge, e.Lease)
	}
	// The values other challenges hold: the CA hands a restarted process
	// the same pending authorization, so a live entry may carry an
	// orphan's zone, name and value, and the orphan's record is then
	// theirs too. Any unexpired entry counts, valid or not: sparing a
	// record never does harm.
	held := make(map[heldRecord]bool)
	for _, e := range entries {
		if !stale(e) {
			held[heldRecordOf(e.Zone, e.Name, e.Value)] = true
		}
	}
	leave := func(e JournalEntry, err error) {
		if s.siblingWrites(e) || !s.warnsForConfig() {
			return
		}
		if s.firstWarning(e.Key) {
			p.logger().Warn("challenge journal entry left alone; if no other instance removes it, look at it and remove it by hand",
				zap.String("key", e.Key), zap.Error(err))
		}
	}
	for _, e := range entries {
		if err := ValidateEntry(e); err != nil {
			leave(e, fmt.Errorf("entry refused: %w", err))
			continue
		}
		if !stale(e) || p.reg.hasEntry(e.ID) {
			continue
		}
		// Only now: a live entry of another provider of the config is
		// no reason to warn.
		w, err := s.entryWriter(e)
		if err != nil {
			leave(e, err)
			continue
		}
		// The entry goes before its record: once the record is
		// handled, no sweep (another instance's, after a lock that
		// expired) may act on the entry again. A crash between the two
		// leaves a stale digest in the alias zone, which is harmless; a
		// second delete of a value another challenge has since written
		// again is not.
		if err := p.Journal.DeleteKey(ctx, e.Key); err != nil {
			p.logger().Warn("could not remove an orphaned challenge journal entry; its record stays until a later sweep",
				zap.String("key", e.Key), zap.Error(err))
			continue
		}
		if held[heldRecordOf(e.Zone, e.Name, e.Value)] || p.reg.holds(heldRecordOf(e.Zone, e.Name, e.Value)) {
			p.logger().Info("removed a stale challenge journal entry and kept its record, which a live challenge holds",
				zap.String("key", e.Key), zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("value", e.Value))
			continue
		}
		rec := libdns.TXT{Name: libdns.RelativeName(FQDN(e.Name), FQDN(e.Zone)), Text: e.Value}
		if err := retry(ctx, func(ctx context.Context) error {
			return p.names.delete(ctx, w, e.Zone, e.Name, []libdns.Record{rec})
		}); err != nil {
			// The entry comes back (under its ID) for a later sweep.
			if perr := p.Journal.Put(context.WithoutCancel(ctx), e); perr != nil {
				err = errors.Join(err, fmt.Errorf("putting its journal entry back: %w", perr))
			}
			if ctx.Err() != nil {
				return removed, ctx.Err()
			}
			p.logger().Error("could not remove orphaned challenge record; remove it by hand",
				zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("value", e.Value), zap.Error(err))
			continue
		}
		p.logger().Info("removed orphaned challenge record",
			zap.String("domain", e.Domain), zap.String("name", e.Name), zap.String("zone", e.Zone),
			zap.String("value", e.Value), zap.Time("written", e.Written), zap.Time("last_seen", e.lastSeen()))
		removed++
	}
	return removed, nil
}

// list lists the journal, logging each unreadable key once
// (warnUnreadable), and returns the entries with any other failure.
func (s *Sweeper) list(ctx context.Context) ([]JournalEntry, error) {
	entries, err := s.p.Journal.List(ctx)
	if err != nil {
		err = s.warnUnreadable(err)
	}
	return entries, err
}

// warnUnreadable logs each unreadable journal key in err once and returns
// the rest of err (a failure to list at all, say), or nil.
func (s *Sweeper) warnUnreadable(err error) error {
	p := s.p
	var rest []error
	for _, e := range flatten(err) {
		var u *UnreadableEntryError
		if !errors.As(e, &u) {
			rest = append(rest, e)
			continue
		}
		if s.warnsForConfig() && s.firstWarning(u.Key) {
			p.logger().Warn("challenge journal entry is unreadable and left alone; look at it and remove it by hand",
				zap.String("key", u.Key), zap.Error(u.Err))
		}
	}
	return errors.Join(rest...)
}

// flatten returns the errors joined in err (errors.Join), or err itself.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Renew marks the journal entries of the challenges this process presents
// as still in use, so that no sweep (here or on another instance) takes
// them for orphans. Call it more often than the sweeps' maxAge. A write
// under way is renewed like any other challenge: its entry carries the
// journal's short lease (sweep_after), never the longest a write could
// take, so that a process killed mid-write leaves its records for no more
// than sweep_after and a sweep interval. A failed renewal is remembered:
// call Restore, not Renew, until it succeeds.
func (s *Sweeper) Renew(ctx context.Context) error {
	p := s.p
	if p.Journal == nil {
		return nil
	}
	var errs []error
	for _, pr := range p.reg.inFlight() {
		// A cleanup finishing meanwhile has forgotten the entry, and
		// putEntry does not write it back.
		if err := p.putEntry(ctx, pr, s.entryOf(pr)); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil && ctx.Err() == nil {
		s.mu.Lock()
		s.missed = true
		s.mu.Unlock()
	}
	return err
}

// entryOf is pr's journal entry, renewed now.
func (s *Sweeper) entryOf(pr *presentation) JournalEntry {
	return JournalEntry{ID: pr.journalID, Domain: pr.target.Domain, Zone: pr.target.Zone,
		Name: pr.target.Name, Type: "TXT", Value: pr.value, Writer: pr.target.Rule.WriterName,
		Written: pr.since, Seen: s.p.clock()}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// warnsForConfig reports whether this sweeper is the one of the config
// (the first of Siblings) that warns about the entries it leaves alone:
// every sweeper of the config leaves the same ones alone.
func (s *Sweeper) warnsForConfig() bool {
	if s.Siblings == nil {
		return true
	}
	all := s.Siblings()
	return len(all) == 0 || all[0] == s
}

// siblingWrites reports whether another alias provider of the config could
// have written e: its sweep, not this one, removes it.
func (s *Sweeper) siblingWrites(e JournalEntry) bool {
	if s.Siblings == nil {
		return false
	}
	for _, o := range s.Siblings() {
		if o == s {
			continue
		}
		if _, err := o.entryWriter(e); err == nil {
			return true
		}
	}
	return false
}

// Withdraw deletes every challenge record this provider presents, for a
// process that is shutting down: its challenges cannot complete, and
// certmagic's own cleanups, racing with the exit, may not get to run. A
// later cleanup of the same record deletes it again, which is harmless. A
// record that cannot be deleted keeps its journal entry for the next sweep.
// It returns how many records it removed.
func (s *Sweeper) Withdraw(ctx context.Context) int {
	p := s.p
	// A write still under way keeps its journal entry for the sweep
	// after the restart.
	items := p.reg.written()
	removed := 0
	for _, pr := range items {
		t := pr.target
		if err := p.deleteWritten(ctx, t, pr.written); err != nil {
			p.logger().Error("could not delete challenge record at shutdown; a sweep after the restart removes it",
				zap.String("domain", t.Domain), zap.String("name", t.Name), zap.String("zone", t.Zone),
				zap.String("value", pr.value), zap.Error(err))
			continue
		}
		p.forget(ctx, pr)
		p.logger().Info("deleted challenge record at shutdown",
			zap.String("domain", t.Domain), zap.String("alias", t.Name), zap.String("zone", t.Zone),
			zap.String("value", pr.value))
		removed++
	}
	return removed
}

// entryWriter validates an entry (ValidateEntry) and finds its configured
// writer: a rule with the same writer name that produces the entry's name
// in the entry's zone, preferring the rule that is responsible for the
// entry's domain now. A static or template rule produces the name its alias
// expands to for the entry's domain; a follow rule any name in its zones. A
// rule with zones must place the name in the entry's zone; one without
// (its zone found by an SOA lookup) must have its alias in the entry's
// zone. Two rules may use two differently configured providers of the same
// module.
func (s *Sweeper) entryWriter(e JournalEntry) (Writer, error) {
	p := s.p
	if err := ValidateEntry(e); err != nil {
		return nil, fmt.Errorf("entry refused: %w", err)
	}
	fits := func(r *Rule) bool {
		if r == nil || r.WriterName != e.Writer {
			return false
		}
		if !r.Follow {
			if name, err := r.Alias.Expand(e.Domain); err != nil || name != e.Name {
				return false
			}
		}
		if len(r.Zones) > 0 {
			return r.zoneOf(e.Name) == e.Zone
		}
		return !r.Follow && InZone(r.Alias.Suffix(), e.Zone)
	}
	if r, err := p.Mapper.Rule(e.Domain); err == nil && fits(r) {
		return r.Writer, nil
	}
	for _, r := range append([]*Rule{p.Mapper.Default}, p.Mapper.Rules...) {
		if fits(r) {
			return r.Writer, nil
		}
	}
	return nil, fmt.Errorf("no rule of this provider's config writes TXT %s in zone %s through %q for %s (perhaps another alias provider or instance does)",
		e.Name, e.Zone, e.Writer, e.Domain)
}

// firstWarning reports whether no warning about entry id was logged yet.
func (s *Sweeper) firstWarning(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.warned == nil {
		s.warned = make(map[string]bool)
	}
	if s.warned[id] {
		return false
	}
	s.warned[id] = true
	return true
}
