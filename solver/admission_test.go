package solver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countingCheck admits names starting with "ok" for ttl and counts calls.
// noClient is the source of a question no client asked.
var noClient netip.Addr

func countingCheck(ttl time.Duration, calls *atomic.Int32) func(context.Context, string) (time.Duration, error) {
	return func(_ context.Context, name string) (time.Duration, error) {
		calls.Add(1)
		if len(name) >= 2 && name[:2] == "ok" {
			return ttl, nil
		}
		return 0, fmt.Errorf("%s has no CNAME record", name)
	}
}

func TestAdmissionCaching(t *testing.T) {
	tests := []struct {
		name      string
		domain    string
		checkTTL  time.Duration
		maxTTL    time.Duration
		negTTL    time.Duration
		advance   time.Duration
		wantCalls int32 // after a second Allow following advance
		wantErr   bool
	}{
		{"yes remembered within its TTL", "ok.example.com", 30 * time.Second, 0, 0, 29 * time.Second, 1, false},
		{"yes asked again after its TTL", "ok.example.com", 30 * time.Second, 0, 0, 30 * time.Second, 2, false},
		{"yes capped by MaxTTL", "ok.example.com", time.Hour, 10 * time.Second, 0, 11 * time.Second, 2, false},
		{"zero TTL remembered for MinTTL", "ok.example.com", 0, 0, 0, 29 * time.Second, 1, false},
		{"zero TTL asked again after MinTTL", "ok.example.com", 0, 0, 0, 30 * time.Second, 2, false},
		{"no remembered for NegativeTTL", "bad.example.com", 0, 0, 20 * time.Second, 19 * time.Second, 1, true},
		{"no asked again after NegativeTTL", "bad.example.com", 0, 0, 20 * time.Second, 20 * time.Second, 2, true},
		{"no defaults to one minute", "bad.example.com", 0, 0, 0, 59 * time.Second, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			var calls atomic.Int32
			a := &Admission{Check: countingCheck(tt.checkTTL, &calls), MaxTTL: tt.maxTTL, NegativeTTL: tt.negTTL, now: clock.Now}
			first := a.Allow(context.Background(), tt.domain, noClient)
			clock.Advance(tt.advance)
			second := a.Allow(context.Background(), tt.domain, noClient)
			if (first != nil) != tt.wantErr || (second != nil) != tt.wantErr {
				t.Fatalf("Allow = %v, %v; want error %v", first, second, tt.wantErr)
			}
			if tt.wantErr && first.Error() != second.Error() {
				t.Errorf("cached refusal changed: %v vs %v", first, second)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("checks = %d, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestAdmissionSharesConcurrentChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		a := &Admission{Check: func(ctx context.Context, name string) (time.Duration, error) {
			calls.Add(1)
			<-release
			return 0, errors.New("no CNAME")
		}}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- a.Allow(context.Background(), "Unknown.Example.com.", noClient)
			}()
		}
		synctest.Wait() // every handshake waits on the one check
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err == nil {
				t.Fatal("an unknown name was admitted")
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("100 concurrent handshakes for one name made %d checks, want 1", got)
		}
	})
}

// TestAdmissionCancelledWaiterDoesNotPoisonCache: a handshake that gives
// up leaves at once, the check it started runs on, a question that arrives
// while it is under way shares it, and one that arrives after it ended
// gets its remembered answer: one check, never a second one. (The check's
// answer is stored and its flight removed under one lock, so no question
// can find neither, which once started a second check now and then.)
func TestAdmissionCancelledWaiterDoesNotPoisonCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		a := &Admission{Check: func(ctx context.Context, name string) (time.Duration, error) {
			calls.Add(1)
			<-release
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return time.Minute, nil
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Allow(ctx, "ok.example.com", noClient) }()
		synctest.Wait() // the handshake waits on the check
		cancel()
		// The cancelled handshake leaves at once, with its own context's error,
		// while the check runs on.
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled handshake got %v, want context.Canceled", err)
		}
		if a.Checking() != 1 {
			t.Fatalf("%d checks under way after the handshake left, want its check running on", a.Checking())
		}
		later := make(chan error)
		go func() { later <- a.Allow(context.Background(), "ok.example.com", noClient) }()
		synctest.Wait() // the next handshake waits on the same check
		close(release)
		if err := <-later; err != nil || calls.Load() != 1 {
			t.Fatalf("Allow = %v after %d checks, want a yes from the check the cancelled handshake started", err, calls.Load())
		}
		if err := a.Allow(context.Background(), "ok.example.com", noClient); err != nil || calls.Load() != 1 {
			t.Fatalf("Allow = %v after %d checks, want a cached yes after 1", err, calls.Load())
		}
	})
}

func TestAdmissionPanickingCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		a := &Admission{Check: func(ctx context.Context, name string) (time.Duration, error) {
			if calls.Add(1) == 1 {
				<-release
				panic("boom")
			}
			return time.Minute, nil
		}}
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- a.Allow(context.Background(), "ok.example.com", noClient) }()
		}
		synctest.Wait() // both waiters wait on the first check
		close(release)
		for range 2 {
			select {
			case err := <-errs:
				if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
					t.Fatalf("Allow = %v, want the panic as an error for both waiters", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waiters of a panicking check hang")
			}
		}
		// The panic was not remembered: the next call checks again and passes.
		if err := a.Allow(context.Background(), "ok.example.com", noClient); err != nil || calls.Load() != 2 {
			t.Fatalf("Allow after a panicking check = %v after %d checks, want a fresh yes", err, calls.Load())
		}
	})
}

func TestAdmissionNamesAreCaseInsensitive(t *testing.T) {
	var calls atomic.Int32
	a := &Admission{Check: countingCheck(time.Minute, &calls)}
	for _, n := range []string{"ok.example.com", "OK.Example.COM", "ok.example.com."} {
		if err := a.Allow(context.Background(), n, noClient); err != nil {
			t.Fatalf("Allow(%s) = %v", n, err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("one name in three spellings was checked %d times, want 1", got)
	}
}

func TestAdmissionExpiredEntryIsRechecked(t *testing.T) {
	clock := newFakeClock()
	answer := error(nil)
	var calls atomic.Int32
	a := &Admission{now: clock.Now, MaxTTL: time.Minute, Check: func(ctx context.Context, name string) (time.Duration, error) {
		calls.Add(1)
		return time.Hour, answer
	}}
	if err := a.Allow(context.Background(), "shop.example.com", noClient); err != nil {
		t.Fatal(err)
	}
	// The customer removes the CNAME: the cached yes holds until MaxTTL,
	// then the next handshake is refused.
	answer = errors.New("_acme-challenge.shop.example.com has no CNAME record")
	clock.Advance(59 * time.Second)
	if err := a.Allow(context.Background(), "shop.example.com", noClient); err != nil {
		t.Fatalf("within MaxTTL: %v, want the cached yes", err)
	}
	clock.Advance(time.Second)
	if err := a.Allow(context.Background(), "shop.example.com", noClient); err == nil {
		t.Fatal("after MaxTTL a revoked delegation is still admitted")
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("checks = %d, want 2", got)
	}
}

func TestAdmissionBoundedSize(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int32
	a := &Admission{Check: countingCheck(0, &calls), MaxEntries: 10, DomainRate: -1, now: clock.Now}
	for i := range 1000 {
		a.Allow(context.Background(), fmt.Sprintf("unknown%d.example.com", i), noClient)
		clock.Advance(time.Millisecond)
	}
	if n := len(a.entries); n > 10 {
		t.Fatalf("cache holds %d entries, bound is 10", n)
	}
	// The newest names are the ones kept.
	before := calls.Load()
	a.Allow(context.Background(), "unknown999.example.com", noClient)
	if calls.Load() != before {
		t.Error("the newest refusal was evicted")
	}
}

func TestAdmissionFloodKeepsAdmissions(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int32
	a := &Admission{Check: countingCheck(5*time.Minute, &calls), MaxEntries: 100, DomainRate: -1, now: clock.Now}
	for i := range 5 {
		if err := a.Allow(context.Background(), fmt.Sprintf("ok%d.example.com", i), noClient); err != nil {
			t.Fatal(err)
		}
	}
	// A flood of unknown names, far more than the cache holds.
	for i := range 1000 {
		a.Allow(context.Background(), fmt.Sprintf("unknown%d.example.com", i), noClient)
		clock.Advance(10 * time.Millisecond)
	}
	if n := a.Len(); n > 100 {
		t.Fatalf("cache holds %d entries, bound is 100", n)
	}
	before := calls.Load()
	for i := range 5 {
		if err := a.Allow(context.Background(), fmt.Sprintf("ok%d.example.com", i), noClient); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Load() - before; got != 0 {
		t.Errorf("the flood evicted %d of 5 admissions that expire later than its refusals", got)
	}
}

// TestAdmissionMaxChecks: checks that never end (nameservers that never
// answer) fill MaxChecks; every further name is refused at once, with
// ErrOverload, and no goroutine or check is started for it. The refusal is
// not remembered: once the checks end, the same name is checked.
func TestAdmissionMaxChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		a := &Admission{MaxChecks: 4, DomainRate: -1, Check: func(ctx context.Context, name string) (time.Duration, error) {
			calls.Add(1)
			<-release
			return time.Minute, nil
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() { a.Allow(ctx, fmt.Sprintf("ok%d.example.com", i), noClient) })
		}
		synctest.Wait()
		for i := range 1000 {
			err := a.Allow(context.Background(), fmt.Sprintf("ok-flood%d.example.com", i), noClient)
			if !errors.Is(err, ErrOverload) || !strings.Contains(err.Error(), "4 under way") {
				t.Fatalf("Allow with every check slot taken = %v, want ErrOverload at once", err)
			}
		}
		// A name whose check is under way still shares it.
		go a.Allow(context.Background(), "ok0.example.com", noClient)
		wg.Wait() // the clients gave up after 200 ms
		synctest.Wait()
		if got := calls.Load(); got != 4 {
			t.Fatalf("%d checks started, want 4 (the limit)", got)
		}
		close(release)
		synctest.Wait()
		if err := a.Allow(context.Background(), "ok-flood7.example.com", noClient); err != nil {
			t.Fatalf("a name refused for load is refused again after the load passed: %v", err)
		}
		if got := calls.Load(); got != 5 {
			t.Errorf("%d checks, want 5: the refusal for load was remembered", got)
		}
	})
}

// TestAdmissionDomainRate: made-up names under one registrable domain get
// DomainRate checks at once and then one per 60/DomainRate seconds; other
// domains are not affected, and a refusal for the rate is not remembered.
func TestAdmissionDomainRate(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int32
	a := &Admission{DomainRate: 30, now: clock.Now, Check: countingCheck(time.Minute, &calls)}
	refused := 0
	for i := range 100 {
		if err := a.Allow(context.Background(), fmt.Sprintf("x%d.attacker.co.uk", i), noClient); errors.Is(err, ErrOverload) {
			refused++
			if !strings.Contains(err.Error(), "more than 30 a minute for names under attacker.co.uk") {
				t.Fatalf("refusal %q does not say which bound", err)
			}
		}
	}
	if refused != 70 || calls.Load() != 30 {
		t.Fatalf("%d refused, %d checked of 100 names under one domain; want 70, 30", refused, calls.Load())
	}
	if err := a.Allow(context.Background(), "ok.customer.example", noClient); err != nil {
		t.Fatalf("another domain: %v", err)
	}
	if err := a.Allow(context.Background(), "x99.attacker.co.uk", noClient); !errors.Is(err, ErrOverload) {
		t.Fatalf("x99 before the budget refilled: %v", err)
	}
	clock.Advance(2 * time.Second) // one more check
	if err := a.Allow(context.Background(), "x99.attacker.co.uk", noClient); errors.Is(err, ErrOverload) {
		t.Fatalf("x99 after 2 s: %v, want it checked (the refusal was not remembered)", err)
	}
	if err := a.Allow(context.Background(), "x98.attacker.co.uk", noClient); !errors.Is(err, ErrOverload) {
		t.Fatalf("x98 in the same 2 s: %v, want refused", err)
	}
}

// TestAdmissionDomainBudgetsBounded: the budgets of a flood of distinct
// registrable domains are held to MaxEntries.
func TestAdmissionDomainBudgetsBounded(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int32
	a := &Admission{MaxEntries: 50, now: clock.Now, Check: countingCheck(0, &calls)}
	for i := range 1000 {
		a.Allow(context.Background(), fmt.Sprintf("www.d%d.example", i), noClient)
		clock.Advance(time.Millisecond)
	}
	if n := len(a.buckets); n > 50 {
		t.Fatalf("%d domain budgets kept, bound is 50", n)
	}
}

func TestRegistrableDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a.b.shop.example.co.uk.": "example.co.uk",
		"Shop.Example.COM":        "example.com",
		"x.unknowntld":            "x.unknowntld",
		"co.uk":                   "co.uk",
	} {
		if got := RegistrableDomain(in); got != want {
			t.Errorf("RegistrableDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
