package alias

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/internal/refusallog"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// remoteConn is the connection of a handshake from addr.
type remoteConn struct {
	net.Conn
	addr net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.addr }

// handshakeFrom is the context in which certmagic asks the permission
// module about a handshake from the client at addr ("ip:port").
func handshakeFrom(t *testing.T, addr string) context.Context {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{Conn: remoteConn{addr: a}}
	return context.WithValue(context.Background(), certmagic.ClientHelloInfoCtxKey, hello)
}

// TestPermissionClientShares: one client, then 16 clients of one network,
// flood handshakes for names under thousands of registrable domains whose
// checks never end (nameservers that never answer; domain_rate never
// binds); a customer's handshake from another network is still checked and
// admitted, and the flood's refusals name the per-client bound.
func TestPermissionClientShares(t *testing.T) {
	tests := []struct {
		name      string
		attackers int // addresses 192.0.2.1 ... of one /24
		wantLimit string
	}{
		{"one client", 1, solver.LimitPerAddress},
		{"16 clients of one network", 16, solver.LimitPerNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := startPermLab(t, `{}`)
			release := make(chan struct{})
			defer close(release)
			check := l.perm.admission.Check
			l.perm.admission.Check = func(ctx context.Context, name string) (time.Duration, error) {
				if strings.HasPrefix(name, "www.flood") {
					<-release // the flood's nameservers never answer
					return 0, fmt.Errorf("%w: %s: timeout", solver.ErrLookup, name)
				}
				return check(ctx, name)
			}
			refused := map[string]int{}
			for i := range 2000 {
				ctx, cancel := context.WithCancel(handshakeFrom(t, fmt.Sprintf("192.0.2.%d:%d", i%tt.attackers+1, 40000+i)))
				cancel() // the flood's clients give up at once; their checks run on
				err := l.perm.CertificateAllowed(ctx, fmt.Sprintf("www.flood%d.example", i))
				if o := (*solver.OverloadError)(nil); errors.As(err, &o) {
					refused[o.Limit]++
				}
			}
			if refused[tt.wantLimit] == 0 {
				t.Errorf("the flood was never refused by %s: %v", tt.wantLimit, refused)
			}
			if err := l.perm.CertificateAllowed(handshakeFrom(t, "198.51.100.7:50000"), "shop.example.com"); err != nil {
				t.Errorf("a customer's handshake from another network during the flood: %v, want admitted", err)
			}
		})
	}
}

// TestPermissionTimeoutNotRemembered: the resolver does not answer once
// for a delegated name (a lost packet); the refusal is not remembered, and
// the next handshake, in any spelling, is checked again and admitted.
func TestPermissionTimeoutNotRemembered(t *testing.T) {
	l := startPermLab(t, `{"negative_ttl":"1m"}`)
	check := l.perm.admission.Check
	first := true
	l.perm.admission.Check = func(ctx context.Context, name string) (time.Duration, error) {
		if first {
			first = false
			// The check's time runs out before any answer arrives.
			expired, cancel := context.WithDeadline(ctx, time.Now())
			defer cancel()
			return check(expired, name)
		}
		return check(ctx, name)
	}
	err := l.perm.CertificateAllowed(context.Background(), "shop.example.com")
	if !errors.Is(err, caddytls.ErrPermissionDenied) || !errors.Is(err, solver.ErrLookup) {
		t.Fatalf("the handshake whose lookup timed out: %v, want refused with a failed lookup", err)
	}
	for _, spelling := range []string{"shop.example.com", "SHOP.example.com."} {
		if err := l.perm.CertificateAllowed(context.Background(), spelling); err != nil {
			t.Errorf("%s once DNS answers again: %v, want admitted", spelling, err)
		}
	}
}

// TestRefusalLogSampled: zap's sampler lets one line per reason through
// per refusallog.Tick; the next line of the reason carries how many were
// held back, and another reason is not held back by the first.
func TestRefusalLogSampled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.InfoLevel)
		r := refusallog.New(zap.New(core))
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() { r.Write(zapcore.WarnLevel, solver.LimitPerAddress, "refused for load") })
		}
		wg.Wait()
		r.Write(zapcore.WarnLevel, solver.LimitDomainRate, "refused for load")
		r.Write(zapcore.WarnLevel, solver.LimitMaxChecks, "refused")
		time.Sleep(refusallog.Tick)
		r.Write(zapcore.WarnLevel, solver.LimitPerAddress, "refused for load")
		var got []string
		for _, e := range logs.All() {
			got = append(got, fmt.Sprintf("%s %v", e.Message, e.ContextMap()["not_logged_since_last"]))
		}
		want := []string{"refused for load 0", "refused for load 0", "refused 0", "refused for load 99"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("lines:\n got %q\nwant %q", got, want)
		}
	})
}
