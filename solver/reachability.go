package solver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"
)

// Reachability records since when the journal's storage has been seen
// reachable: the first of an unbroken run of successful operations, none
// failed since and none more than MaxGap after the one before. A sweep
// counts an entry's age from no earlier than that moment: an entry is stale
// only if its owner had a fair chance to renew it, and during an outage (or
// a gap in which this process saw nothing, say while it was stopped) no
// owner had one. An owner renews every third of sweep_after, so a sweeper
// that has seen the storage reachable for sweep_after has seen every live
// owner's renewal land, unless that owner could not reach the storage
// itself; such an owner writes back what a sweep took (Sweeper.Restore).
type Reachability struct {
	// MaxGap is the longest time between two observations that still
	// counts as one unbroken run; zero means no limit. The journal's
	// rounds observe the storage every third of sweep_after at most.
	MaxGap time.Duration

	mu      sync.Mutex
	since   time.Time // start of the current run; zero while failing or before any success
	last    time.Time // the last observation
	lastErr error     // the failure that ended the last run, nil if none
}

// Observe records the outcome of one storage operation at now. A missing
// key is an answer, so a success; the end of the caller's own context is
// no observation at all.
func (r *Reachability) Observe(now time.Time, err error) {
	if r == nil || errors.Is(err, context.Canceled) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.since, r.lastErr = time.Time{}, err
	} else if r.since.IsZero() || (r.MaxGap > 0 && now.Sub(r.last) > r.MaxGap) {
		r.since = now
	}
	if now.After(r.last) {
		r.last = now
	}
}

// Since returns the start of the current unbroken run of successful
// observations, or an error saying why there is none: the storage's last
// failure, or that it was not observed within MaxGap of now.
func (r *Reachability) Since(now time.Time) (time.Time, error) {
	if r == nil {
		return time.Time{}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.since.IsZero() && r.lastErr != nil:
		return time.Time{}, fmt.Errorf("storage unreachable: %w", r.lastErr)
	case r.since.IsZero():
		return time.Time{}, errors.New("storage not reached yet")
	case r.MaxGap > 0 && now.Sub(r.last) > r.MaxGap:
		return time.Time{}, fmt.Errorf("storage not observed for %s", now.Sub(r.last).Round(time.Millisecond))
	}
	return r.since, nil
}
