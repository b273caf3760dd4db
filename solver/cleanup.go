package solver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

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
		key, pr, last := p.reg.take(name, rr.Data)
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
			p.reg.restore(key, pr)
		} else {
			p.reg.removed(t.Name, pr.ttl, p.clock())
		}
		p.reg.retired(pr)
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
		return p.names.delete(ctx, t.Rule.Writer, t.Zone, t.Name, written)
	})
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
		p.names.delete(ctx, t.Rule.Writer, t.Zone, t.Name, written)
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
	pr.forgotten.Store(true)
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
	if pr.forgotten.Load() {
		p.dropEntry(ctx, e.ID)
		return nil
	}
	return err
}
