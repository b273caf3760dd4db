package solver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	Put(ctx context.Context, e JournalEntry) error
	Delete(ctx context.Context, id string) error
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
}

func newJournalID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Sweep deletes the records of journal entries older than maxAge through
// the writer that wrote them, and then the entries. Younger entries may be
// challenges in flight, here or on another instance, and stay. It returns
// how many records it removed.
func (p *Provider) Sweep(ctx context.Context, maxAge time.Duration) (int, error) {
	if p.Journal == nil {
		return 0, nil
	}
	entries, err := p.Journal.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the challenge journal: %w", err)
	}
	removed := 0
	now := p.clock()
	for _, e := range entries {
		if now.Sub(e.Written) < maxAge || p.presentsEntry(e.ID) {
			continue
		}
		w := p.writerFor(e)
		if w == nil {
			p.logger().Warn("orphaned challenge record has no configured writer; remove it by hand",
				zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("writer", e.Writer), zap.String("value", e.Value))
			continue
		}
		rec := libdns.TXT{Name: libdns.RelativeName(FQDN(e.Name), FQDN(e.Zone)), Text: e.Value}
		if err := retry(ctx, func(ctx context.Context) error {
			_, err := w.DeleteRecords(ctx, FQDN(e.Zone), []libdns.Record{rec})
			return err
		}); err != nil {
			p.logger().Error("could not remove orphaned challenge record; remove it by hand",
				zap.String("name", e.Name), zap.String("zone", e.Zone), zap.String("value", e.Value), zap.Error(err))
			continue
		}
		if err := p.Journal.Delete(ctx, e.ID); err != nil {
			p.logger().Warn("removed orphaned challenge record but not its journal entry", zap.String("id", e.ID), zap.Error(err))
		}
		p.logger().Info("removed orphaned challenge record",
			zap.String("domain", e.Domain), zap.String("name", e.Name), zap.String("zone", e.Zone), zap.Time("written", e.Written))
		removed++
	}
	return removed, nil
}

// writerFor finds the configured writer of an entry: same writer name, and
// the entry's zone among the rule's zones (or a rule that finds its zone).
func (p *Provider) writerFor(e JournalEntry) Writer {
	rules := p.Mapper.Rules
	if p.Mapper.Default != nil {
		rules = append([]*Rule{p.Mapper.Default}, rules...)
	}
	for _, r := range rules {
		if r.WriterName != e.Writer {
			continue
		}
		if len(r.Zones) == 0 || r.zoneOf(e.Name) == Normalize(e.Zone) {
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
