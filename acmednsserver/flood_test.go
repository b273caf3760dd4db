package acmednsserver

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
)

// TestFloodBounded: 16,384 requests from as many sources, 32 at once, cost
// the server bounded memory (the source and network tables stay within
// their 4096 entries) and no goroutine of its own; every one is refused and
// none writes. Key checks fail without bcrypt's time (BenchmarkFlood
// measures the flood with real checks, TestLegitimateUpdatesUnderAttack
// with their time): the race detector makes bcrypt slow enough that real
// checks would take this test a minute.
func TestFloodBounded(t *testing.T) {
	s, recs, _, obs := testServer(t, Limits{})
	s.refusals = refusallog.New(zap.NewNop()) // the test's observed log would keep every line
	s.auth.compare = func([]byte, string) error { return bcrypt.ErrMismatchedHashAndPassword }
	flood(t, s, 32, 512)
	t.Logf("outcomes %v", obs.got)
	if recs.writes != 0 {
		t.Fatalf("%d written", recs.writes)
	}
}

// flood sends clients*perClient updates with wrong keys from as many
// sources, clients at once, and fails t unless every one is refused, the
// source table stays within its bound, at most 4 key checks run at once,
// the heap grows by less than 2 MiB and no goroutine is left.
func flood(t testing.TB, s *Server, clients, perClient int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	var refused, maxChecks atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				n := c*perClient + i
				src := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
				r := httptest.NewRequest(http.MethodPost, "/update", strings.NewReader(body("a1", digest("x"))))
				r.RemoteAddr = net.JoinHostPort(src.String(), "1")
				r.Header.Set("X-Api-User", "alice")
				r.Header.Set("X-Api-Key", fmt.Sprint("wrong-", n))
				w := httptest.NewRecorder()
				s.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					refused.Add(1)
				}
				if n := int64(s.auth.checks.running()); n > maxChecks.Load() {
					maxChecks.Store(n)
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	sources, networks := s.sources.tracked()
	t.Logf("%d requests: %d refused, heap grown %d KiB, %d sources and %d networks tracked, at most %d key checks at once",
		clients*perClient, refused.Load(), grown>>10, sources, networks, maxChecks.Load())
	if refused.Load() != int64(clients*perClient) {
		t.Fatalf("%d refused of %d", refused.Load(), clients*perClient)
	}
	if sources > 4096 || networks > 4096 || maxChecks.Load() > 4 {
		t.Fatalf("%d sources and %d networks tracked, %d key checks at once", sources, networks, maxChecks.Load())
	}
	// 4096 sources' two buckets and the networks', their lists and maps:
	// well under 2 MiB.
	if grown > 2<<20 {
		t.Errorf("the heap grew by %d KiB under the flood", grown>>10)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after the flood, %d before", n, goroutines)
	}
}

// BenchmarkFlood: the flood of TestFloodBounded with real key checks, per
// request (go test -bench Flood ./acmednsserver).
func BenchmarkFlood(b *testing.B) {
	s, _, _, _ := testServer(b, Limits{})
	s.refusals = refusallog.New(zap.NewNop())
	b.ResetTimer()
	flood(b, s, 32, b.N/32+1)
}

// BenchmarkRefusedUpdate: what a request refused by the source's rate
// costs (the path a flood from one source takes after its burst).
func BenchmarkRefusedUpdate(b *testing.B) {
	s, _, _, _ := testServer(b, Limits{})
	payload := body("a1", digest("x"))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/update", strings.NewReader(payload))
		r.RemoteAddr = "192.0.2.1:1"
		r.Header.Set("X-Api-User", "alice")
		r.Header.Set("X-Api-Key", "wrong")
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
}
