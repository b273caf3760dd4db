package solver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// Missed reports whether a renewal failed since the last successful
// Restore.
func (s *Sweeper) Missed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missed
}

// Restore renews this process's entries after a renewal failed, and writes
// back what a sweep took meanwhile: while this process could not reach the
// storage, a sweep that could (on another instance) may have found its
// entries unrenewed for sweep_after, removed each entry and then its
// record. A presented value whose entry is gone is written again through
// its writer, with the records as first written (same TTL), and its entry
// stored again. Call it under the sweep lock, which every sweep holds from
// its listing to its last record delete: an entry missing then is one a
// sweep finished with. It returns how many values it wrote back.
func (s *Sweeper) Restore(ctx context.Context) (int, error) {
	p := s.p
	if p.Journal == nil {
		return 0, nil
	}
	entries, err := s.list(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the challenge journal to find this process's entries: %w", err)
	}
	listed := make(map[string]bool, len(entries))
	for _, e := range entries {
		listed[e.ID] = true
	}
	written := make(map[*presentation]bool)
	for _, pr := range p.reg.written() {
		written[pr] = true
	}
	if s.rewrite == nil {
		s.rewrite = make(map[string]bool)
	}
	restored := 0
	var errs []error
	inFlight := p.reg.inFlight()
	for id := range s.rewrite {
		if !slices.ContainsFunc(inFlight, func(pr *presentation) bool { return pr.journalID == id }) {
			delete(s.rewrite, id) // its challenge is over
		}
	}
	for _, pr := range inFlight {
		// The entry first, as a write journals before writing: a crash
		// in between leaves an entry for a sweep.
		if err := p.putEntry(ctx, pr, s.entryOf(pr)); err != nil {
			errs = append(errs, err)
			continue
		}
		// Only a finished write that is still presented is written
		// again: a write under way has its own authoritative wait, and
		// a delete under way wants the value gone.
		if (listed[pr.journalID] && !s.rewrite[pr.journalID]) || !written[pr] || pr.forgotten.Load() {
			continue
		}
		t := pr.target
		if _, err := p.appendWritten(ctx, t, pr.written); err != nil {
			// Its entry is listed from now on: remember the value.
			s.rewrite[pr.journalID] = true
			errs = append(errs, fmt.Errorf("writing back TXT %s in alias zone %s for %s, which a sweep removed: %w", t.Name, t.Zone, t.Domain, err))
			continue
		}
		p.logger().Warn("wrote back a challenge value that a sweep removed while this process could not renew its journal entry",
			zap.String("domain", t.Domain), zap.String("name", t.Name), zap.String("zone", t.Zone), zap.String("value", pr.value))
		delete(s.rewrite, pr.journalID)
		restored++
	}
	err = errors.Join(errs...)
	if err == nil {
		s.mu.Lock()
		s.missed = false
		s.mu.Unlock()
	}
	return restored, err
}
