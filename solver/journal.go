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
type Journal interface {
	// Put stores e, replacing an entry with the same ID.
	Put(ctx context.Context, e JournalEntry) error
	Delete(ctx context.Context, id string) error
	// List returns every entry. It may return the entries it could read
	// together with an error about those it could not.
	List(ctx context.Context) ([]JournalEntry, error)
}

// JournalEntry is one challenge record written into an alias zone. Its value
// is the ACME challenge digest, which is public in DNS anyway.
type JournalEntry struct {
	ID      string    `json:"id"`
	Domain  string    `json:"domain"`
	Zone    string    `json:"zone"`
	Name    string    `json:"name"`
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
// of processes that died between present and cleanup are. It returns how
// many records it removed.
func (p *Provider) Sweep(ctx context.Context, maxAge time.Duration) (int, error) {
	if p.Journal == nil {
		return 0, nil
	}
	entries, err := p.Journal.List(ctx)
	if err != nil {
		if len(entries) == 0 {
			return 0, fmt.Errorf("reading the challenge journal: %w", err)
		}
		p.logger().Warn("some challenge journal entries could not be read", zap.Error(err))
	}
	removed := 0
	now := p.clock()
	for _, e := range entries {
		if now.Sub(e.lastSeen()) < max(maxAge, e.Lease) || p.presentsEntry(e.ID) {
			continue
		}
		w := p.writerFor(e)
		if w == nil {
			// Perhaps another alias provider of the config (or another
			// instance) has the writer; say so once, not every sweep.
			if p.firstWarning(e.ID) {
				p.logger().Warn("orphaned challenge record has no writer in this provider's config; if no other instance removes it, remove it by hand",
					zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("writer", e.Writer), zap.String("value", e.Value))
			}
			continue
		}
		rec := libdns.TXT{Name: libdns.RelativeName(FQDN(e.Name), FQDN(e.Zone)), Text: e.Value}
		if err := retry(ctx, func(ctx context.Context) error {
			_, err := w.DeleteRecords(ctx, FQDN(e.Zone), []libdns.Record{rec})
			return err
		}); err != nil {
			if ctx.Err() != nil {
				return removed, ctx.Err()
			}
			p.logger().Error("could not remove orphaned challenge record; remove it by hand",
				zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("value", e.Value), zap.Error(err))
			continue
		}
		if err := p.Journal.Delete(ctx, e.ID); err != nil {
			p.logger().Warn("removed orphaned challenge record but not its journal entry", zap.String("id", e.ID), zap.Error(err))
		}
		p.logger().Info("removed orphaned challenge record",
			zap.String("domain", e.Domain), zap.String("name", e.Name), zap.String("zone", e.Zone),
			zap.Time("written", e.Written), zap.Time("last_seen", e.lastSeen()))
		removed++
	}
	return removed, nil
}

// Renew marks the journal entries of the challenges this process presents
// as still in use, so that no sweep (here or on another instance) takes
// them for orphans. Call it more often than the sweeps' maxAge.
func (p *Provider) Renew(ctx context.Context) error {
	if p.Journal == nil {
		return nil
	}
	p.mu.Lock()
	var entries []JournalEntry
	for k, pr := range p.presented {
		if pr.journalID == "" {
			continue
		}
		entries = append(entries, JournalEntry{ID: pr.journalID, Domain: pr.target.Domain, Zone: pr.target.Zone,
			Name: pr.target.Name, Value: k.value, Writer: pr.target.Rule.WriterName, Written: pr.since})
	}
	p.mu.Unlock()
	var errs []error
	for _, e := range entries {
		// A cleanup finishing meanwhile may have dropped the entry just
		// before this Put writes it back. It is not dropped again here (a
		// cleanup whose delete fails puts its record back, and must keep
		// the entry): a later sweep deletes the value once more, which is
		// harmless, and removes the entry.
		e.Seen = p.clock()
		if err := p.Journal.Put(ctx, e); err != nil {
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
		items = append(items, item{k.value, pr})
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
		p.forget(ctx, it.pr.journalID)
		p.logger().Info("deleted challenge record at shutdown",
			zap.String("domain", t.Domain), zap.String("alias", t.Name), zap.String("zone", t.Zone))
		removed++
	}
	return removed
}

// writerFor finds the configured writer of an entry: a rule with the same
// writer name whose zones contain the entry's name, preferring the rule
// that is responsible for the entry's domain now. A rule without zones (its
// zone found by an SOA lookup) qualifies only if its alias lies in the
// entry's zone and the entry lies under its alias: two rules may use two
// differently configured providers of the same module.
func (p *Provider) writerFor(e JournalEntry) Writer {
	fits := func(r *Rule) bool {
		if r == nil || r.WriterName != e.Writer {
			return false
		}
		if len(r.Zones) > 0 {
			return r.zoneOf(e.Name) == Normalize(e.Zone)
		}
		suffix := r.Alias.Suffix()
		return suffix != "" && InZone(suffix, e.Zone) && InZone(e.Name, suffix)
	}
	if r, err := p.Mapper.Rule(e.Domain); err == nil && fits(r) {
		return r.Writer
	}
	for _, r := range append([]*Rule{p.Mapper.Default}, p.Mapper.Rules...) {
		if fits(r) {
			return r.Writer
		}
	}
	return nil
}

func (p *Provider) presentsEntry(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.presented {
		if pr.journalID == id {
			return true
		}
	}
	return false
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
