package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
)

// TestSweepSparesRenewedEntries: another instance's challenge that lasts
// longer than the sweep's maxAge is renewed by its process and survives
// every sweep; once that process dies (no more renewals), the next sweep
// past maxAge removes it.
func TestSweepSparesRenewedEntries(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	clock := newFakeClock()
	other := staticProvider(t, w)
	other.Journal, other.now = j, clock.Now
	mustAppend(t, other, "example.net.", txt("_acme-challenge", "slow"))

	sweeper := staticProvider(t, w)
	sweeper.Journal, sweeper.now = j, clock.Now
	for range 5 {
		clock.Advance(2 * time.Second)
		if err := sweeperOf(other).Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Second)
		if n, err := sweeperOf(sweeper).Sweep(context.Background(), 3*time.Second); n != 0 || err != nil {
			t.Fatalf("Sweep = %d, %v: a renewed challenge of another instance was swept", n, err)
		}
	}
	if got := w.values(testStaticAlias); !slices.Equal(got, []string{digest("slow")}) {
		t.Fatalf("alias holds %v", got)
	}
	// The other process dies: no more renewals.
	clock.Advance(3 * time.Second)
	if n, err := sweeperOf(sweeper).Sweep(context.Background(), 3*time.Second); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want the orphan removed", n, err)
	}
	if !w.empty() || j.len() != 0 {
		t.Errorf("left: alias %v, %d journal entries", w.values(testStaticAlias), j.len())
	}
}

// TestSweepHonoursLease: an entry written by a process with a longer
// sweep_after (its lease) is not removed by a sweeper with a shorter one.
func TestSweepHonoursLease(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	clock := newFakeClock()
	j.Put(context.Background(), JournalEntry{ID: "a", Domain: "example.com", Zone: testAliasZone, Name: testStaticAlias,
		Value: digest("v"), Writer: "fake", Written: clock.Now(), Lease: time.Hour})
	p := staticProvider(t, w)
	p.Journal, p.now = j, clock.Now
	clock.Advance(30 * time.Minute)
	if n, _ := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 0 || j.len() != 1 {
		t.Fatalf("an entry within its lease was swept")
	}
	clock.Advance(31 * time.Minute)
	if n, _ := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 1 || j.len() != 0 {
		t.Fatalf("an entry past its lease was kept")
	}
}

// TestRenewRacingCleanup: a renewal that would write an entry back just
// after the challenge's cleanup dropped it leaves no entry: an entry that
// outlives its record makes a later sweep delete the value again, when
// another challenge may present it (the cluster scenario saw this as a
// live instance deleting a value no dead instance wrote).
func TestRenewRacingCleanup(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	clock := newFakeClock()
	p := staticProvider(t, w)
	p.Journal, p.now = j, clock.Now
	recs := mustAppend(t, p, "example.com.", txt("_acme-challenge", "v"))
	hook := &hookJournal{Journal: j}
	p.Journal = hook
	hook.beforePut = func() {
		hook.beforePut = nil
		if _, err := p.DeleteRecords(context.Background(), "example.com.", recs); err != nil {
			t.Errorf("DeleteRecords: %v", err)
		}
	}
	if err := sweeperOf(p).Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := j.len(); n != 0 {
		t.Fatalf("the renewal wrote back the entry of a deleted record (%d entries)", n)
	}
	clock.Advance(time.Hour)
	if _, err := sweeperOf(p).Sweep(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := w.callsOf("delete"); len(d) != 1 {
		t.Errorf("%d deletes, want the cleanup's only: %v", len(d), d)
	}
}

// TestSweepSparesValueInUse: an orphan entry (a process crashed after its
// write) whose zone, name and value a live challenge holds too (the CA
// handed the restarted process the same pending authorization) loses its
// entry but not its record, whether the live challenge is another
// instance's unexpired entry in the listing or this process's own
// presentation, present or being deleted.
func TestSweepSparesValueInUse(t *testing.T) {
	orphan := func(id string, written time.Time) JournalEntry {
		return JournalEntry{ID: id, Domain: "example.com", Zone: testAliasZone, Name: testStaticAlias, Type: "TXT",
			Value: digest("same"), Writer: "fake", Written: written}
	}
	tests := []struct {
		name string
		// live makes the value live, given the sweeper, the journal and
		// the clock; it returns what ends the value's life.
		live func(t *testing.T, p *Provider, j *memJournal, now time.Time) func()
	}{
		{"another instance's entry", func(t *testing.T, p *Provider, j *memJournal, now time.Time) func() {
			other := orphan("other", now)
			other.Domain = "www.example.com"
			j.Put(context.Background(), other)
			return func() { j.Delete(context.Background(), "other") }
		}},
		{"this process's presentation", func(t *testing.T, p *Provider, j *memJournal, now time.Time) func() {
			recs := mustAppend(t, p, "example.com.", txt("_acme-challenge", "same"))
			return func() { mustDelete(t, p, "example.com.", recs...) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWriter{}
			j := &memJournal{}
			clock := newFakeClock()
			p := staticProvider(t, w)
			p.Journal, p.now = j, clock.Now
			j.Put(context.Background(), orphan("orphan", clock.Now()))
			w.AppendRecords(context.Background(), testAliasZone+".", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: digest("same")}})
			clock.Advance(time.Hour)
			end := tt.live(t, p, j, clock.Now())
			if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 0 || err != nil {
				t.Fatalf("Sweep = %d, %v; want nothing removed", n, err)
			}
			if got := w.values(testStaticAlias); !slices.Contains(got, digest("same")) {
				t.Fatalf("the sweep deleted a value a live challenge holds; alias holds %v", got)
			}
			es, _ := j.List(context.Background())
			for _, e := range es {
				if e.ID == "orphan" {
					t.Errorf("the stale entry stayed")
				}
			}
			end()
			if n, _ := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 0 {
				t.Errorf("a second sweep removed %d records", n)
			}
		})
	}
}

// TestSweepDropsEntryBeforeRecord: a sweep removes the entry before its
// record, so that no sweep after it can act on an entry whose record was
// handled; if the record's delete fails, the entry is put back for the
// next sweep.
func TestSweepDropsEntryBeforeRecord(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	clock := newFakeClock()
	p := staticProvider(t, w)
	p.Journal, p.now = j, clock.Now
	crashed := staticProvider(t, w)
	crashed.Journal, crashed.now = j, clock.Now
	mustAppend(t, crashed, "example.com.", txt("_acme-challenge", "orphan"))
	clock.Advance(time.Hour)

	w.setFailures(nil, func(string, libdns.RR) error { return errors.New("refused") })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n, _ := sweeperOf(p).Sweep(ctx, time.Minute); n != 0 {
		t.Fatalf("Sweep = %d with a failing delete", n)
	}
	if j.len() != 1 {
		t.Fatalf("the entry of a record the sweep could not delete is gone")
	}
	if d := j.deleted; len(d) != 1 {
		t.Fatalf("DeleteKey calls %v, want one before the failed delete", d)
	}

	w.setFailures(nil, nil)
	var entriesAtDelete int
	hw := &hookWriter{fakeWriter: w, beforeDelete: func() { entriesAtDelete = j.len() }}
	p.Mapper.Default.Writer = hw
	if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if entriesAtDelete != 0 {
		t.Errorf("the record was deleted while its entry was still stored")
	}
	if !w.empty() || j.len() != 0 {
		t.Errorf("left: alias %v, %d entries", w.values(testStaticAlias), j.len())
	}
}

type hookJournal struct {
	Journal
	beforePut func()
}

func (h *hookJournal) Put(ctx context.Context, e JournalEntry) error {
	if h.beforePut != nil {
		h.beforePut()
	}
	return h.Journal.Put(ctx, e)
}

// TestSweepWriterByRule: two rules with providers of the same module (two
// rfc2136 servers, say) and zones found by SOA: an orphan is deleted by the
// provider of the rule it came from.
func TestSweepWriterByRule(t *testing.T) {
	wA, wB := &fakeWriter{}, &fakeWriter{}
	def := mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.{domain}.a.example"), Writer: wA, WriterName: "rfc2136"})
	rb := mustValidate(t, &Rule{Match: []string{"example.net"}, Alias: mustTemplate(t, "_acme-challenge.b.example"), Writer: wB, WriterName: "rfc2136"})
	p := &Provider{Mapper: &Mapper{Default: def, Rules: []*Rule{rb}}, Journal: &memJournal{}}
	old := time.Now().Add(-time.Hour)
	p.Journal.Put(context.Background(), JournalEntry{ID: "1", Domain: "example.net", Zone: "b.example", Name: "_acme-challenge.b.example", Value: digest("b"), Writer: "rfc2136", Written: old})
	p.Journal.Put(context.Background(), JournalEntry{ID: "2", Domain: "example.com", Zone: "a.example", Name: "_acme-challenge.example.com.a.example", Value: digest("a"), Writer: "rfc2136", Written: old})
	// A domain since moved to another rule: found by its zone.
	p.Journal.Put(context.Background(), JournalEntry{ID: "3", Domain: "moved.example.net", Zone: "a.example", Name: "_acme-challenge.moved.example.net.a.example", Value: digest("m"), Writer: "rfc2136", Written: old})
	if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 3 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if d := wB.callsOf("delete"); len(d) != 1 {
		t.Errorf("rule writer deletes %v", d)
	} else {
		checkCall(t, d[0], "delete", "b.example", "_acme-challenge.b.example", "b")
	}
	if d := wA.callsOf("delete"); len(d) != 2 {
		t.Errorf("default writer deletes %v", d)
	}
}

// brokenJournal lists some entries and reports others unreadable.
type brokenJournal struct{ *memJournal }

func (b brokenJournal) List(ctx context.Context) ([]JournalEntry, error) {
	es, _ := b.memJournal.List(ctx)
	return es, errors.New("journal entry x.json is unreadable")
}

func TestSweepPastUnreadableEntries(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	j.Put(context.Background(), JournalEntry{ID: "a", Domain: "example.com", Zone: testAliasZone, Name: testStaticAlias, Value: digest("v"), Writer: "fake", Written: time.Now().Add(-time.Hour)})
	p := staticProvider(t, w)
	p.Journal = brokenJournal{j}
	if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want the readable orphan removed", n, err)
	}
}

// TestWithdraw: at shutdown every presented record is deleted and its
// journal entry dropped; certmagic's own cleanup afterwards succeeds.
func TestWithdraw(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	p := staticProvider(t, w)
	p.Journal = j
	a := mustAppend(t, p, "example.com.", txt("_acme-challenge", "a"))
	mustAppend(t, p, "example.net.", txt("_acme-challenge", "b"))
	if n := sweeperOf(p).Withdraw(context.Background()); n != 2 {
		t.Errorf("Withdraw = %d, want 2", n)
	}
	if !w.empty() || j.len() != 0 {
		t.Errorf("left: alias %v, %d journal entries", w.values(testStaticAlias), j.len())
	}
	mustDelete(t, p, "example.com.", a...)
}

// TestRefusedWriteLeavesNoJournal: a write the server refuses (wrong key)
// fails at once; its compensating delete, refused as well, leaves no journal
// entry behind and no "remove it by hand". The retries' backoffs pass on
// the synctest bubble's clock.
func TestRefusedWriteLeavesNoJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := func(string, libdns.RR) error { return errors.New(`dns response error code "REFUSED" (5)`) }
		w := &fakeWriter{}
		w.setFailures(refused, refused)
		j := &memJournal{}
		p := staticProvider(t, w)
		p.Journal = j
		_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", "tok")})
		if err == nil || !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), testAliasZone) {
			t.Fatalf("AppendRecords = %v", err)
		}
		if strings.Contains(err.Error(), "by hand") || strings.Contains(err.Error(), "attempts") {
			t.Errorf("error %q", err)
		}
		if n := len(w.callsOf("append")); n != 1 {
			t.Errorf("%d appends, want 1 (permanent)", n)
		}
		if j.len() != 0 {
			t.Errorf("journal keeps %d entries for a refused write", j.len())
		}

		// A write that timed out may have landed: a failed delete says so and
		// keeps the journal entry for a sweep.
		timeout := func(string, libdns.RR) error { return &net.OpError{Op: "read", Err: timeoutErr{}} }
		w2 := &fakeWriter{}
		w2.setFailures(timeout, timeout)
		p2 := staticProvider(t, w2)
		p2.Journal = j
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = p2.AppendRecords(ctx, "example.com.", []libdns.Record{txt("_acme-challenge", "tok")})
		if err == nil || !strings.Contains(err.Error(), "by hand") {
			t.Errorf("AppendRecords = %v, want the failed removal named", err)
		}
		if j.len() != 1 {
			t.Errorf("journal holds %d entries, want the uncertain write's", j.len())
		}
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestMayHaveTakenEffect(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New(`dns response error code "REFUSED" (5)`), false},
		{errors.New("dns: bad signature"), false},
		{fmt.Errorf("dial tcp 127.0.0.2:5399: %w", syscall.ECONNREFUSED), false},
		{&net.DNSError{Err: "no such host", Name: "api.example", IsNotFound: true}, false},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{errors.New("HTTP 503"), true},
		{context.Canceled, true},
		{&retryError{err: syscall.ECONNREFUSED, attempts: 3, uncertain: true}, true},
	} {
		if got := MayHaveTakenEffect(tc.err); got != tc.want {
			t.Errorf("MayHaveTakenEffect(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRetryReportsAttempts: the error of a retried failure says how many
// attempts were made, and a caller without a deadline gets one. The
// backoffs pass on the synctest bubble's clock.
func TestRetryReportsAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hadDeadline bool
		err := retry(context.Background(), func(ctx context.Context) error {
			_, hadDeadline = ctx.Deadline()
			return fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)
		})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d attempts, the last: dial tcp", retryAttempts)) {
			t.Errorf("retry = %v", err)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || MayHaveTakenEffect(err) {
			t.Errorf("retry's error %v: wrapped %v, may have taken effect %v", err, errors.Is(err, syscall.ECONNREFUSED), MayHaveTakenEffect(err))
		}
		if !hadDeadline {
			t.Error("an attempt without the caller's deadline ran without one")
		}
		// A backoff that would outlast the deadline is not waited for.
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond) // the first backoff is at least 50 ms
		defer cancel()
		calls := 0
		retry(ctx, func(context.Context) error { calls++; return syscall.ECONNREFUSED })
		if ctx.Err() != nil || calls != 1 {
			t.Errorf("retry waited for its deadline (%d attempts) instead of returning when the next backoff could not fit", calls)
		}
	})
}

// TestUncertainWriteStaysJournalled: a write that timed out may land after
// its compensating delete; its journal entry stays, so that a sweep deletes
// the record once more. The retries' backoffs pass on the synctest
// bubble's clock.
func TestUncertainWriteStaysJournalled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWriter{}
		w.setFailures(func(string, libdns.RR) error { return &net.OpError{Op: "read", Err: timeoutErr{}} }, nil)
		j := &memJournal{}
		clock := newFakeClock()
		p := staticProvider(t, w)
		p.Journal, p.now = j, clock.Now
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{txt("_acme-challenge", "late")})
		if err == nil || strings.Contains(err.Error(), "by hand") {
			t.Fatalf("AppendRecords = %v; want the write's failure only (the compensating delete succeeded)", err)
		}
		if n := len(w.callsOf("delete")); n != 1 || j.len() != 1 {
			t.Fatalf("%d compensating deletes, %d journal entries; want 1 and 1", n, j.len())
		}
		clock.Advance(time.Hour)
		if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 1 || err != nil || j.len() != 0 {
			t.Fatalf("Sweep = %d, %v, journal %d; want the late write deleted once more", n, err, j.len())
		}
		if n := len(w.callsOf("delete")); n != 2 {
			t.Errorf("%d deletes, want 2", n)
		}
	})
}
