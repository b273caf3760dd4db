package solver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestAdmissionClientShares: attackers ask for names under thousands of
// registrable domains whose DNS never answers (domain_rate never binds);
// once half of max_checks are under way, each address and each network
// gets its share and no more, the last quarter is kept for addresses with
// no check under way, and a client of another network still has its new
// name checked and admitted.
func TestAdmissionClientShares(t *testing.T) {
	v4 := func(format string, i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf(format, i)) }
	tests := []struct {
		name        string
		attackers   func(i int) netip.Addr
		addresses   int
		perAddress  int // 0: the default
		perNetwork  int
		wantStarted int
		wantLimit   string // the bound that refuses the attackers' last names
		wantAdmit   bool   // the other client's name is checked
	}{
		{"one address", func(int) netip.Addr { return v4("192.0.2.%d", 1) }, 1, 0, 0, DefaultMaxChecks / 2, LimitPerAddress, true},
		{"16 addresses of one /24", func(i int) netip.Addr { return v4("192.0.2.%d", i+1) }, 16, 0, 0, DefaultMaxChecks / 2, LimitPerNetwork, true},
		{"16 addresses of 16 networks", func(i int) netip.Addr { return v4("10.%d.0.1", i) }, 16, 0, 0, DefaultMaxChecks * 3 / 4, LimitMaxChecks, true},
		{"256 IPv6 /64s of one /48", func(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:1:%x::1", i)) }, 256, 0, 0, DefaultMaxChecks / 2, LimitPerNetwork, true},
		{"per-client bounds off", func(int) netip.Addr { return v4("192.0.2.%d", 1) }, 1, -1, -1, DefaultMaxChecks, LimitMaxChecks, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var started atomic.Int32
				a := &Admission{MaxChecksPerAddress: tt.perAddress, MaxChecksPerNetwork: tt.perNetwork, CheckTimeout: time.Minute,
					Check: func(ctx context.Context, name string) (time.Duration, error) {
						if strings.HasPrefix(name, "www.flood") {
							started.Add(1)
							<-ctx.Done() // a nameserver that never answers
							return 0, fmt.Errorf("%w: %s: %w", ErrLookup, name, ctx.Err())
						}
						return time.Minute, nil
					}}
				// The flood's clients give up at once; the checks they
				// started run on.
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				refused := map[string]int{}
				for i := range 4000 {
					err := a.Allow(ctx, fmt.Sprintf("www.flood%d.example", i), tt.attackers(i%tt.addresses))
					var o *OverloadError
					if !errors.As(err, &o) {
						continue
					}
					refused[o.Limit]++
				}
				synctest.Wait()
				if got := int(started.Load()); got != tt.wantStarted {
					t.Errorf("the attack started %d checks, want %d (refusals: %v)", got, tt.wantStarted, refused)
				}
				if refused[tt.wantLimit] == 0 {
					t.Errorf("no refusal by %s; refusals: %v", tt.wantLimit, refused)
				}
				err := a.Allow(context.Background(), "shop.customer.example", netip.MustParseAddr("203.0.113.9"))
				if tt.wantAdmit && err != nil {
					t.Errorf("a client of another network during the attack: %v, want its name checked and admitted", err)
				}
				if !tt.wantAdmit && !errors.Is(err, ErrOverload) {
					t.Errorf("with the per-client bounds off: %v, want the pool full", err)
				}
				time.Sleep(time.Minute) // the attack's checks time out
				synctest.Wait()
				if n := a.Checking(); n != 0 {
					t.Errorf("%d checks under way after CheckTimeout", n)
				}
			})
		})
	}
}

// allowAsync asks on a goroutine of its own (whose handshake waits) and
// returns where the answer arrives.
func allowAsync(a *Admission, name string, source netip.Addr) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- a.Allow(context.Background(), name, source) }()
	return ch
}

// TestAdmissionClientSharesJoinAndRelease: a client at its bound still
// shares a check another client started (it costs nothing more), its share
// comes back when its checks end, and with no contention it is not
// bounded.
func TestAdmissionClientSharesJoinAndRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		a := &Admission{MaxChecks: 2, MaxChecksPerAddress: 1, Check: func(ctx context.Context, name string) (time.Duration, error) {
			<-release
			return time.Minute, nil
		}}
		busy, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
		first := allowAsync(a, "a.example.com", busy)
		shared := allowAsync(a, "b.example.com", other)
		synctest.Wait()
		if err := a.Allow(context.Background(), "c.example.com", busy); !errors.Is(err, ErrOverload) || !strings.Contains(err.Error(), "1 under way for the client 192.0.2.1/32, the most max_checks_per_address allows once half of max_checks are under way") {
			t.Fatalf("a second check for a client at its bound: %v, want refused for max_checks_per_address", err)
		}
		joined := allowAsync(a, "b.example.com", busy)
		synctest.Wait()
		close(release)
		for _, ch := range []<-chan error{first, shared, joined} {
			if err := <-ch; err != nil {
				t.Fatalf("Allow = %v, want a yes", err)
			}
		}
		if err := a.Allow(context.Background(), "c.example.com", busy); err != nil {
			t.Fatalf("after its check ended: %v, want the client's next name checked", err)
		}
		if n := len(a.held); n != 0 {
			t.Errorf("%d client counts left with no check under way, want 0", n)
		}
	})
}

// TestAdmissionBurstUncontended: while fewer than half of max_checks are
// under way, one client's burst of new names (a platform warming 30
// customers' names at once) is checked at once, not refused for its share.
func TestAdmissionBurstUncontended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		a := &Admission{Check: func(ctx context.Context, name string) (time.Duration, error) {
			<-release
			return time.Minute, nil
		}}
		client := netip.MustParseAddr("192.0.2.1")
		var answers []<-chan error
		for i := range 30 {
			answers = append(answers, allowAsync(a, fmt.Sprintf("shop%d.example.com", i), client))
		}
		synctest.Wait()
		if n := a.Checking(); n != 30 {
			t.Fatalf("%d of 30 checks under way, want all", n)
		}
		close(release)
		for _, ch := range answers {
			if err := <-ch; err != nil {
				t.Errorf("a name of the burst: %v, want admitted", err)
			}
		}
	})
}
