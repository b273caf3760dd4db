package solver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
)

// hookWriter runs a hook before each call of the wrapped writer (outside
// its lock, so that the hook may use the writer).
type hookWriter struct {
	*fakeWriter
	beforeAppend, beforeDelete func()
}

func (h *hookWriter) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if f := h.beforeAppend; f != nil {
		h.beforeAppend = nil
		f()
	}
	return h.fakeWriter.AppendRecords(ctx, zone, recs)
}

func (h *hookWriter) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if f := h.beforeDelete; f != nil {
		h.beforeDelete = nil
		f()
	}
	return h.fakeWriter.DeleteRecords(ctx, zone, recs)
}

// TestSweepSparesChallengeInFlight: a journal entry is in flight from the
// moment it is stored until its delete finishes. Sweeps with a short maxAge
// (sweep_after 3s), run while the write is still under way (retries,
// authoritative_wait) and while the delete is, by this process and by
// another instance sharing the journal, take nothing; renewals during both
// keep the entry current. Once the delete is done, the entry is gone.
func TestSweepSparesChallengeInFlight(t *testing.T) {
	fw := &fakeWriter{}
	w := &hookWriter{fakeWriter: fw}
	j := &memJournal{}
	clock := newFakeClock()
	rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
	p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j, now: clock.Now}
	other := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j, now: clock.Now}
	value := "in flight"
	ctx := context.Background()

	// Three rounds of: this process renews (every third of sweep_after,
	// as its journal loop does), time passes, both sweep.
	sweepAll := func(phase string) {
		t.Helper()
		for range 3 {
			if err := sweeperOf(p).Renew(ctx); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * time.Second)
			for name, sweeper := range map[string]*Provider{"this process": p, "another instance": other} {
				if n, err := sweeperOf(sweeper).Sweep(ctx, 3*time.Second); n != 0 || err != nil {
					t.Errorf("%s: %s swept %d (%v) of a challenge in flight", phase, name, n, err)
				}
			}
		}
		es, _ := j.List(ctx)
		if len(es) != 1 || !es[0].Seen.Equal(clock.Now().Add(-2*time.Second)) {
			t.Errorf("%s: journal %+v, want the entry renewed 2 s ago", phase, es)
		}
	}
	w.beforeAppend = func() {
		if es, _ := j.List(ctx); len(es) != 1 {
			t.Errorf("journal %+v before the write, want its entry", es)
		}
		sweepAll("during the write")
	}
	recs := mustAppend(t, p, "example.com.", txt("_acme-challenge", value))
	sweepAll("presented")
	w.beforeDelete = func() { sweepAll("during the delete") }
	mustDelete(t, p, "example.com.", recs...)
	if d := fw.callsOf("delete"); len(d) != 1 {
		t.Errorf("%d deletes, want the cleanup's only", len(d))
	}
	if j.len() != 0 || !fw.empty() {
		t.Errorf("after the cleanup: %d journal entries, alias %v", j.len(), fw.values(testStaticAlias))
	}
}

// slowWriter is an inner provider whose appends land at once and answer
// after hold (a slow server, a long retry, or the wait for the
// authoritative servers after it: the record is there either way).
type slowWriter struct {
	*fakeWriter
	hold time.Duration
}

func (w *slowWriter) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := w.fakeWriter.AppendRecords(ctx, zone, recs)
	select {
	case <-time.After(w.hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return out, err
}

// TestWriteLeaseRenewed: an entry is leased for sweep_after (3 s) from
// the moment it is stored, a write under way included, and renewed every
// second while the write goes on. A write that takes nearly its whole
// retry budget is never swept by another instance sweeping every second
// (nor would the authoritative wait after it be); a writer killed one
// minute into the write (its record already at the server) leaves it for
// no more than sweep_after + the sweep interval. Before, the entry was
// leased for the longest a write could take (the retry budget plus
// authoritative_wait) and a kill left the record that long.
func TestWriteLeaseRenewed(t *testing.T) {
	const after, interval = 3 * time.Second, time.Second
	for _, tc := range []struct {
		name   string
		killAt time.Duration // 0: never killed
	}{
		{"renewed across a long write", 0},
		{"writer killed a minute into the write", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fw := &fakeWriter{}
				w := &slowWriter{fakeWriter: fw, hold: retryBudget - 10*time.Second}
				j := &memJournal{}
				rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
				p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j}
				other := NewSweeper(&Provider{Mapper: &Mapper{Default: rule}, Journal: j})
				// A killed process makes no call any more: its journal
				// round stops (kill), and its write, blocked at the
				// server, stays blocked until the test ends (stop).
				rounds, kill := context.WithCancel(context.Background())
				writes, stop := context.WithCancel(context.Background())
				// Every goroutine of the bubble ends before the test does.
				var wg sync.WaitGroup
				defer wg.Wait()
				defer stop()
				defer kill()
				// This process's journal round renews every third of
				// sweep_after.
				wg.Go(func() {
					for rounds.Err() == nil {
						time.Sleep(after / 3)
						sweeperOf(p).Renew(rounds)
					}
				})
				wrote := make(chan error, 1)
				wg.Go(func() {
					_, err := p.AppendRecords(writes, "example.com.", []libdns.Record{txt("_acme-challenge", "slow")})
					wrote <- err
				})
				start := time.Now()
				for {
					time.Sleep(interval)
					if tc.killAt > 0 && time.Since(start) == tc.killAt {
						kill()
						break
					}
					if n, err := other.Sweep(context.Background(), after); n != 0 || err != nil {
						t.Fatalf("another instance swept %d (%v) of a write under way %s into it", n, err, time.Since(start))
					}
					if es, _ := j.List(context.Background()); len(es) != 1 || es[0].Lease != 0 {
						t.Fatalf("journal %s into the write: %+v, want one entry with the journal's own lease", time.Since(start), es)
					}
					if tc.killAt == 0 && time.Since(start) >= w.hold+time.Second {
						if err := <-wrote; err != nil {
							t.Fatal(err)
						}
						return
					}
				}
				killed := time.Now()
				for slices.Contains(fw.values(testStaticAlias), digest("slow")) {
					if time.Since(killed) > after+interval {
						t.Fatalf("the killed writer's record is still there %s after the kill, more than sweep_after + sweep_interval", time.Since(killed))
					}
					time.Sleep(interval)
					other.Sweep(context.Background(), after)
				}
			})
		})
	}
}

// TestConcurrentSamePresentOneEntry: two concurrent presents of the same
// name and value write once and leave one journal entry, which goes with
// the last delete; before, the second left an unrenewed entry behind that
// a later sweep took for an orphan, deleting the value still in use.
func TestConcurrentSamePresentOneEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fw := &fakeWriter{}
		w := &hookWriter{fakeWriter: fw}
		j := &memJournal{}
		rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
		clk := newFakeClock()
		p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j, now: clk.Now}
		value := "shared"
		var wg sync.WaitGroup
		var second []libdns.Record
		var secondErr error
		w.beforeAppend = func() {
			// The first write is under way: a second present of the
			// same value (the wildcard's, another instance of the
			// same order) arrives.
			wg.Go(func() {
				second, secondErr = p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", value)})
			})
			synctest.Wait()
		}
		first := mustAppend(t, p, "example.com.", txt("_acme-challenge", value))
		wg.Wait()
		if secondErr != nil {
			t.Fatalf("second present: %v", secondErr)
		}
		if n := len(fw.callsOf("append")); n != 1 || j.len() != 1 {
			t.Fatalf("%d writes, %d journal entries; want one of each", n, j.len())
		}
		mustDelete(t, p, "example.com.", first...)
		if !slices.Equal(fw.values(testStaticAlias), digests(value)) || j.len() != 1 {
			t.Fatalf("after the first delete: alias %v, %d journal entries; want the value and its entry kept", fw.values(testStaticAlias), j.len())
		}
		// Much later (an hour on the provider's clock), a sweep: the
		// value is still in use and stays.
		clk.Advance(time.Hour)
		if n, _ := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 0 {
			t.Fatalf("a sweep removed the value still in use")
		}
		mustDelete(t, p, "example.com.", second...)
		if !fw.empty() || j.len() != 0 {
			t.Errorf("after both deletes: alias %v, %d journal entries", fw.values(testStaticAlias), j.len())
		}
	})
}

// TestConcurrentSamePresentFailure: when the first of two concurrent
// presents of one value fails, the second fails with it, and nothing
// (record, journal entry, presentation) is left.
func TestConcurrentSamePresentFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fw := &fakeWriter{}
		fw.setFailures(func(string, libdns.RR) error { return errors.New(`dns response error code "REFUSED" (5)`) }, nil)
		w := &hookWriter{fakeWriter: fw}
		j := &memJournal{}
		rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
		p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j}
		rec := txt("_acme-challenge", "refused")
		var wg sync.WaitGroup
		var secondErr error
		w.beforeAppend = func() {
			wg.Go(func() { _, secondErr = p.AppendRecords(context.Background(), "example.com.", []libdns.Record{rec}) })
			synctest.Wait()
		}
		_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{rec})
		wg.Wait()
		if err == nil || secondErr == nil {
			t.Fatalf("errors %v and %v, want both presents failed", err, secondErr)
		}
		if j.len() != 0 || len(p.Presented()) != 0 {
			t.Errorf("left: %d journal entries, presented %v", j.len(), p.Presented())
		}
	})
}

// TestLeaseDropsAfterWrite: a pending entry is leased for the longest
// present, but once the write is done its lease drops at once (not at the
// next renewal): a process killed right after a write leaves an orphan the
// sweep takes after sweep_after, not after minutes.
func TestLeaseDropsAfterWrite(t *testing.T) {
	j := &memJournal{}
	rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: &fakeWriter{}, WriterName: "fake"})
	clock := newFakeClock()
	p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}, Journal: j, now: clock.Now}
	mustAppend(t, p, "example.com.", txt("_acme-challenge", "crash after write"))
	es, _ := j.List(context.Background())
	if len(es) != 1 || es[0].Lease != 0 || !es[0].Seen.Equal(clock.Now()) {
		t.Fatalf("after the write: %+v, want one entry with no lease of its own, seen now", es)
	}
	clock.Advance(4 * time.Second)
	crashed := &Provider{Mapper: p.Mapper, Journal: j, now: clock.Now} // another process: p's presentations are not its own
	if n, err := sweeperOf(crashed).Sweep(context.Background(), 3*time.Second); n != 1 || err != nil {
		t.Errorf("a sweep after sweep_after removed %d (%v), want the orphan", n, err)
	}
}
