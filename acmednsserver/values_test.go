package acmednsserver

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

// valuesServer is a server with account alice over recs and the given
// rules.
func valuesServer(t *testing.T, recs Records, rules ValueRules) *Server {
	t.Helper()
	s, err := New(Config{Zone: zone, Accounts: []Account{{Username: "alice", KeyHash: hash(t, "alice-key"), Subdomain: "a1"}},
		Records: recs, Logger: zap.NewNop(), Limits: Limits{AccountBurst: 1000}, Values: rules})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func labels(ls ...string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = digest(l)
	}
	return out
}

// TestValueRules: every value an account's client may still need stays
// (three names sharing an account validate); a write over the maximum
// removes the oldest first; values older than the lifetime go at the next
// update, the two newest never; a repeated value is not written again
// and becomes the newest; a remove that fails leaves the value held and,
// at the maximum, refuses the update. Time passes on the synctest
// bubble's clock.
func TestValueRules(t *testing.T) {
	steps := []struct {
		advance   time.Duration
		label     string
		removeErr error
		status    int
		want      []string
	}{
		{0, "1", nil, 200, labels("1")},
		{0, "2", nil, 200, labels("1", "2")},
		{0, "3", nil, 200, labels("1", "2", "3")}, // three names, one account
		{0, "4", nil, 200, labels("1", "2", "3", "4")},
		{0, "5", nil, 200, labels("2", "3", "4", "5")}, // over the maximum (4): the oldest goes
		{0, "3", nil, 200, labels("2", "4", "5", "3")}, // repeated: no write, newest now
		{30 * time.Minute, "6", nil, 200, labels("4", "5", "3", "6")},
		// 2, 4 and 5 are past the lifetime; 3 was rewritten 30 minutes
		// ago, 6 is new.
		{31 * time.Minute, "7", nil, 200, labels("3", "6", "7")},
		// Everything past the lifetime but the two newest.
		{2 * time.Hour, "8", nil, 200, labels("6", "7", "8")},
		{0, "9", errors.New("provider down"), 200, labels("6", "7", "8", "9")},
		{0, "10", errors.New("provider down"), 503, labels("6", "7", "8", "9")},
		// 6 and 7, past the lifetime, go now that 8 and 9 are newer.
		{0, "10", nil, 200, labels("8", "9", "10")},
	}
	synctest.Test(t, func(t *testing.T) {
		recs := &fakeRecords{}
		s := valuesServer(t, recs, ValueRules{Lifetime: time.Hour, MaxValues: 4})
		name := "a1." + zone
		for i, st := range steps {
			time.Sleep(st.advance + time.Second) // each step a second apart: the order of writes is their times
			recs.mu.Lock()
			recs.removeErr = st.removeErr
			recs.mu.Unlock()
			if got := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest(st.label))).Code; got != st.status {
				t.Fatalf("step %d (%s): status %d, want %d", i, st.label, got, st.status)
			}
			if got := recs.at(name); !slices.Equal(got, st.want) {
				t.Fatalf("step %d (%s): %s holds %d values %v, want %v", i, st.label, name, len(got), got, st.want)
			}
		}
		if recs.writes != 10 {
			t.Errorf("%d writes, want 10 (the repeated value and the refused update write nothing)", recs.writes)
		}
		if a := s.Accounts(); len(a) != 1 || a[0].Values != 3 {
			t.Errorf("Accounts() = %+v", a)
		}
	})
}

// TestValueRulesValidated: the rules' bounds, each error naming its field.
func TestValueRulesValidated(t *testing.T) {
	for _, tc := range []struct {
		rules ValueRules
		want  string
	}{
		{ValueRules{Lifetime: time.Second}, "value_lifetime: 1s is shorter than a minute"},
		{ValueRules{MaxValues: 1}, "max_values: 1 is fewer than 2"},
		{ValueRules{UpdateTimeout: 30 * time.Second}, "update_timeout: 30s is not between 1s and 25s"},
	} {
		_, err := New(Config{Zone: zone, Records: &fakeRecords{}, Values: tc.rules})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.rules, err, tc.want)
		}
	}
}

// TestValuesTended: with no update coming, the round the dns_alias app
// runs (Tend) removes the values past their lifetime and renews the two
// newest, which therefore stay as long as an endpoint serves the account.
func TestValuesTended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := &fakeRecords{}
		s := valuesServer(t, recs, ValueRules{Lifetime: time.Hour})
		name := "a1." + zone
		for _, l := range []string{"1", "2", "3"} {
			if code := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest(l))).Code; code != 200 {
				t.Fatalf("update %s: %d", l, code)
			}
		}
		if next := s.Tend(context.Background()); next != time.Minute {
			t.Errorf("next round in %s, want a minute", next)
		}
		if got := recs.at(name); len(got) != 3 {
			t.Fatalf("a round within the lifetime removed values: %v", got)
		}
		time.Sleep(61 * time.Minute)
		s.Tend(context.Background())
		if got := recs.at(name); !slices.Equal(got, labels("2", "3")) {
			t.Fatalf("after the lifetime: %v, want the two newest", got)
		}
		held, _ := recs.Held(context.Background())
		for _, h := range held {
			if !h.Seen.Equal(time.Now()) {
				t.Errorf("%s not renewed: seen %s ago", h.Value, time.Since(h.Seen))
			}
		}
	})
}

// TestValuesOutliveServer: a new server over the same records (a reload,
// a restart, another instance on the same storage) knows the values the
// one before wrote, with their write times, applies the maximum to them
// and ages them.
func TestValuesOutliveServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := &fakeRecords{}
		first := valuesServer(t, recs, ValueRules{Lifetime: time.Hour, MaxValues: 3})
		name := "a1." + zone
		for _, l := range []string{"1", "2", "3"} {
			update(first, "192.0.2.1", "alice", "alice-key", body("a1", digest(l)))
			time.Sleep(10 * time.Minute)
		}
		second := valuesServer(t, recs, ValueRules{Lifetime: time.Hour, MaxValues: 3})
		if code := update(second, "192.0.2.1", "alice", "alice-key", body("a1", digest("4"))).Code; code != 200 {
			t.Fatalf("update on the new server: %d", code)
		}
		if got := recs.at(name); !slices.Equal(got, labels("2", "3", "4")) {
			t.Fatalf("after the new server's update: %v, want the maximum of 3 with the oldest gone", got)
		}
		third := valuesServer(t, recs, ValueRules{Lifetime: time.Hour, MaxValues: 3})
		time.Sleep(45 * time.Minute) // 2 is 65 minutes old, 3 55
		third.Tend(context.Background())
		if got := recs.at(name); !slices.Equal(got, labels("3", "4")) {
			t.Fatalf("after the third server's round: %v, want 2 aged out", got)
		}
		if a := third.Accounts(); a[0].Values != 2 {
			t.Errorf("third server lists %d values, want 2", a[0].Values)
		}
	})
}

// TestUpdateNotYetServed: a value written whose servers have not all
// caught up within the update's time bound is answered 200 with its
// value, as acme-dns's clients expect.
func TestUpdateNotYetServed(t *testing.T) {
	recs := &fakeRecords{unserved: true}
	s := valuesServer(t, recs, ValueRules{})
	w := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest("1")))
	if w.Code != 200 || !slices.Equal(recs.at("a1."+zone), labels("1")) {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
}

// slowListing holds the first listing of the journal after hold is set
// until hold is closed, and counts removes.
type slowListing struct {
	*fakeRecords
	mu      sync.Mutex
	hold    chan struct{}
	removes int
}

func (r *slowListing) Held(ctx context.Context) ([]Held, error) {
	held, err := r.fakeRecords.Held(ctx)
	r.mu.Lock()
	h := r.hold
	r.hold = nil
	r.mu.Unlock()
	if h != nil {
		<-h
	}
	return held, err
}

func (r *slowListing) Remove(ctx context.Context, name, value string) error {
	r.mu.Lock()
	r.removes++
	r.mu.Unlock()
	return r.fakeRecords.Remove(ctx, name, value)
}

// TestTendRoundsOneAtATime: two rounds at once (the app's loop and a
// reload's first round) act one after the other, each on its own listing
// of the journal, so a value past its lifetime is removed once, not again
// by the round that listed it before the other removed it.
func TestTendRoundsOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := &slowListing{fakeRecords: &fakeRecords{}}
		s := valuesServer(t, recs, ValueRules{Lifetime: time.Hour})
		for _, l := range []string{"1", "2", "3"} {
			if code := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest(l))).Code; code != 200 {
				t.Fatalf("update %s: %d", l, code)
			}
		}
		time.Sleep(61 * time.Minute)
		release := make(chan struct{})
		recs.hold = release
		done := make(chan struct{})
		go func() { s.Tend(context.Background()); done <- struct{}{} }()
		synctest.Wait() // the first round holds its listing
		go func() { s.Tend(context.Background()); done <- struct{}{} }()
		synctest.Wait()
		close(release)
		<-done
		<-done
		if recs.removes != 1 {
			t.Fatalf("%d removes of the expired value, want 1", recs.removes)
		}
		if got := recs.at("a1." + zone); !slices.Equal(got, labels("2", "3")) {
			t.Fatalf("after both rounds: %v, want the two newest", got)
		}
	})
}
