package solver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingCheck admits names starting with "ok" for ttl and counts calls.
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
		{"zero TTL is not cached", "ok.example.com", 0, 0, 0, 0, 2, false},
		{"no remembered for NegativeTTL", "bad.example.com", 0, 0, 20 * time.Second, 19 * time.Second, 1, true},
		{"no asked again after NegativeTTL", "bad.example.com", 0, 0, 20 * time.Second, 20 * time.Second, 2, true},
		{"no defaults to one minute", "bad.example.com", 0, 0, 0, 59 * time.Second, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			var calls atomic.Int32
			a := &Admission{Check: countingCheck(tt.checkTTL, &calls), MaxTTL: tt.maxTTL, NegativeTTL: tt.negTTL, now: clock.Now}
			first := a.Allow(context.Background(), tt.domain)
			clock.Advance(tt.advance)
			second := a.Allow(context.Background(), tt.domain)
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
			errs <- a.Allow(context.Background(), "Unknown.Example.com.")
		}()
	}
	time.Sleep(50 * time.Millisecond)
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
}

func TestAdmissionCancelledWaiterDoesNotPoisonCache(t *testing.T) {
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
	go func() { done <- a.Allow(ctx, "ok.example.com") }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the first handshake's check was cancelled with its context: %v", err)
	}
	if err := a.Allow(context.Background(), "ok.example.com"); err != nil || calls.Load() != 1 {
		t.Fatalf("Allow = %v after %d checks, want a cached yes after 1", err, calls.Load())
	}
}

func TestAdmissionBoundedSize(t *testing.T) {
	clock := newFakeClock()
	var calls atomic.Int32
	a := &Admission{Check: countingCheck(0, &calls), MaxEntries: 10, now: clock.Now}
	for i := range 1000 {
		a.Allow(context.Background(), fmt.Sprintf("unknown%d.example.com", i))
		clock.Advance(time.Millisecond)
	}
	if n := len(a.entries); n > 10 {
		t.Fatalf("cache holds %d entries, bound is 10", n)
	}
	// The newest names are the ones kept.
	before := calls.Load()
	a.Allow(context.Background(), "unknown999.example.com")
	if calls.Load() != before {
		t.Error("the newest refusal was evicted")
	}
}
