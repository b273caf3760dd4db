package acmednsserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
)

// slowChecks makes every key comparison of s take d of synctest's time, as
// a cost-14 bcrypt check takes 1-1.5 s of a core (the hashes of the tests
// are of the lowest cost, so the real comparison adds next to nothing).
func slowChecks(s *Server, d time.Duration) {
	s.auth.compare = func(hash []byte, key string) error {
		time.Sleep(d)
		return compareBcrypt(hash, key)
	}
}

// attackers are the sources of the attacks of issue 29: one address, the
// 16 /64s of an IPv6 /60, 256 /64s of one /48.
func attackers(n int, network string) []string {
	p := netip.MustParsePrefix(network).Addr().As16()
	out := make([]string, n)
	for i := range n {
		a := p
		a[6], a[7] = byte(i>>8), byte(i)
		a[15] = 1
		out[i] = netip.AddrFrom16(a).String()
	}
	return out
}

// TestLegitimateUpdatesUnderAttack: while sources send updates naming an
// account that does not exist and one that does with a wrong key, each at
// the most its source's rate allows, and key checks take 1.25 s (cost 14),
// an account that updated before the attack and one whose first update
// comes during it each get at least 9 of 10 updates through, each within
// 5 s. Before the fix, the attack held all 4 key check slots and nearly
// every update was refused with 503 busy.
func TestLegitimateUpdatesUnderAttack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []string
	}{
		{"1 source", attackers(1, "2001:db8:a::/48")},
		{"16 sources of one /60", attackers(16, "2001:db8:b::/48")},
		{"256 /64s of one /48", attackers(256, "2001:db8:c::/48")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _, _, obs := testServer(t, Limits{})
				s.refusals = refusallog.New(zap.NewNop())
				slowChecks(s, 1250*time.Millisecond)
				// alice updated before the attack; bob's first update
				// comes during it.
				if w := update(s, "192.0.2.10", "alice", "alice-key", body("a1", digest("before"))); w.Code != http.StatusOK {
					t.Fatalf("alice before the attack: %d %s", w.Code, w.Body)
				}
				stop := make(chan struct{})
				var attack sync.WaitGroup
				for i, src := range tc.sources {
					attack.Go(func() {
						for n := 0; ; n++ {
							user, key := "mallory", "guess"
							if n%2 == 1 {
								user, key = "alice", fmt.Sprint("guess-", n)
							}
							update(s, src, user, key, body("a1", digest("x")))
							select {
							case <-stop:
								return
							case <-time.After(200*time.Millisecond + time.Duration(i)*time.Microsecond):
							}
						}
					})
				}
				time.Sleep(time.Second)
				var legit sync.WaitGroup
				results := map[string][]string{}
				var mu sync.Mutex
				for _, c := range []struct{ user, key, sub, src string }{
					{"alice", "alice-key", "a1", "192.0.2.10"},
					{"bob", "bob-key", "b1", "10.1.2.3"},
				} {
					legit.Go(func() {
						for i := range 10 {
							start := time.Now()
							w := update(s, c.src, c.user, c.key, body(c.sub, digest(fmt.Sprint(c.user, i))))
							took := time.Since(start)
							mu.Lock()
							results[c.user] = append(results[c.user], fmt.Sprintf("%d/%v", w.Code, took))
							if w.Code == http.StatusOK && took <= 5*time.Second {
								results[c.user+" ok"] = append(results[c.user+" ok"], "")
							}
							mu.Unlock()
							time.Sleep(3 * time.Second)
						}
					})
				}
				legit.Wait()
				close(stop)
				attack.Wait()
				t.Logf("outcomes %v", obs.got)
				for _, user := range []string{"alice", "bob"} {
					t.Logf("%s: %v", user, results[user])
					if ok := len(results[user+" ok"]); ok < 9 {
						t.Errorf("%s: %d of 10 updates through within 5 s: %v", user, ok, results[user])
					}
				}
				if obs.got["/refused_rate"] == 0 {
					t.Errorf("the attack was never refused: outcomes %v", obs.got)
				}
			})
		})
	}
}

// TestVerifiedKeyCostsNoCheck: once its key checked out, an account's
// updates take no key check slot and no bcrypt, and a wrong key still
// does both.
func TestVerifiedKeyCostsNoCheck(t *testing.T) {
	s, _, _, _ := testServer(t, Limits{})
	compares := 0
	s.auth.compare = func(hash []byte, key string) error { compares++; return compareBcrypt(hash, key) }
	for i, tc := range []struct {
		key      string
		status   int
		compares int
	}{
		{"alice-key", 200, 1},
		{"alice-key", 200, 1},
		{"alice-key", 200, 1},
		{"wrong", 401, 2},
		{"alice-key", 200, 2},
	} {
		if w := update(s, "192.0.2.1", "alice", tc.key, body("a1", digest(fmt.Sprint(i)))); w.Code != tc.status || compares != tc.compares {
			t.Fatalf("update %d: status %d after %d compares, want %d after %d", i, w.Code, compares, tc.status, tc.compares)
		}
	}
}

// TestFailedChecksLimited: a source, and apart its network, is refused
// before a key check once its failed checks are spent; a key its account
// verified before still goes through from there.
func TestFailedChecksLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, _, _ := testServer(t, Limits{SourceFailedBurst: 2, NetworkFailedBurst: 3})
		if w := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest("0"))); w.Code != 200 {
			t.Fatalf("first update: %d", w.Code)
		}
		var codes []int
		for _, src := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.1"} {
			codes = append(codes, update(s, src, "mallory", "guess", body("a1", digest("x"))).Code)
		}
		if want := []int{401, 401, 429, 401, 429, 401}; !slices.Equal(codes, want) {
			t.Fatalf("codes %v, want %v", codes, want)
		}
		if w := update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest("1"))); w.Code != 200 {
			t.Fatalf("a verified key from a source out of failed checks: %d", w.Code)
		}
		time.Sleep(30 * time.Second) // the source's next failed check
		if w := update(s, "192.0.2.1", "mallory", "guess", body("a1", digest("x"))); w.Code != 401 {
			t.Fatalf("30 s later: %d", w.Code)
		}
	})
}

// TestRegisteredCacheHoldsVerifiedOnly: registered accounts named with
// wrong keys are not kept in memory, so they cannot fill it; past its
// bound the least recently used account gives way and is read from the
// store again. Before the fix, wrong keys filled the cache and right ones
// got 503 from then on.
func TestRegisteredCacheHoldsVerifiedOnly(t *testing.T) {
	store := &memStore{}
	s := registerServer(t, store, &fakeRecords{})
	s.registered = newLRU[string, *account](2)
	var regs []registration
	for i := range 3 {
		w := postRegister(s, fmt.Sprintf("10.0.%d.1", i), "")
		var reg registration
		if err := json.Unmarshal(w.Body.Bytes(), &reg); err != nil || w.Code != 201 {
			t.Fatalf("register: %d %s", w.Code, w.Body)
		}
		regs = append(regs, reg)
	}
	for i, reg := range regs {
		if w := update(s, fmt.Sprintf("192.0.2.%d", i), reg.Username, "wrong", body(reg.Subdomain, digest("x"))); w.Code != 401 {
			t.Fatalf("wrong key: %d", w.Code)
		}
	}
	if n := s.registered.len(); n != 0 {
		t.Fatalf("%d accounts kept after wrong keys only", n)
	}
	for i, reg := range append(regs, regs[0]) {
		if w := update(s, "198.51.100.1", reg.Username, reg.Password, body(reg.Subdomain, digest(fmt.Sprint(i)))); w.Code != 200 {
			t.Fatalf("account %d with its key: %d %s", i, w.Code, w.Body)
		}
	}
	var kept []string
	for _, a := range s.registered.values() {
		kept = append(kept, a.Username)
	}
	if want := []string{regs[0].Username, regs[2].Username}; !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v (most recently used first)", kept, want)
	}
}

// TestRefusalTimeTellsNoUser: with accounts of different bcrypt costs, a
// wrong key for the cheapest account, one for the dearest and an unknown
// user cost the same bcrypt work (the check's time here is 2^cost ms); and
// whatever the key check slots and the source's failed checks, a known and
// an unknown user get the same status. Before the fix, a wrong key for a
// cost-4 account was refused in 1/4 of an unknown user's time.
func TestRefusalTimeTellsNoUser(t *testing.T) {
	cheap, dear := bcrypt.MinCost, bcrypt.MinCost+2
	hashAt := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("right"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	for _, tc := range []struct {
		name   string
		setup  func(*Server, *sync.WaitGroup)
		status int
	}{
		{"free", func(*Server, *sync.WaitGroup) {}, 401},
		{"slots taken", func(s *Server, holders *sync.WaitGroup) {
			holders.Go(func() {
				release, _ := s.auth.checks.acquire(t.Context(), netip.MustParseAddr("198.51.100.1"), false)
				time.Sleep(time.Minute)
				release()
			})
			synctest.Wait()
		}, 503},
		{"failed checks spent", func(s *Server, _ *sync.WaitGroup) {
			for i := range 3 {
				for range 2 {
					s.sources.failed(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)}))
				}
			}
		}, 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, err := New(Config{Zone: zone, Records: &fakeRecords{}, Limits: Limits{ConcurrentKeyChecks: 1}, Accounts: []Account{
					{Username: "cheap", KeyHash: hashAt(cheap), Subdomain: "c"},
					{Username: "dear", KeyHash: hashAt(dear), Subdomain: "d"},
				}})
				if err != nil {
					t.Fatal(err)
				}
				s.auth.compare = func(hash []byte, key string) error {
					cost, _ := bcrypt.Cost(hash)
					time.Sleep(time.Duration(1<<cost) * time.Millisecond)
					return compareBcrypt(hash, key)
				}
				var holders sync.WaitGroup
				defer holders.Wait()
				tc.setup(s, &holders)
				var took []time.Duration
				for i, user := range []string{"cheap", "dear", "nobody"} {
					start := time.Now()
					w := update(s, fmt.Sprintf("192.0.2.%d", 1+i), user, "wrong", body("c", digest("x")))
					took = append(took, time.Since(start))
					if w.Code != tc.status {
						t.Errorf("%s: status %d, want %d", user, w.Code, tc.status)
					}
				}
				if took[0] != took[2] || took[1] != took[2] {
					t.Fatalf("refused after %v (cost %d), %v (cost %d), %v (no such user)", took[0], cheap, took[1], dear, took[2])
				}
			})
		})
	}
}

// TestSourceTableNeverShutsOut: with the source table full of sources that
// have spent their bursts, a new source is served at once (taking the
// place of the one seen longest ago), and the table stays at its bound.
// Before the fix, every new source was refused until a bucket was full
// again, and each refusal scanned the whole table under its lock.
func TestSourceTableNeverShutsOut(t *testing.T) {
	now := time.Unix(0, 0)
	l := newSourceLimits(Limits{Sources: 100, SourceBurst: 2}.withDefaults())
	l.now = func() time.Time { return now }
	for i := range 100 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i), 1})
		for l.allow(src) {
		}
	}
	for i := range 2_000 {
		if !l.allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})) {
			t.Fatalf("new source %d refused with the table full", i)
		}
	}
	if sources, _ := l.tracked(); sources != 100 {
		t.Fatalf("tracked %d sources", sources)
	}
}

// BenchmarkSourceTableFull: what a request of a new source costs with the
// table full, at two table sizes (it should not grow with the table).
func BenchmarkSourceTableFull(b *testing.B) {
	for _, size := range []int{4096, 65536} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			l := newSourceLimits(Limits{Sources: size}.withDefaults())
			i := 0
			for b.Loop() {
				i++
				l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			}
		})
	}
}

// TestRefusalsLogSampled: 2,000 refusals of one source for one reason log
// one line in each 10 s, the next saying how many were not logged; another
// source or reason has lines of its own. Metrics count every refusal.
// Before the fix, each refusal logged a line.
func TestRefusalsLogSampled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, logs, obs := testServer(t, Limits{SourceRate: 1000, SourceBurst: 3000, SourceFailedRate: 0.001})
		for range 2_000 {
			update(s, "192.0.2.1", "alice", "", body("a1", digest("x"))) // over the source's failed checks after 2
		}
		update(s, "198.51.100.1", "alice", "", body("a1", digest("x")))
		time.Sleep(refusallog.Tick)
		update(s, "192.0.2.1", "alice", "", body("a1", digest("x")))
		var lines []string
		for _, e := range logs.FilterMessage("acme-dns update refused").All() {
			lines = append(lines, fmt.Sprintf("%v %v %v", e.ContextMap()["source"], e.ContextMap()["reason"], e.ContextMap()["not_logged_since_last"]))
		}
		want := []string{
			"192.0.2.1 wrong key 0",
			"192.0.2.1 over the failed key checks of the source or its network 0",
			"198.51.100.1 wrong key 0",
			"192.0.2.1 over the failed key checks of the source or its network 1997",
		}
		if !slices.Equal(lines, want) {
			t.Fatalf("log lines:\n%v\nwant\n%v", lines, want)
		}
		if n := obs.got["alice/refused_auth"] + obs.got["/refused_rate"]; n != 2_002 {
			t.Fatalf("%d refusals counted, want 2002: %v", n, obs.got)
		}
	})
}
