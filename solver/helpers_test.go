package solver

import "sync"

// sweepers holds one Sweeper per Provider of the tests, so that a test's
// sweeps share what a sweeper remembers (the keys it warned about) as the
// sweeps of one process do.
var sweepers sync.Map // *Provider -> *Sweeper

// sweeperOf returns p's Sweeper.
func sweeperOf(p *Provider) *Sweeper {
	s, _ := sweepers.LoadOrStore(p, NewSweeper(p))
	return s.(*Sweeper)
}
