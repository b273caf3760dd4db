package solver

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestAdmissionRemembersOnlyVerdicts: a refusal is remembered only when it
// is a verdict on the name; a lookup that failed, timed out or found a
// nameserver silent leaves the name unremembered, and the next question
// checks again.
func TestAdmissionRemembersOnlyVerdicts(t *testing.T) {
	lookup := fmt.Errorf("%w: CNAME _acme-challenge.x.example.com.: 127.0.0.1:53 answered SERVFAIL", ErrLookup)
	tests := []struct {
		name     string
		err      error
		remember bool
	}{
		{"no CNAME", errorOf(ErrNoDelegation, "_acme-challenge.x.example.com has no CNAME record"), true},
		{"a CNAME elsewhere", errorOf(ErrWrongTarget, "the CNAME chain ends at elsewhere.example"), true},
		{"a loop", fmt.Errorf("%w: a -> b -> a", ErrLoop), true},
		{"a report with a verdict and a failed lookup", &DelegationError{Findings: []Finding{newFinding(lookup, true), newFinding(fmt.Errorf("%w: x", ErrLoop), true)}}, true},
		{"SERVFAIL", lookup, false},
		{"SERVFAIL in a report", &DelegationError{Findings: []Finding{newFinding(lookup, true)}}, false},
		{"an unreachable nameserver", fmt.Errorf("%w: ns1.example.com", ErrNSUnreachable), false},
		{"the check's timeout", fmt.Errorf("looking up x.example.com: %w", context.DeadlineExceeded), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			a := &Admission{Check: func(context.Context, string) (time.Duration, error) {
				calls.Add(1)
				return 0, tt.err
			}}
			for range 3 {
				if err := a.Allow(context.Background(), "x.example.com", noClient); !errors.Is(err, tt.err) {
					t.Fatalf("Allow = %v, want %v", err, tt.err)
				}
			}
			want := int32(3)
			if tt.remember {
				want = 1
			}
			if got := calls.Load(); got != want {
				t.Errorf("3 questions made %d checks, want %d", got, want)
			}
		})
	}
}

// TestAdmissionTimeoutThenAnswer: the resolver times out once on a
// delegated name (a lost packet), then answers: the next handshake is
// checked again and admitted, not refused for negative_ttl.
func TestAdmissionTimeoutThenAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		a := &Admission{CheckTimeout: 5 * time.Second, Check: func(ctx context.Context, name string) (time.Duration, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done() // the resolver does not answer
				return 0, fmt.Errorf("%w: CNAME _acme-challenge.%s: %w", ErrLookup, name, ctx.Err())
			}
			return time.Minute, nil
		}}
		if err := a.Allow(context.Background(), "shop.example.com", noClient); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("first handshake: %v, want the check's timeout", err)
		}
		time.Sleep(10 * time.Second)
		for _, spelling := range []string{"shop.example.com", "Shop.Example.COM."} {
			if err := a.Allow(context.Background(), spelling, noClient); err != nil {
				t.Fatalf("%s after the resolver answers again: %v, want admitted", spelling, err)
			}
		}
		if got := calls.Load(); got != 2 {
			t.Errorf("%d checks, want 2 (the timeout, then one yes remembered)", got)
		}
	})
}
