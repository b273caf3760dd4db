package solver

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
)

// setWriter is an inner provider with an API of record sets, as
// libdns/powerdns and libdns/route53 use theirs: it appends or deletes a
// value by reading the name's whole set and writing the set back, one
// round trip (a millisecond) later.
type setWriter struct {
	mu   sync.Mutex
	sets map[string][]string
}

func (w *setWriter) change(zone string, recs []libdns.Record, apply func(set []string, value string) []string) ([]libdns.Record, error) {
	for _, r := range recs {
		rr := r.RR()
		name := Normalize(libdns.AbsoluteName(rr.Name, zone))
		w.mu.Lock()
		set := slices.Clone(w.sets[name])
		w.mu.Unlock()
		time.Sleep(time.Millisecond) // between the read and the write back
		w.mu.Lock()
		if w.sets == nil {
			w.sets = map[string][]string{}
		}
		w.sets[name] = apply(set, rr.Data)
		w.mu.Unlock()
	}
	return recs, nil
}

func (w *setWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return w.change(zone, recs, func(set []string, v string) []string { return append(set, v) })
}

func (w *setWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return w.change(zone, recs, func(set []string, v string) []string {
		return slices.DeleteFunc(set, func(s string) bool { return s == v })
	})
}

func (w *setWriter) values(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.sets[Normalize(name)])
	sort.Strings(out)
	return out
}

// TestConcurrentWritesOneName: two challenges at one alias name (apex and
// wildcard, or two domains on a static alias) written and deleted at the
// same moment through a provider that rewrites the name's set: both values
// are there after the writes, and none after both deletes. Without the
// provider's lock per name, each call wrote back a set without the other's
// change.
func TestConcurrentWritesOneName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &setWriter{}
		rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "sets"})
		p := &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}}
		var wg sync.WaitGroup
		written := make([][]libdns.Record, 2)
		for i, domain := range []string{"a.example.com.", "b.example.com."} {
			wg.Go(func() {
				out, err := p.AppendRecords(context.Background(), domain, []libdns.Record{txt("_acme-challenge", domain)})
				if err != nil {
					t.Errorf("AppendRecords(%s): %v", domain, err)
				}
				written[i] = out
			})
		}
		wg.Wait()
		if got, want := w.values(testStaticAlias), digests("a.example.com.", "b.example.com."); !slices.Equal(got, want) {
			t.Fatalf("after two concurrent writes %s holds %q, want both values %q", testStaticAlias, got, want)
		}
		for i, domain := range []string{"a.example.com.", "b.example.com."} {
			wg.Go(func() {
				if _, err := p.DeleteRecords(context.Background(), domain, written[i]); err != nil {
					t.Errorf("DeleteRecords(%s): %v", domain, err)
				}
			})
		}
		wg.Wait()
		if got := w.values(testStaticAlias); len(got) != 0 {
			t.Errorf("after both deletes %s holds %q", testStaticAlias, got)
		}
	})
}
