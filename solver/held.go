package solver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Held values are TXT values a caller keeps in an alias zone beyond one
// challenge (the acme-dns endpoint's account values): each has a journal
// entry under an ID made of its name and value, leased for as long as the
// caller wants it kept, and no presentation of this process. So a process
// that exits leaves them in DNS and in the journal, the next one (or
// another instance on the same storage) finds them with Holding, and
// the sweep removes them once nobody renews them (Rehold) within the lease.

// HeldValues are the held values of a Provider's zones.
type HeldValues struct{ p *Provider }

// Held returns p's held values.
func (p *Provider) Held() HeldValues { return HeldValues{p} }

// heldIDPrefix marks the journal IDs of held values.
const heldIDPrefix = "held-"

// heldID is the journal ID of value at name: the same on every instance,
// so that any of them renews or removes the entry another wrote.
func heldID(name, value string) string {
	sum := sha256.Sum256([]byte(Normalize(name) + " " + value))
	return heldIDPrefix + hex.EncodeToString(sum[:16])
}

// nameTarget checks a write of value at name, an alias name the caller
// was told (Hold, PresentAt), and returns its place in the default rule's
// zones.
func (h HeldValues) target(name, value string) (Target, error) {
	p := h.p
	name = Normalize(name)
	rule := p.Mapper.Default
	if rule == nil || len(rule.Zones) == 0 {
		return Target{}, fmt.Errorf("refusing to write TXT %s: no alias zone configured", name)
	}
	if err := ValidName(name + "."); err != nil {
		return Target{}, fmt.Errorf("refusing to write TXT %s: %w", name, err)
	}
	zone := rule.zoneOf(name)
	if zone == "" || zone == name {
		return Target{}, fmt.Errorf("refusing to write TXT %s: outside alias zones %s", name, strings.Join(rule.Zones, ", "))
	}
	if err := ValidDigest(value); err != nil {
		return Target{}, fmt.Errorf("refusing to write TXT %s: %w", name, err)
	}
	return Target{Domain: name, Name: name, Zone: zone, Rule: rule}, nil
}

// Hold writes value at name (inside the default rule's zones) as a held
// value, leased for lease, and waits until every authoritative server of
// the zone serves it: at most AuthoritativeWait, and no longer than ctx
// allows. The value is written when Hold returns no error; served says
// whether every server answered it in time (a caller answering a client
// with a deadline of its own lets the client's propagation check finish
// the wait). A write that failed is removed again, journal entry and all.
func (h HeldValues) Hold(ctx context.Context, name, value string, lease time.Duration) (served bool, err error) {
	p := h.p
	t, err := h.target(name, value)
	if err != nil {
		return false, err
	}
	now := p.clock()
	entry := JournalEntry{ID: heldID(t.Name, value), Domain: t.Name, Zone: t.Zone, Name: t.Name, Type: "TXT", Value: value,
		Writer: t.Rule.WriterName, Written: now, Seen: now, Lease: lease}
	if p.Journal != nil {
		if err := p.Journal.Put(ctx, entry); err != nil {
			return false, fmt.Errorf("recording TXT %s in the journal before writing it: %w", t.Name, err)
		}
	}
	rec := libdns.TXT{Name: libdns.RelativeName(FQDN(t.Name), FQDN(t.Zone)), Text: value}
	err = retry(ctx, func(ctx context.Context) error {
		unlock, err := p.names.lock(ctx, t.Zone, t.Name)
		if err != nil {
			return err
		}
		defer unlock()
		_, err = t.Rule.Writer.AppendRecords(ctx, FQDN(t.Zone), []libdns.Record{rec})
		return err
	})
	if p.Observer != nil {
		p.Observer.Wrote(err)
	}
	if err != nil {
		err = fmt.Errorf("writing TXT %s in alias zone %s through %s: %w", t.Name, t.Zone, t.Rule.WriterName, err)
		// The write may have landed: remove it once, on a context of
		// its own; if that fails too, the entry stays for the sweep.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if uerr := h.Unhold(uctx, t.Name, value); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return false, err
	}
	if p.AuthoritativeWait <= 0 {
		return true, nil
	}
	wroteAt := p.clock()
	wctx, cancel := context.WithTimeout(ctx, p.AuthoritativeWait)
	_, werr := p.Mapper.Resolver.Authorities().WaitServed(wctx, t.Zone, t.Name, value)
	cancel()
	if werr != nil {
		p.logger().Info("held value written, not yet served by every authoritative server of its zone",
			zap.String("name", t.Name), zap.String("zone", t.Zone), zap.String("value", value), zap.Error(werr))
		return false, nil
	}
	if p.Observer != nil {
		p.Observer.Served(p.clock().Sub(wroteAt))
	}
	return true, nil
}

// Unhold removes the held value at name: its journal entry first (so that
// no sweep acts on it again), then the record, whose entry comes back if
// the delete fails.
func (h HeldValues) Unhold(ctx context.Context, name, value string) error {
	p := h.p
	t, err := h.target(name, value)
	if err != nil {
		return err
	}
	entry := JournalEntry{ID: heldID(t.Name, value), Domain: t.Name, Zone: t.Zone, Name: t.Name, Type: "TXT", Value: value,
		Writer: t.Rule.WriterName, Written: p.clock()}
	if p.Journal != nil {
		if err := p.Journal.Delete(ctx, entry.ID); err != nil {
			return fmt.Errorf("dropping the journal entry of TXT %s: %w", t.Name, err)
		}
	}
	rec := libdns.TXT{Name: libdns.RelativeName(FQDN(t.Name), FQDN(t.Zone)), Text: value}
	err = retry(ctx, func(ctx context.Context) error {
		return p.names.delete(ctx, t.Rule.Writer, t.Zone, t.Name, []libdns.Record{rec})
	})
	if p.Observer != nil {
		p.Observer.Deleted(err)
	}
	if err != nil {
		err = fmt.Errorf("deleting TXT %s in alias zone %s through %s: %w", t.Name, t.Zone, t.Rule.WriterName, err)
		// Back for the sweep, sweep_after from now.
		if p.Journal != nil {
			if perr := p.Journal.Put(context.WithoutCancel(ctx), entry); perr != nil {
				err = errors.Join(err, fmt.Errorf("putting its journal entry back: %w", perr))
			}
		}
		return err
	}
	return nil
}

// Holding lists the held values in the default rule's zones, from the
// journal: what this process, the one before it, or another instance on
// the same storage holds. Entries that fail ValidateEntry, or whose ID
// does not match their name and value, are left out.
func (h HeldValues) Holding(ctx context.Context) ([]JournalEntry, error) {
	p := h.p
	if p.Journal == nil || p.Mapper.Default == nil {
		return nil, nil
	}
	entries, err := p.Journal.List(ctx)
	var out []JournalEntry
	for _, e := range entries {
		if !strings.HasPrefix(e.ID, heldIDPrefix) || e.ID != heldID(e.Name, e.Value) || ValidateEntry(e) != nil ||
			p.Mapper.Default.zoneOf(e.Name) != e.Zone {
			continue
		}
		out = append(out, e)
	}
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("reading the held values from the journal: %w", err)
	}
	return out, nil
}

// Rehold renews the lease of the held value at name, written at written,
// for lease from now, so that no sweep takes it.
func (h HeldValues) Rehold(ctx context.Context, name, value string, written time.Time, lease time.Duration) error {
	p := h.p
	t, err := h.target(name, value)
	if err != nil || p.Journal == nil {
		return err
	}
	return p.Journal.Put(ctx, JournalEntry{ID: heldID(t.Name, value), Domain: t.Name, Zone: t.Zone, Name: t.Name, Type: "TXT", Value: value,
		Writer: t.Rule.WriterName, Written: written, Seen: p.clock(), Lease: lease})
}

// PresentAt writes value at name as a presentation of this process, as a
// challenge write is made: journalled, renewed while the process lives,
// withdrawn at its exit, written back if a sweep took it during a storage
// outage (Restore). DeleteRecords with the same name and value removes it.
// Unlike Hold, the value does not outlive the process that wrote it.
func (p *Provider) PresentAt(ctx context.Context, name, value string) error {
	t, err := p.Held().target(name, value)
	if err != nil {
		return err
	}
	_, err = p.presentTarget(ctx, t, t.Name, libdns.RR{Name: t.Name, Type: "TXT", Data: value})
	return err
}
