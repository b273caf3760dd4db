package solver

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/libdns/libdns"
)

// TestRestoreWritesBackSweptValue: a renewal fails (the storage is down
// from here) and meanwhile a sweep elsewhere removes the entry and then
// the value. Restore stores the entry again and writes the value back; a
// write-back the inner provider refuses is tried again at the next
// Restore, though the entry is listed by then. A Restore after a renewal
// that failed with nothing swept writes nothing.
func TestRestoreWritesBackSweptValue(t *testing.T) {
	ctx := context.Background()
	refused := errors.New(`dns response error code "REFUSED" (5)`)
	for _, tc := range []struct {
		name          string
		swept         bool
		refuseFirst   bool
		wantRestored  []int // per Restore call
		wantAppendsOf int   // appends of the value through the writer in all
	}{
		{"nothing swept", false, false, []int{0}, 1},
		{"entry and value swept", true, false, []int{1}, 2},
		{"write-back refused once", true, true, []int{0, 1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw := &fakeWriter{}
			p := staticProvider(t, fw)
			j := &memJournal{}
			p.Journal = j
			mustAppend(t, p, "example.com.", txt("_acme-challenge", "live"))
			s := sweeperOf(p)
			j.failPuts(errors.New("connection refused"))
			if err := s.Renew(ctx); err == nil || !s.Missed() {
				t.Fatalf("Renew with the storage down: %v, missed %v", err, s.Missed())
			}
			j.failPuts(nil)
			if tc.swept {
				es, _ := j.List(ctx)
				j.DeleteKey(ctx, es[0].Key)
				fw.DeleteRecords(ctx, testAliasZone+".", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: digest("live")}})
			}
			if tc.refuseFirst {
				fw.setFailures(func(string, libdns.RR) error { return refused }, nil)
			}
			for i, want := range tc.wantRestored {
				n, err := s.Restore(ctx)
				if n != want {
					t.Errorf("Restore %d: wrote back %d (%v), want %d", i+1, n, err, want)
				}
				if (err != nil) != (tc.refuseFirst && i == 0) || s.Missed() != (err != nil) {
					t.Errorf("Restore %d: %v, missed %v", i+1, err, s.Missed())
				}
				fw.setFailures(nil, nil)
			}
			if !slices.Contains(fw.values(testStaticAlias), digest("live")) || j.len() != 1 {
				t.Errorf("after Restore: alias %v, %d journal entries; want the value and its entry", fw.values(testStaticAlias), j.len())
			}
			if n := len(fw.callsOf("append")); n != tc.wantAppendsOf {
				t.Errorf("%d appends, want %d", n, tc.wantAppendsOf)
			}
		})
	}
}
