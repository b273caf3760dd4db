package alias

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// countingTender is a zone writer's owner that counts its rounds and asks
// for the next one after next.
type countingTender struct {
	rounds atomic.Int32
	next   time.Duration
}

func (*countingTender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "dns_alias_test.tender", New: func() caddy.Module { return new(countingTender) }}
}

func (c *countingTender) TendZone(context.Context) time.Duration {
	c.rounds.Add(1)
	return c.next
}

// TestTendZones: the app's run loop runs each zone writer owner's round
// (ZoneTender) at once and then after the delay the round asks for (at
// least a second), until the loop ends; an owner that tends nothing is
// left alone.
func TestTendZones(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var modules registry
		minute, eager := &countingTender{next: time.Minute}, &countingTender{next: 0}
		modules.addWriter(&ZoneWriter{owner: minute})
		modules.addWriter(&ZoneWriter{owner: eager})
		modules.addWriter(&ZoneWriter{owner: &App{}}) // no ZoneTender
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { tendZones(ctx, &modules); close(done) }()
		synctest.Wait()
		if minute.rounds.Load() != 1 || eager.rounds.Load() != 1 {
			t.Fatalf("rounds at the start: %d and %d, want 1 each", minute.rounds.Load(), eager.rounds.Load())
		}
		time.Sleep(150 * time.Second)
		synctest.Wait()
		if got, want := minute.rounds.Load(), int32(3); got != want {
			t.Errorf("after 150 s, rounds every minute: %d, want %d", got, want)
		}
		if got, want := eager.rounds.Load(), int32(151); got != want {
			t.Errorf("after 150 s, rounds asking for none: %d, want %d (one a second at most)", got, want)
		}
		cancel()
		<-done
	})
}
