package providers

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// acmeDNSSlot is one value written to an account.
type acmeDNSSlot struct {
	value string
	done  bool      // its challenge no longer needs it
	since time.Time // when it was written
}

// acmeDNSSlotTTL is how long a value counts as in use at most: far longer
// than any challenge, it only keeps a delete that never comes (a bug, a
// lost record) from blocking the account for good.
const acmeDNSSlotTTL = 15 * time.Minute

// acmeDNSState is the process-wide bookkeeping of one acme-dns account.
type acmeDNSState struct {
	turn chan struct{} // held (full) while one write is under way

	mu       sync.Mutex
	recent   [2]*acmeDNSSlot // what the server holds: older, newer
	inFlight map[string][]*acmeDNSSlot
	changed  chan struct{} // closed and replaced when a slot frees
	lastSent time.Time
	now      func() time.Time
	slotTTL  time.Duration
}

// Destruct lets acmeDNSStates drop the bookkeeping of an account no
// config uses any more.
func (*acmeDNSState) Destruct() error { return nil }

// acmeDNSStates holds each account's bookkeeping for as long as a config
// uses it: a reload keeps the values in flight and the update spacing (the
// new config's writer takes its reference before the old one's Close), and
// the last config that names the account frees it.
var acmeDNSStates = caddy.NewUsagePool()

// acmeDNSKey names the bookkeeping of the account subdomain at server.
func acmeDNSKey(server, subdomain string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(server), "/")) + " " + strings.ToLower(strings.TrimSpace(subdomain))
}

// acmeDNSAccountState takes a reference to the shared state of the account
// at key, making it on first use; Close gives it back.
func acmeDNSAccountState(key string) *acmeDNSState {
	st, _, _ := acmeDNSStates.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &acmeDNSState{
			turn:     make(chan struct{}, 1),
			inFlight: map[string][]*acmeDNSSlot{},
			changed:  make(chan struct{}),
			now:      time.Now,
			slotTTL:  acmeDNSSlotTTL,
		}, nil
	})
	return st.(*acmeDNSState)
}

// Close gives back the writer's reference to its account's bookkeeping
// (once; later calls do nothing), for the Cleanup of the module that made
// it.
func (w *ACMEDNSWriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	_, err := acmeDNSStates.Delete(w.stateKey)
	return err
}

func (st *acmeDNSState) lock(ctx context.Context) error {
	select {
	case st.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (st *acmeDNSState) unlock() { <-st.turn }

// busy reports whether the next update must wait, and how many values of
// the account are in use.
func (st *acmeDNSState) busy() (bool, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.recent[0] != nil && !st.recent[0].done, st.inUse()
}

// inUse counts the values whose challenges are not over; st.mu is held.
func (st *acmeDNSState) inUse() int {
	n := 0
	for _, slots := range st.inFlight {
		n += len(slots)
	}
	return n
}

// waitEvictable waits until the value the next update replaces (the older of
// the two the server holds) is no longer in use. stale reports that it was
// given up after slotTTL instead.
func (st *acmeDNSState) waitEvictable(ctx context.Context) (stale bool, err error) {
	for {
		st.mu.Lock()
		older := st.recent[0]
		if older == nil || older.done {
			st.mu.Unlock()
			return false, nil
		}
		left := st.slotTTL - st.now().Sub(older.since)
		if left <= 0 {
			st.free(older)
			st.mu.Unlock()
			return true, nil
		}
		ch := st.changed
		st.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
		t.Stop()
	}
}

func (st *acmeDNSState) waitNextSecond(ctx context.Context) error {
	st.mu.Lock()
	last, now := st.lastSent, st.now()
	st.mu.Unlock()
	if last.IsZero() || now.Unix() != last.Unix() {
		return nil
	}
	return solver.Sleep(ctx, time.Unix(now.Unix()+1, 0).Sub(now))
}

// push records a value as the server's newest; inUse says whether a
// challenge now waits for its DeleteRecords. It returns the value's slot and
// how many values of the account are now in use.
func (st *acmeDNSState) push(value string, inUse bool) (*acmeDNSSlot, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := &acmeDNSSlot{value: value, done: !inUse, since: st.now()}
	st.recent[0], st.recent[1] = st.recent[1], s
	st.lastSent = st.now()
	if inUse {
		st.inFlight[value] = append(st.inFlight[value], s)
	}
	return s, st.inUse()
}

// releaseValue frees the oldest in-use write of value; false if there is
// none (never written, or freed already).
func (st *acmeDNSState) releaseValue(value string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	slots := st.inFlight[value]
	if len(slots) == 0 {
		return false
	}
	st.free(slots[0])
	return true
}

func (st *acmeDNSState) release(s *acmeDNSSlot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.free(s)
}

// free marks s done and drops it from inFlight; st.mu is held.
func (st *acmeDNSState) free(s *acmeDNSSlot) {
	if s.done {
		return
	}
	s.done = true
	slots := st.inFlight[s.value]
	for i, c := range slots {
		if c == s {
			slots = append(slots[:i:i], slots[i+1:]...)
			break
		}
	}
	if len(slots) == 0 {
		delete(st.inFlight, s.value)
	} else {
		st.inFlight[s.value] = slots
	}
	close(st.changed)
	st.changed = make(chan struct{})
}

// Interface guard.
