package solver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Provider is a libdns provider that moves ACME challenge records onto alias
// names: the write path. certmagic hands it _acme-challenge records in the
// production zone; it writes them at the mapped alias through the rule's
// Writer and returns them under their absolute alias name (with a trailing
// dot, which libdns' AbsoluteName keeps as it is) so that certmagic's
// propagation check looks at the alias directly, however many CNAME hops
// lead there. It deletes exactly what it wrote. Its journal entries are
// renewed and swept by a Sweeper.
type Provider struct {
	Mapper *Mapper
	Logger *zap.Logger
	// AuthoritativeWait, if positive, makes each write wait, up to this
	// long, until every authoritative server of the alias zone serves the
	// value; a write that does not get there is removed again and fails.
	// With it, certmagic's own propagation check (a fixed 2 s sleep, then
	// polling) adds nothing and can be switched off.
	AuthoritativeWait time.Duration
	// RecursiveWait, if positive, makes a write at an alias name that
	// carries, or lately carried, another challenge value also wait, up to
	// this long, until the Mapper's resolvers answer with the new value
	// and a TTL has passed since the write: a recursive resolver (the
	// CA's among them, which the provider cannot ask) may hold the name's
	// earlier TXT set in its cache for the record's TTL. It is set where
	// certmagic's propagation check is off.
	RecursiveWait time.Duration
	// Journal, if set, records every write before it happens and forgets it
	// after the delete, so that a Sweeper can remove what a crash left
	// behind.
	Journal Journal
	// Observer, if set, is told of every write, delete and wait (metrics).
	Observer Observer
	// Memo, if set, holds the passes of the gate's whole check, which
	// stand in for the write's own resolve of the same obtain.
	Memo *Memo

	// names serialises the writers' calls at each alias name.
	names nameLocks
	reg   presentations
	now   func() time.Time
}

// Observer is told what the provider does, for metrics. Its methods must
// be quick and safe for concurrent use.
type Observer interface {
	// Wrote reports a challenge write through the inner provider.
	Wrote(err error)
	// Deleted reports the delete of a challenge record.
	Deleted(err error)
	// Served reports how long after its write every authoritative server
	// of the alias zone served a record.
	Served(d time.Duration)
}

func (p *Provider) logger() *zap.Logger {
	if p.Logger == nil {
		return zap.NewNop()
	}
	return p.Logger
}

func (p *Provider) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// AppendRecords writes each challenge TXT record at its alias. Anything that
// is not a TXT record at an _acme-challenge name is refused before anything
// is written; if a later record of the batch fails, the earlier ones are
// removed again.
func (p *Provider) AppendRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	for _, rec := range records {
		if _, err := challengeDomain(zone, rec.RR()); err != nil {
			return nil, err
		}
	}
	var out []libdns.Record
	for _, rec := range records {
		rr := rec.RR()
		stored, err := p.present(ctx, zone, rr)
		if err != nil {
			if _, rbErr := p.DeleteRecords(ctx, zone, out); rbErr != nil {
				err = errors.Join(err, rbErr)
			}
			return nil, err
		}
		out = append(out, stored)
	}
	return out, nil
}

// challengeDomain returns the domain whose challenge rr is, or an error naming
// rr if it is not a TXT record at an _acme-challenge name.
func challengeDomain(zone string, rr libdns.RR) (string, error) {
	original := Normalize(libdns.AbsoluteName(rr.Name, zone))
	if rr.Type != "TXT" {
		return "", fmt.Errorf("refusing to write %s record %s: the alias provider writes only ACME challenge TXT records", rr.Type, original)
	}
	domain, err := ChallengeDomain(original)
	if err != nil {
		return "", fmt.Errorf("refusing to write TXT %s: %w", original, err)
	}
	// The sweep acts only on journal entries with a digest's shape: a
	// value without it, once written, would be an orphan no sweep removes.
	if err := ValidDigest(rr.Data); err != nil {
		return "", fmt.Errorf("refusing to write TXT %s: %w", original, err)
	}
	return domain, nil
}

func (p *Provider) present(ctx context.Context, zone string, rr libdns.RR) (libdns.Record, error) {
	original := Normalize(libdns.AbsoluteName(rr.Name, zone))
	domain, err := challengeDomain(zone, rr)
	if err != nil {
		return nil, err
	}
	target, err := p.mapDomain(ctx, domain)
	if err != nil {
		return nil, err
	}
	if !InZone(target.Name, target.Zone) {
		return nil, fmt.Errorf("refusing to write TXT %s for %s: outside alias zone %s", target.Name, domain, target.Zone)
	}
	return p.presentTarget(ctx, target, original, rr)
}

// PresentAt writes value at name, a name inside one of the default rule's
// zones, through that rule's writer, as every challenge write is made
// (journal, one record per value, the authoritative wait), for a caller
// that is told the alias name itself rather than a production domain: the
// acme-dns endpoint, whose accounts each own one name. DeleteRecords with
// the same name and value removes it. The journal entry's domain is name.
func (p *Provider) PresentAt(ctx context.Context, name, value string) error {
	name = Normalize(name)
	rule := p.Mapper.Default
	if rule == nil || len(rule.Zones) == 0 {
		return fmt.Errorf("refusing to write TXT %s: no alias zone configured", name)
	}
	if err := ValidName(name + "."); err != nil {
		return fmt.Errorf("refusing to write TXT %s: %w", name, err)
	}
	zone := rule.zoneOf(name)
	if zone == "" || zone == name {
		return fmt.Errorf("refusing to write TXT %s: outside alias zones %s", name, strings.Join(rule.Zones, ", "))
	}
	if err := ValidDigest(value); err != nil {
		return fmt.Errorf("refusing to write TXT %s: %w", name, err)
	}
	_, err := p.presentTarget(ctx, Target{Domain: name, Name: name, Zone: zone, Rule: rule}, name, libdns.RR{Name: name, Type: "TXT", Data: value})
	return err
}

// presentTarget writes rr at target, the checked mapping of the challenge
// name original.
func (p *Provider) presentTarget(ctx context.Context, target Target, original string, rr libdns.RR) (libdns.Record, error) {
	domain := target.Domain
	key := presentedKey{target.Name, rr.Data}
	entry := JournalEntry{ID: newJournalID(), Domain: domain, Zone: target.Zone, Name: target.Name, Type: "TXT", Value: rr.Data,
		Writer: target.Rule.WriterName, Written: p.clock()}
	pr := &presentation{target: target, original: original, value: rr.Data, refs: 1, since: entry.Written, journalID: entry.ID, done: make(chan struct{})}
	existing, shared := p.reg.claim(key, pr, entry.Written)
	if existing != nil {
		if err := p.reg.await(ctx, existing, domain); err != nil {
			return nil, err
		}
		return aliasRecord(target.Name, rr), nil
	}
	written, ttl, err := p.write(ctx, pr, entry, rr, shared)
	p.reg.settle(key, pr, written, ttl, err)
	if err != nil {
		return nil, err
	}
	if p.Journal != nil {
		// The write is done: a renewal now, not at the next round, so
		// that the entry's age counts from the end of a long write.
		entry.Seen = p.clock()
		if err := p.putEntry(ctx, pr, entry); err != nil {
			p.logger().Warn("renewing the challenge journal entry after the write; the next renewal will", zap.String("domain", domain), zap.Error(err))
		}
	}
	// The value (the ACME digest, public in DNS anyway) lets an operator
	// match each instance's writes and deletes with the DNS server's
	// update log, as the cluster tests do.
	p.logger().Info("presented challenge on alias",
		zap.String("domain", domain),
		zap.String("alias", target.Name),
		zap.String("zone", target.Zone),
		zap.String("value", rr.Data),
		zap.String("provider", target.Rule.WriterName))
	return aliasRecord(target.Name, rr), nil
}

// write journals entry, writes rr at its target and waits until the alias
// zone serves it, and, if the name is shared, until the resolvers answer
// it; a write that fails or does not propagate is undone. It returns what
// the writer wrote and the TTL the alias zone serves it with.
func (p *Provider) write(ctx context.Context, pr *presentation, entry JournalEntry, rr libdns.RR, shared bool) ([]libdns.Record, time.Duration, error) {
	target, domain := pr.target, entry.Domain
	if p.Journal != nil {
		if err := p.Journal.Put(ctx, entry); err != nil {
			return nil, 0, fmt.Errorf("recording the challenge of %s in the journal before writing it: %w", domain, err)
		}
	}
	inner := libdns.TXT{Name: libdns.RelativeName(FQDN(target.Name), FQDN(target.Zone)), TTL: rr.TTL, Text: rr.Data}
	written, err := p.appendWritten(ctx, target, []libdns.Record{inner})
	if p.Observer != nil {
		p.Observer.Wrote(err)
	}
	if err != nil {
		// The write may have happened even though it reported failure.
		err = fmt.Errorf("writing TXT %s in alias zone %s for %s through %s: %w", target.Name, target.Zone, domain, target.Rule.WriterName, err)
		return nil, 0, p.undo(ctx, pr, []libdns.Record{inner}, err, err)
	}
	if len(written) == 0 {
		written = []libdns.Record{inner}
	}
	if p.AuthoritativeWait <= 0 {
		return written, 0, nil
	}
	wroteAt := p.clock()
	wctx, cancel := context.WithTimeout(ctx, p.AuthoritativeWait)
	ttl, err := p.Mapper.Resolver.Authorities().WaitServed(wctx, target.Zone, target.Name, rr.Data)
	cancel()
	if err != nil {
		err = fmt.Errorf("waiting for the alias zone %s to serve the challenge of %s: %w", target.Zone, domain, err)
		return nil, 0, p.undo(ctx, pr, written, err, nil)
	}
	if p.Observer != nil {
		p.Observer.Served(p.clock().Sub(wroteAt))
	}
	if shared && p.RecursiveWait > 0 {
		bound := p.clock().Add(p.RecursiveWait)
		wctx, cancel := context.WithDeadline(ctx, bound)
		err := p.Mapper.Resolver.WaitRecursive(wctx, target.Name, rr.Data)
		cancel()
		if until := wroteAt.Add(ttl); err == nil {
			if until.After(bound) {
				until = bound
			}
			// A resolver the provider cannot ask, the CA's, may have
			// cached the name's TXT set without the new value just
			// before the write, and may answer it for the TTL the zone
			// serves: until is a TTL after the write, bounded by
			// RecursiveWait, beyond which the write goes ahead.
			err = Sleep(ctx, until.Sub(p.clock()))
		}
		if err != nil {
			err = fmt.Errorf("waiting for the resolvers to answer the challenge of %s at %s, which other challenges use too: %w", domain, target.Name, err)
			p.reg.removed(target.Name, ttl, p.clock())
			return nil, 0, p.undo(ctx, pr, written, err, nil)
		}
	}
	return written, ttl, nil
}

// appendWritten appends recs at the target through its writer, under the
// name's lock, retrying transient failures, and returns what the writer
// wrote.
func (p *Provider) appendWritten(ctx context.Context, t Target, recs []libdns.Record) ([]libdns.Record, error) {
	var written []libdns.Record
	err := retry(ctx, func(ctx context.Context) error {
		unlock, err := p.names.lock(ctx, t.Zone, t.Name)
		if err != nil {
			return err
		}
		defer unlock()
		written, err = t.Rule.Writer.AppendRecords(ctx, FQDN(t.Zone), recs)
		return err
	})
	return written, err
}

// mapDomain finds where the challenge of domain is written: Mapper.Resolve,
// the chain and the confinement to the alias zones, the last line of
// defence after the gate. A pass of the gate's whole check moments ago,
// for the domain or its wildcard (one challenge name), stands in for it:
// the gate asked the production zone's nameservers and CAA for this
// obtain, and the write asks nothing again.
func (p *Provider) mapDomain(ctx context.Context, domain string) (Target, error) {
	if p.Memo != nil {
		for _, name := range []string{domain, "*." + domain} {
			if target, ok := p.Memo.Recall(name); ok {
				return target, nil
			}
		}
	}
	return p.Mapper.Resolve(ctx, domain)
}

func aliasRecord(name string, rr libdns.RR) libdns.Record {
	return libdns.TXT{Name: FQDN(name), TTL: rr.TTL, Text: rr.Data}
}

// GetRecords lists the challenge records this process presents for domains in
// zone, under their alias names. It reads nothing from the alias zone: the
// wrapper answers only for what it wrote.
func (p *Provider) GetRecords(_ context.Context, zone string) ([]libdns.Record, error) {
	return p.reg.records(zone), nil
}

// SetRecords presents the given challenge records that are not presented yet.
// Unlike a plain libdns SetRecords it never replaces the TXT set at a name
// (nor deletes the values of it not given): other challenges' values there
// must survive.
func (p *Provider) SetRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	var missing []libdns.Record
	for _, rec := range records {
		rr := rec.RR()
		name := Normalize(libdns.AbsoluteName(rr.Name, zone))
		if !p.reg.isPresented(name, rr.Data) {
			missing = append(missing, rec)
		}
	}
	if _, err := p.AppendRecords(ctx, zone, missing); err != nil {
		return nil, err
	}
	return records, nil
}

// Presented lists the challenge records currently presented, oldest first.
func (p *Provider) Presented() []Presented { return p.reg.list() }

// Interface guards: Caddy's global dns option demands all four.
var (
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
)
