package solver

import (
	"sync"
	"time"
)

// VerifiedFor is how long a passed whole check stands in for the next one:
// the gate's (or the permission module's) for the gate and the write of the
// same obtain, seconds later.
const VerifiedFor = 30 * time.Second

// Memo remembers, for VerifiedFor, the names whose whole delegation check
// passed and the target it led to: the gate's pass before an order stands
// in for the write's own resolve of the same obtain.
type Memo struct {
	mu       sync.Mutex
	verified map[string]verified // by identifier (wildcards with "*.")
	now      func() time.Time
}

type verified struct {
	target Target
	at     time.Time
}

func (m *Memo) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

// Remember notes that the whole delegation check of name (an identifier,
// "*." for a wildcard) passed, leading to target. Entries past VerifiedFor
// are dropped on the way, so the memo holds no more than the names checked
// within VerifiedFor.
func (m *Memo) Remember(name string, target Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	for n, v := range m.verified {
		if now.Sub(v.at) >= VerifiedFor {
			delete(m.verified, n)
		}
	}
	if m.verified == nil {
		m.verified = make(map[string]verified)
	}
	m.verified[Normalize(name)] = verified{target, now}
}

// Recall returns the target of a pass of name's whole check within
// VerifiedFor.
func (m *Memo) Recall(name string) (Target, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.verified[Normalize(name)]
	if !ok || m.clock().Sub(v.at) >= VerifiedFor {
		return Target{}, false
	}
	return v.target, true
}
