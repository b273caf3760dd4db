package solver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Provider is a libdns provider that moves ACME challenge records onto alias
// names. certmagic hands it _acme-challenge records in the production zone;
// it writes them at the mapped alias through the rule's Writer and returns
// them under their absolute alias name (with a trailing dot, which libdns'
// AbsoluteName keeps as it is) so that certmagic's propagation check looks at
// the alias directly, however many CNAME hops lead there.
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
	// after the delete, so that Sweep can remove what a crash left behind.
	Journal Journal
	// Observer, if set, is told of every write, delete and wait (metrics).
	Observer Observer

	// names serialises the writers' calls at each alias name.
	names     nameLocks
	mu        sync.Mutex
	presented map[presentedKey]*presentation
	// retiring holds, by journal ID, the presentations whose delete is
	// under way: still in flight for Renew and Sweep.
	retiring map[string]*presentation
	warned   map[string]bool // journal keys Sweep has warned about
	// cachedUntil holds, by alias name, until when a recursive resolver
	// may answer from its cache a TXT set of that name that a value since
	// removed was part of.
	cachedUntil map[string]time.Time
	verified    map[string]verified // by identifier (wildcards with "*.")
	now         func() time.Time
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

type presentedKey struct{ name, value string }

// presentation is one challenge value this process wrote. Deleting uses the
// name recorded here, never a fresh resolution of the chain: a CNAME that
// changed meanwhile must not send the delete elsewhere.
//
// A presentation is registered, with its journal ID, before its journal
// entry is stored, and stays registered (in presented, then in retiring)
// until its delete finishes: for its whole life Renew renews the entry and
// Sweep passes it by.
type presentation struct {
	target    Target
	original  string          // challenge name in the production zone
	value     string          // the TXT value
	written   []libdns.Record // as the inner provider returned them; set when done closes
	refs      int
	since     time.Time
	journalID string
	ttl       time.Duration // the largest TTL the alias zone served it with
	// forgotten is set (under the provider's mu) before the entry is
	// dropped once its record is handled: a journal write racing the drop
	// (Renew's) sees it afterwards and drops the entry again, or a sweep
	// would delete the value later, when another challenge may present
	// it.
	forgotten bool
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

	p.mu.Lock()
	if pr, ok := p.presented[key]; ok {
		// The same value at the same name: one record, deleted when its
		// last user deletes it, and one journal entry.
		pr.refs++
		p.mu.Unlock()
		if err := p.awaitWrite(ctx, pr, domain); err != nil {
			return nil, err
		}
		return aliasRecord(target.Name, rr), nil
	}
	entry := JournalEntry{ID: newJournalID(), Domain: domain, Zone: target.Zone, Name: target.Name, Type: "TXT", Value: rr.Data,
		Writer: target.Rule.WriterName, Written: p.clock(), Lease: p.LongestPresent()}
	pr := &presentation{target: target, original: original, value: rr.Data, refs: 1, since: entry.Written, journalID: entry.ID, done: make(chan struct{})}
	shared := p.sharedLocked(target.Name, entry.Written)
	if p.presented == nil {
		p.presented = make(map[presentedKey]*presentation)
	}
	p.presented[key] = pr
	p.mu.Unlock()

	written, ttl, err := p.write(ctx, pr, entry, rr, shared)
	p.mu.Lock()
	pr.written, pr.err, pr.ttl = written, err, ttl
	if err != nil && p.presented[key] == pr {
		delete(p.presented, key)
	}
	p.mu.Unlock()
	close(pr.done)
	if err != nil {
		return nil, err
	}
	if p.Journal != nil {
		// The write is done: the entry's lease drops from the longest
		// present to sweep_after now, not at the next renewal, so that a
		// crash right after the write leaves an orphan for no longer than
		// one after a renewal.
		entry.Lease, entry.Seen = 0, p.clock()
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

// LongestPresent bounds how long a present can take from storing its
// journal entry to the end of its wait for the authoritative servers: the
// write's retries (a caller without a deadline gets retryBudget) and
// AuthoritativeWait. An entry is leased for that long while its write is
// under way, on top of its renewals, so that no sweep can take it.
func (p *Provider) LongestPresent() time.Duration {
	return retryBudget + p.AuthoritativeWait
}

// awaitWrite waits for the write of a presentation another call started,
// and returns its failure. A caller that gives up drops its reference.
func (p *Provider) awaitWrite(ctx context.Context, pr *presentation, domain string) error {
	select {
	case <-pr.done:
	case <-ctx.Done():
		p.mu.Lock()
		pr.refs--
		p.mu.Unlock()
		return fmt.Errorf("waiting for a concurrent write of the same challenge value of %s: %w", domain, ctx.Err())
	}
	if pr.err != nil {
		return fmt.Errorf("a concurrent write of the same challenge value of %s failed: %w", domain, pr.err)
	}
	return nil
}

// sharedLocked reports whether a recursive resolver may hold a TXT set of
// the alias name without a value written now: another value is presented
// there (or being deleted), or was until lately. p.mu is held.
func (p *Provider) sharedLocked(name string, now time.Time) bool {
	for k := range p.presented {
		if k.name == name {
			return true
		}
	}
	for _, pr := range p.retiring {
		if pr.target.Name == name {
			return true
		}
	}
	return now.Before(p.cachedUntil[name])
}

// removed notes that a value at name, served with ttl, is gone now: a
// resolver may keep answering the set it was part of for that long.
func (p *Provider) removed(name string, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	for n, until := range p.cachedUntil {
		if !now.Before(until) {
			delete(p.cachedUntil, n)
		}
	}
	if until := now.Add(ttl); until.After(now) && until.After(p.cachedUntil[name]) {
		if p.cachedUntil == nil {
			p.cachedUntil = make(map[string]time.Time)
		}
		p.cachedUntil[name] = until
	}
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
	var written []libdns.Record
	err := retry(ctx, func(ctx context.Context) error {
		unlock, err := p.names.lock(ctx, target.Zone, target.Name)
		if err != nil {
			return err
		}
		defer unlock()
		written, err = target.Rule.Writer.AppendRecords(ctx, FQDN(target.Zone), []libdns.Record{inner})
		return err
	})
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
	ttl, err := p.Mapper.Resolver.WaitServed(wctx, target.Zone, target.Name, rr.Data)
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
			err = p.waitCachedSets(ctx, until)
		}
		if err != nil {
			err = fmt.Errorf("waiting for the resolvers to answer the challenge of %s at %s, which other challenges use too: %w", domain, target.Name, err)
			p.removed(target.Name, ttl)
			return nil, 0, p.undo(ctx, pr, written, err, nil)
		}
	}
	return written, ttl, nil
}

// waitCachedSets waits until until, or ctx's end (its error). A resolver the
// provider cannot ask, the CA's, may have cached a shared name's TXT set
// without the new value just before the write, and may answer it for the
// TTL the zone serves: until is a TTL after the write, bounded by
// RecursiveWait, beyond which the write goes ahead.
func (p *Provider) waitCachedSets(ctx context.Context, until time.Time) error {
	return Sleep(ctx, until.Sub(p.clock()))
}

type verified struct {
	target Target
	at     time.Time
}

// VerifiedFor is how long a passed whole check stands in for the next one:
// the gate's (or the permission module's) for the gate and the write of the
// same obtain, seconds later.
const VerifiedFor = 30 * time.Second

// Remember notes that the whole delegation check of name (an identifier,
// "*." for a wildcard) passed, leading to target.
func (p *Provider) Remember(name string, target Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	for n, v := range p.verified {
		if now.Sub(v.at) >= VerifiedFor {
			delete(p.verified, n)
		}
	}
	if p.verified == nil {
		p.verified = make(map[string]verified)
	}
	p.verified[Normalize(name)] = verified{target, now}
}

// Recall returns the target of a pass of name's whole check within
// VerifiedFor.
func (p *Provider) Recall(name string) (Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.verified[Normalize(name)]
	if !ok || p.clock().Sub(v.at) >= VerifiedFor {
		return Target{}, false
	}
	return v.target, true
}

// mapDomain runs the write path's own delegation check, the last line of
// defence after the gate before the order: the chain and every
// authoritative server of the production zone. A pass of the gate's whole
// check moments ago, for the domain or its wildcard (one challenge name),
// stands in for it. Transient findings (a failed lookup, a silent
// nameserver) do not stop a write whose target resolved: the CA's
// validation is the judge then.
func (p *Provider) mapDomain(ctx context.Context, domain string) (Target, error) {
	for _, name := range []string{domain, "*." + domain} {
		if target, ok := p.Recall(name); ok {
			return target, nil
		}
	}
	target, rep := p.checker().Verify(ctx, domain, CheckWrite)
	err := rep.Err()
	if target.Name == "" {
		return target, err
	}
	if err != nil {
		p.logger().Warn("delegation check incomplete; writing the challenge anyway", zap.String("domain", domain), zap.Error(err))
	}
	return target, nil
}

func (p *Provider) checker() *Checker { return &Checker{Mapper: p.Mapper} }

func aliasRecord(name string, rr libdns.RR) libdns.Record {
	return libdns.TXT{Name: FQDN(name), TTL: rr.TTL, Text: rr.Data}
}

// DeleteRecords removes challenge records this process presented: only the
// exact value, only at the alias name it was written at. Other values at the
// same name (the wildcard's, another domain's) stay. A record this process
// did not present is passed over, as libdns asks of a record that does not
// exist (it is not in the result). A record without a value is refused:
// libdns reads it as every value at the name, which would take other
// challenges' values. Deleting one of several presents of the same value
// reports it deleted, though it stays until its last user deletes it.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	var deleted []libdns.Record
	var errs []error
	for _, rec := range records {
		rr := rec.RR()
		name := Normalize(libdns.AbsoluteName(rr.Name, zone))
		if rr.Data == "" {
			errs = append(errs, fmt.Errorf("refusing to delete every TXT value at %s: the alias provider deletes the values it presented, each by its value", name))
			continue
		}
		key, pr, last := p.take(name, rr.Data)
		if pr == nil {
			// After a restart, say: the journal's sweep removes what
			// the process before wrote.
			p.logger().Debug("TXT was not presented by this server; nothing deleted", zap.String("name", name), zap.String("value", rr.Data))
			continue
		}
		if !last {
			deleted = append(deleted, rec)
			continue
		}
		t := pr.target
		err := p.deleteWritten(ctx, t, pr.written)
		if p.Observer != nil {
			p.Observer.Deleted(err)
		}
		if err != nil {
			p.restore(key, pr)
		} else {
			p.removed(t.Name, pr.ttl)
		}
		p.retired(pr)
		if err != nil {
			p.logger().Error("could not delete challenge record; remove it by hand if this persists",
				zap.String("domain", t.Domain), zap.String("name", t.Name), zap.String("zone", t.Zone),
				zap.String("value", rr.Data), zap.Error(err))
			errs = append(errs, fmt.Errorf("deleting TXT %s in alias zone %s for %s through %s (remove it by hand if this persists): %w",
				t.Name, t.Zone, t.Domain, t.Rule.WriterName, err))
			continue
		}
		p.forget(ctx, pr)
		p.logger().Debug("deleted challenge from alias",
			zap.String("domain", t.Domain),
			zap.String("alias", t.Name),
			zap.String("zone", t.Zone),
			zap.String("value", rr.Data))
		deleted = append(deleted, rec)
	}
	return deleted, errors.Join(errs...)
}

// deleteWritten deletes records through the target's writer, retrying
// transient failures.
func (p *Provider) deleteWritten(ctx context.Context, t Target, written []libdns.Record) error {
	return retry(ctx, func(ctx context.Context) error {
		return p.deleteAt(ctx, t.Rule.Writer, t.Zone, t.Name, written)
	})
}

// deleteAt deletes records at name in zone through w, under the name's
// lock (see nameLocks).
func (p *Provider) deleteAt(ctx context.Context, w Writer, zone, name string, recs []libdns.Record) error {
	unlock, err := p.names.lock(ctx, zone, name)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = w.DeleteRecords(ctx, FQDN(zone), recs)
	return err
}

// undo removes a write that failed or did not propagate, on a context of
// its own (the challenge's may be what ended), and returns cause with any
// failure to remove it. writeErr is the write's error, nil if it succeeded.
// A write the server refused or never got is deleted once, just in case,
// and leaves nothing to report. A write that failed on the way (timeout,
// reset) may land after this delete: its journal entry stays, so that a
// sweep deletes it once more after sweep_after.
func (p *Provider) undo(ctx context.Context, pr *presentation, written []libdns.Record, cause, writeErr error) error {
	t := pr.target
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if writeErr != nil && !MayHaveTakenEffect(writeErr) {
		p.deleteAt(ctx, t.Rule.Writer, t.Zone, t.Name, written)
		p.forget(ctx, pr)
		return cause
	}
	if err := p.deleteWritten(ctx, t, written); err != nil {
		return errors.Join(cause, fmt.Errorf("removing TXT %s %q from %s again failed (remove it by hand): %w", t.Name, pr.value, t.Zone, err))
	}
	if writeErr == nil {
		p.forget(ctx, pr)
	}
	return cause
}

// forget drops the journal entry of pr once its record is gone; no later
// putEntry brings it back.
func (p *Provider) forget(ctx context.Context, pr *presentation) {
	if p.Journal == nil {
		return
	}
	p.mu.Lock()
	pr.forgotten = true
	p.mu.Unlock()
	p.dropEntry(ctx, pr.journalID)
}

func (p *Provider) dropEntry(ctx context.Context, id string) {
	if err := p.Journal.Delete(context.WithoutCancel(ctx), id); err != nil {
		p.logger().Warn("could not drop a challenge journal entry; a later sweep will", zap.String("id", id), zap.Error(err))
	}
}

// putEntry stores pr's journal entry e again (a renewal). If pr's record
// was handled and its entry forgotten before or during the Put, the entry
// is dropped again: the flag is set before forget's delete, so either that
// delete comes after this Put or this check sees the flag.
func (p *Provider) putEntry(ctx context.Context, pr *presentation, e JournalEntry) error {
	err := p.Journal.Put(ctx, e)
	p.mu.Lock()
	forgotten := pr.forgotten
	p.mu.Unlock()
	if forgotten {
		p.dropEntry(ctx, e.ID)
		return nil
	}
	return err
}

// take drops one reference to the presentation of value at name, which is
// either the alias name or the original challenge name. The presentation is
// moved from the table to the retiring ones once no reference is left; last
// reports that, so that exactly one caller deletes the record (decided
// under the lock), and then calls retired.
func (p *Provider) take(name, value string) (presentedKey, *presentation, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := presentedKey{name, value}
	pr, ok := p.presented[key]
	if !ok {
		for k, candidate := range p.presented {
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
		// the caller's retire.
		delete(p.presented, key)
		if p.retiring == nil {
			p.retiring = make(map[string]*presentation)
		}
		p.retiring[pr.journalID] = pr
	}
	return key, pr, pr.refs == 0
}

// retired ends the retirement that take began: pr's delete is over.
func (p *Provider) retired(pr *presentation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.retiring, pr.journalID)
}

func (p *Provider) restore(key presentedKey, pr *presentation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr.refs++
	p.presented[key] = pr
}

// GetRecords lists the challenge records this process presents for domains in
// zone, under their alias names. It reads nothing from the alias zone: the
// wrapper answers only for what it wrote.
func (p *Provider) GetRecords(_ context.Context, zone string) ([]libdns.Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []libdns.Record
	for k, pr := range p.presented {
		if pr.finished() && pr.err == nil && InZone(pr.original, zone) {
			out = append(out, libdns.TXT{Name: FQDN(k.name), Text: k.value})
		}
	}
	return out, nil
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
		if !p.isPresented(name, rr.Data) {
			missing = append(missing, rec)
		}
	}
	if _, err := p.AppendRecords(ctx, zone, missing); err != nil {
		return nil, err
	}
	return records, nil
}

func (p *Provider) isPresented(name, value string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr, ok := p.presented[presentedKey{name, value}]; ok && pr.finished() {
		return true
	}
	for k, pr := range p.presented {
		if pr.original == name && k.value == value && pr.finished() {
			return true
		}
	}
	return false
}

// Presented lists the challenge records currently presented, oldest first.
func (p *Provider) Presented() []Presented {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Presented, 0, len(p.presented))
	for _, pr := range p.presented {
		out = append(out, Presented{Domain: pr.target.Domain, Name: pr.target.Name, Zone: pr.target.Zone, Since: pr.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Interface guards: Caddy's global dns option demands all four.
var (
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
)
