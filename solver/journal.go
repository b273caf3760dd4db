package solver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Journal keeps the challenge records written and not yet deleted, in
// storage that outlives the process (and that the instances of a cluster
// share), so that a record orphaned by a crash between present and cleanup
// is found and removed by a later sweep.
//
// What a journal holds is trusted no more than any other input: anyone with
// write access to the storage can put entries there. A sweep deletes only
// the keys it listed, and acts only on entries that pass ValidateEntry.
type Journal interface {
	// Put stores e under the key of its ID, replacing an entry with the
	// same ID.
	Put(ctx context.Context, e JournalEntry) error
	// Delete removes the entry that this process Put with this ID.
	Delete(ctx context.Context, id string) error
	// DeleteKey removes the entry List returned with this Key, and nothing
	// else.
	DeleteKey(ctx context.Context, key string) error
	// List returns every entry, each with the Key it is stored under. It
	// may return the entries it could read together with an error about
	// those it could not: an *UnreadableEntryError per key, joined.
	List(ctx context.Context) ([]JournalEntry, error)
}

// UnreadableEntryError reports a journal key whose content is no entry (not
// JSON, no ID, a directory, a failed read).
type UnreadableEntryError struct {
	Key string
	Err error
}

func (e *UnreadableEntryError) Error() string {
	return fmt.Sprintf("journal entry %s is unreadable: %v", e.Key, e.Err)
}

func (e *UnreadableEntryError) Unwrap() error { return e.Err }

// JournalEntry is one challenge record written into an alias zone. Its value
// is the ACME challenge digest, which is public in DNS anyway.
type JournalEntry struct {
	// Key is where List found the entry; it is not stored in the entry.
	Key    string `json:"-"`
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Zone   string `json:"zone"`
	Name   string `json:"name"`
	// Type is the record type, always TXT ("" in entries of older
	// versions).
	Type    string    `json:"type,omitempty"`
	Value   string    `json:"value"`
	Writer  string    `json:"writer"`
	Written time.Time `json:"written"`
	// Seen is when the process that wrote the record last confirmed that
	// it still presents it (Renew); zero means Written.
	Seen time.Time `json:"seen,omitzero"`
	// Lease is how long after Seen the writing process promises to renew
	// the entry (its own sweep_after); a sweep never removes an entry
	// within its lease, whatever its own maxAge.
	Lease time.Duration `json:"lease,omitempty"`
}

// MinSweepAfter is the shortest sweep_after, the lease of a renewed entry:
// its process renews the entry every third of it, which must leave time for
// a storage write and for some clock difference between instances. A write
// under way is covered by LongestPresent instead, however short this is.
const MinSweepAfter = 3 * time.Second

// lastSeen is when the entry was last known to be in use.
func (e JournalEntry) lastSeen() time.Time {
	if e.Seen.After(e.Written) {
		return e.Seen
	}
	return e.Written
}

func newJournalID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Sweep deletes the records of journal entries nobody has renewed for
// maxAge (or for the entry's own lease, if longer) through the writer that
// wrote them, and then the entries. A process renews the entries of the
// challenges it presents (Renew), so a challenge in flight, here or on
// another instance, is never swept however long it takes; only the records
// of processes that died between present and cleanup are. A stale entry's
// record is deleted only if no unexpired entry of the listing and no
// presentation of this process (presented or being deleted) holds the same
// zone, name and value; otherwise only the entry goes. It returns how many
// records it removed.
//
// Nothing an entry says is trusted: an entry that is unreadable or fails
// ValidateEntry, or that no rule of this config could have written, is
// logged once with its key and left alone, and the entry deleted is the key
// listed, never one built from the entry's content.
func (p *Provider) Sweep(ctx context.Context, maxAge time.Duration) (int, error) {
	if p.Journal == nil {
		return 0, nil
	}
	entries, err := p.Journal.List(ctx)
	if err != nil {
		if other := p.warnUnreadable(err); other != nil {
			if len(entries) == 0 {
				return 0, fmt.Errorf("reading the challenge journal: %w", other)
			}
			p.logger().Warn("some challenge journal entries could not be read", zap.Error(other))
		}
	}
	removed := 0
	now := p.clock()
	stale := func(e JournalEntry) bool { return now.Sub(e.lastSeen()) >= max(maxAge, e.Lease) }
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
		if p.firstWarning(e.Key) {
			p.logger().Warn("challenge journal entry left alone; if no other instance removes it, look at it and remove it by hand",
				zap.String("key", e.Key), zap.Error(err))
		}
	}
	for _, e := range entries {
		if err := ValidateEntry(e); err != nil {
			leave(e, fmt.Errorf("entry refused: %w", err))
			continue
		}
		if !stale(e) || p.presentsEntry(e.ID) {
			continue
		}
		// Only now: a live entry of another provider of the config is
		// no reason to warn.
		w, err := p.entryWriter(e)
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
		if held[heldRecordOf(e.Zone, e.Name, e.Value)] || p.presentsValue(e.Zone, e.Name, e.Value) {
			p.logger().Info("removed a stale challenge journal entry and kept its record, which a live challenge holds",
				zap.String("key", e.Key), zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("value", e.Value))
			continue
		}
		rec := libdns.TXT{Name: libdns.RelativeName(FQDN(e.Name), FQDN(e.Zone)), Text: e.Value}
		if err := retry(ctx, func(ctx context.Context) error {
			return p.deleteAt(ctx, w, e.Zone, e.Name, []libdns.Record{rec})
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

// warnUnreadable logs each unreadable journal key in err once and returns
// the rest of err (a failure to list at all, say), or nil.
func (p *Provider) warnUnreadable(err error) error {
	var rest []error
	for _, e := range flatten(err) {
		var u *UnreadableEntryError
		if !errors.As(e, &u) {
			rest = append(rest, e)
			continue
		}
		if p.firstWarning(u.Key) {
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

// ValidateEntry checks a journal entry as a write is checked, without
// trusting any of it: its name and zone are valid DNS names in canonical
// form, the zone is no public suffix and contains the name, the record is
// TXT, and the value has the shape of an ACME DNS-01 digest. Whether this
// config's mapping could have produced the name is entryWriter's question.
func ValidateEntry(e JournalEntry) error {
	for _, f := range []struct{ field, name string }{{"name", e.Name}, {"zone", e.Zone}, {"domain", e.Domain}} {
		if f.name != Normalize(f.name) {
			return fmt.Errorf("%s %q is not in canonical form (lower case, no trailing dot)", f.field, f.name)
		}
		if err := ValidName(f.name + "."); err != nil {
			return fmt.Errorf("%s: %w", f.field, err)
		}
	}
	if err := ValidZone(e.Zone); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	if e.Name == e.Zone || !InZone(e.Name, e.Zone) {
		return fmt.Errorf("name %q does not lie below zone %q", e.Name, e.Zone)
	}
	if e.Type != "" && e.Type != "TXT" {
		return fmt.Errorf("type %q: only TXT challenge records are written", e.Type)
	}
	if err := ValidDigest(e.Value); err != nil {
		return err
	}
	return nil
}

// Renew marks the journal entries of the challenges this process presents
// as still in use, so that no sweep (here or on another instance) takes
// them for orphans. Call it more often than the sweeps' maxAge.
func (p *Provider) Renew(ctx context.Context) error {
	if p.Journal == nil {
		return nil
	}
	type renewal struct {
		pr *presentation
		e  JournalEntry
	}
	p.mu.Lock()
	var entries []renewal
	add := func(pr *presentation) {
		e := JournalEntry{ID: pr.journalID, Domain: pr.target.Domain, Zone: pr.target.Zone,
			Name: pr.target.Name, Type: "TXT", Value: pr.value, Writer: pr.target.Rule.WriterName, Written: pr.since}
		if !pr.finished() {
			e.Lease = p.LongestPresent()
		}
		entries = append(entries, renewal{pr, e})
	}
	for _, pr := range p.presented {
		add(pr)
	}
	for _, pr := range p.retiring {
		add(pr)
	}
	p.mu.Unlock()
	var errs []error
	for _, r := range entries {
		// A cleanup finishing meanwhile has forgotten the entry, and
		// putEntry does not write it back.
		r.e.Seen = p.clock()
		if err := p.putEntry(ctx, r.pr, r.e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Withdraw deletes every challenge record this provider presents, for a
// process that is shutting down: its challenges cannot complete, and
// certmagic's own cleanups, racing with the exit, may not get to run. A
// later cleanup of the same record deletes it again, which is harmless. A
// record that cannot be deleted keeps its journal entry for the next sweep.
// It returns how many records it removed.
func (p *Provider) Withdraw(ctx context.Context) int {
	type item struct {
		value string
		pr    *presentation
	}
	p.mu.Lock()
	var items []item
	for k, pr := range p.presented {
		if pr.finished() {
			// A write still under way keeps its journal entry for
			// the sweep after the restart.
			items = append(items, item{k.value, pr})
		}
	}
	p.mu.Unlock()
	removed := 0
	for _, it := range items {
		t := it.pr.target
		if err := p.deleteWritten(ctx, t, it.pr.written); err != nil {
			p.logger().Error("could not delete challenge record at shutdown; a sweep after the restart removes it",
				zap.String("domain", t.Domain), zap.String("name", t.Name), zap.String("zone", t.Zone),
				zap.String("value", it.value), zap.Error(err))
			continue
		}
		p.forget(ctx, it.pr)
		p.logger().Info("deleted challenge record at shutdown",
			zap.String("domain", t.Domain), zap.String("alias", t.Name), zap.String("zone", t.Zone),
			zap.String("value", it.value))
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
func (p *Provider) entryWriter(e JournalEntry) (Writer, error) {
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

// heldRecord is a challenge record by zone, name and value, compared as
// DNS compares names.
type heldRecord struct{ zone, name, value string }

func heldRecordOf(zone, name, value string) heldRecord {
	return heldRecord{Normalize(zone), Normalize(name), value}
}

// presentsValue reports whether this process presents value at name in
// zone, or is deleting it, under any journal entry.
func (p *Provider) presentsValue(zone, name, value string) bool {
	want := heldRecordOf(zone, name, value)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.presented {
		if heldRecordOf(pr.target.Zone, pr.target.Name, pr.value) == want {
			return true
		}
	}
	for _, pr := range p.retiring {
		if heldRecordOf(pr.target.Zone, pr.target.Name, pr.value) == want {
			return true
		}
	}
	return false
}

func (p *Provider) presentsEntry(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.presented {
		if pr.journalID == id {
			return true
		}
	}
	return p.retiring[id] != nil
}

// firstWarning reports whether no warning about entry id was logged yet.
func (p *Provider) firstWarning(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warned == nil {
		p.warned = make(map[string]bool)
	}
	if p.warned[id] {
		return false
	}
	p.warned[id] = true
	return true
}
