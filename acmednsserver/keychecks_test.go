package acmednsserver

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestKeyCheckSlots: a request finding every key check slot taken waits
// for one, in turn with other networks, up to KeyCheckWait; past it, or
// past the queue's bounds, it is refused with 503 busy. One network runs
// one check at a time.
func TestKeyCheckSlots(t *testing.T) {
	for _, tc := range []struct {
		name    string
		held    []string // sources holding a slot (each for 2 s)
		src     string
		limits  Limits
		status  int
		latency time.Duration
	}{
		{"free slot", nil, "192.0.2.1", Limits{ConcurrentKeyChecks: 1}, 200, 0},
		{"waits for a slot", []string{"198.51.100.1"}, "192.0.2.1", Limits{ConcurrentKeyChecks: 1}, 200, 2 * time.Second},
		{"waits too long", []string{"198.51.100.1"}, "192.0.2.1", Limits{ConcurrentKeyChecks: 1, KeyCheckWait: time.Second}, 503, time.Second},
		{"its network's check first", []string{"192.0.2.200"}, "192.0.2.1", Limits{ConcurrentKeyChecks: 4}, 200, 2 * time.Second},
		{"queue full", []string{"198.51.100.1", "203.0.113.1"}, "192.0.2.1", Limits{ConcurrentKeyChecks: 1, KeyCheckQueue: 1}, 503, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _, _, _ := testServer(t, tc.limits)
				var holders sync.WaitGroup
				defer holders.Wait()
				for _, src := range tc.held {
					holders.Go(func() {
						release, ok := s.auth.checks.acquire(t.Context(), netip.MustParseAddr(src), false)
						if ok {
							time.Sleep(2 * time.Second)
							release()
						}
					})
					synctest.Wait()
				}
				start := time.Now()
				w := update(s, tc.src, "alice", "alice-key", body("a1", digest("x")))
				if w.Code != tc.status || time.Since(start) != tc.latency {
					t.Fatalf("status %d after %v, want %d after %v", w.Code, time.Since(start), tc.status, tc.latency)
				}
			})
		})
	}
}

// TestNetworksTakeTurns: with one slot and a network whose requests keep
// queueing, another network's request is served after one check of the
// first, not after its whole queue.
func TestNetworksTakeTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeyChecks(Limits{ConcurrentKeyChecks: 1}.withDefaults())
		var order []string
		var mu sync.Mutex
		check := func(src string) {
			release, ok := k.acquire(t.Context(), netip.MustParseAddr(src), false)
			if !ok {
				t.Errorf("%s: no slot", src)
				return
			}
			mu.Lock()
			order = append(order, src)
			mu.Unlock()
			time.Sleep(500 * time.Millisecond)
			release()
		}
		var wg sync.WaitGroup
		for _, src := range []string{"2001:db8:1::1", "2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:3::1", "192.0.2.1"} {
			wg.Go(func() { check(src) })
			synctest.Wait()
		}
		wg.Wait()
		k.mu.Lock()
		defer k.mu.Unlock()
		if want := []string{"2001:db8:1::1", "192.0.2.1"}; !slices.Equal(order[:2], want) {
			t.Fatalf("served in the order %v, want %v first", order, want)
		}
		if len(k.networks) != 0 || len(k.turns) != 0 || k.queued != 0 || k.free != 1 {
			t.Fatalf("left: %d networks, %d turns, %d queued, %d free", len(k.networks), len(k.turns), k.queued, k.free)
		}
	})
}

// TestSuspectsWaitForClean: a check of a network that failed lately does
// not start while a check of another runs, so that a client's first check
// has the core it runs on to itself; with none, it starts at once.
func TestSuspectsWaitForClean(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeyChecks(Limits{}.withDefaults())
		started := map[string]time.Duration{}
		var mu sync.Mutex
		begin := time.Now()
		check := func(name, src string, suspect bool, d time.Duration) {
			release, ok := k.acquire(t.Context(), netip.MustParseAddr(src), suspect)
			if !ok {
				t.Errorf("%s: no slot", name)
				return
			}
			mu.Lock()
			started[name] = time.Since(begin)
			mu.Unlock()
			time.Sleep(d)
			release()
		}
		var wg sync.WaitGroup
		wg.Go(func() { check("attacker 1", "2001:db8:a::1", true, time.Second) }) // 0-1 s
		synctest.Wait()
		wg.Go(func() { check("attacker 2", "2001:db8:a:1::1", true, time.Second) }) // waits for its network, then for the client
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		wg.Go(func() { check("client", "192.0.2.1", false, 2*time.Second) }) // 0.5-2.5 s
		wg.Wait()
		want := map[string]time.Duration{"attacker 1": 0, "client": 500 * time.Millisecond, "attacker 2": 2500 * time.Millisecond}
		if fmt.Sprint(started) != fmt.Sprint(want) {
			t.Fatalf("started %v, want %v", started, want)
		}
	})
}

// TestQueuedChecksWithinFailedLimit: requests of one network queued
// behind its running check are checked only while the network has failed
// checks left when their turn comes, so a queue cannot overdraw them.
func TestQueuedChecksWithinFailedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, _, _ := testServer(t, Limits{NetworkFailedBurst: 2})
		var compares atomic.Int64
		s.auth.compare = func(hash []byte, key string) error {
			compares.Add(1)
			time.Sleep(time.Second)
			return compareBcrypt(hash, key)
		}
		var wg sync.WaitGroup
		codes := make([]int, 4)
		for i := range codes {
			wg.Go(func() {
				codes[i] = update(s, fmt.Sprintf("192.0.2.%d", 1+i), "mallory", "guess", body("a1", digest("x"))).Code
			})
			synctest.Wait()
		}
		wg.Wait()
		if want := []int{401, 401, 429, 429}; !slices.Equal(codes, want) || compares.Load() != 2 {
			t.Fatalf("codes %v after %d checks, want %v after 2", codes, compares.Load(), want)
		}
	})
}
