package solver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestHold: a held value (the acme-dns endpoint's) is confined to the
// default rule's zones, takes only a digest, is journalled under an ID of
// its name and value with its lease, is not this process's presentation
// (an exit's Withdraw leaves it), is listed by another process on the same
// journal, and is swept only once its lease ran out; Unhold removes
// exactly its value and entry.
func TestHold(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		wantErr     string
	}{
		{"acct1." + testAliasZone, digest("a"), ""},
		{"ACCT1." + testAliasZone + ".", digest("a"), ""},
		{testAliasZone, digest("a"), "outside alias zones"},
		{"acct1.example.com", digest("a"), "outside alias zones"},
		{"acct1." + testAliasZone, "not a digest", "ACME DNS-01 digest"},
		{"bad..name." + testAliasZone, digest("a"), "refusing to write"},
	} {
		t.Run(tc.name+"/"+tc.value, func(t *testing.T) {
			w, j := &fakeWriter{}, &memJournal{}
			p, _ := followProvider(t, newFakeDNS(), w)
			p.Journal = j
			served, err := p.Held().Hold(context.Background(), tc.name, tc.value, time.Hour)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Hold: %v, want an error containing %q", err, tc.wantErr)
				}
				if !w.empty() || len(j.entries) != 0 {
					t.Fatalf("a refused write reached the writer (%v) or the journal (%d entries)", w.getCalls(), len(j.entries))
				}
				return
			}
			if err != nil || !served {
				t.Fatalf("Hold: served %v, %v", served, err)
			}
			name := "acct1." + testAliasZone
			if got := w.values(name); !slices.Equal(got, []string{tc.value}) {
				t.Fatalf("values at %s: %v", name, got)
			}
			if n := NewSweeper(p).Withdraw(context.Background()); n != 0 || w.empty() {
				t.Fatalf("the exit's withdraw removed %d held values", n)
			}
			// Another process on the same journal knows it.
			other, clk := followProvider(t, newFakeDNS(), w)
			other.Journal = j
			held, err := other.Held().Holding(context.Background())
			if err != nil || len(held) != 1 || held[0].Name != name || held[0].Zone != testAliasZone || held[0].Value != tc.value || held[0].Lease != time.Hour {
				t.Fatalf("Holding: %+v, %v", held, err)
			}
			// Within its lease no sweep takes it, however short the
			// sweep's maxAge; after it, the sweep removes it.
			clk.Advance(50 * time.Minute)
			if n, err := NewSweeper(other).Sweep(context.Background(), time.Minute); err != nil || n != 0 || w.empty() {
				t.Fatalf("sweep within the lease removed %d (%v)", n, err)
			}
			clk.Advance(11 * time.Minute)
			if n, err := NewSweeper(other).Sweep(context.Background(), time.Minute); err != nil || n != 1 || !w.empty() {
				t.Fatalf("sweep after the lease removed %d (%v); left %v", n, err, w.values(name))
			}
		})
	}
	t.Run("unhold and rehold", func(t *testing.T) {
		w, j := &fakeWriter{}, &memJournal{}
		p, clk := followProvider(t, newFakeDNS(), w)
		p.Journal = j
		name := "acct1." + testAliasZone
		for _, l := range []string{"a", "b"} {
			if _, err := p.Held().Hold(context.Background(), name, digest(l), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Held().Unhold(context.Background(), name, digest("a")); err != nil {
			t.Fatal(err)
		}
		if got := w.values(name); !slices.Equal(got, []string{digest("b")}) {
			t.Fatalf("after removing a: %v", got)
		}
		written := clk.Now()
		clk.Advance(50 * time.Minute)
		if err := p.Held().Rehold(context.Background(), name, digest("b"), written, time.Hour); err != nil {
			t.Fatal(err)
		}
		clk.Advance(50 * time.Minute)
		if n, _ := NewSweeper(p).Sweep(context.Background(), time.Minute); n != 0 {
			t.Fatalf("a renewed value was swept")
		}
		held, _ := p.Held().Holding(context.Background())
		if len(held) != 1 || !held[0].Written.Equal(written) {
			t.Fatalf("held after renewal: %+v; want b, written when it was", held)
		}
	})
}

// TestHoldSilentServer: with one of the zone's two authoritative servers
// silent, Hold returns when its context ends, the value written and kept
// (served false, no error), where a challenge write would have undone it.
func TestHoldSilentServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &authFake{lag: map[string]int{"192.0.2.1:53": 0, "192.0.2.2:53": -1}, asked: map[string]int{}, value: "v"}
		r, err := NewResolver([]string{"127.0.0.1:1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.exchange = f.exchange
		w := &fakeWriter{}
		p := &Provider{
			Mapper:            &Mapper{Resolver: r, Default: mustValidate(t, &Rule{Follow: true, Zones: []string{"validation.example.org"}, Writer: w, WriterName: "fake"})},
			AuthoritativeWait: 2 * time.Minute,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		served, err := p.Held().Hold(ctx, "_acme-challenge.example.com.validation.example.org", digest("v"), time.Hour)
		if err != nil || served {
			t.Fatalf("Hold = served %v, %v; want written, not served", served, err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Fatalf("Hold took %s, past its context's 20s", took)
		}
		if w.empty() || len(w.callsOf("delete")) != 0 {
			t.Fatalf("the value written was removed again: %v", w.getCalls())
		}
	})
}
