package alias

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// switchedStorage is a view of a shared storage that fails every call
// while down is set, as caddy-storage-redis v1.8.1 does when Redis is gone:
// one instance's connection to the storage. Like that module, it answers
// Load and Stat with fs.ErrNotExist then, not with an error.
type switchedStorage struct {
	certmagic.Storage
	down atomic.Bool
}

func (s *switchedStorage) err() error {
	if s.down.Load() {
		return errStorageDown
	}
	return nil
}

func (s *switchedStorage) Lock(ctx context.Context, name string) error {
	return cmpErr(s.err(), func() error { return s.Storage.Lock(ctx, name) })
}

func (s *switchedStorage) Unlock(ctx context.Context, name string) error {
	return cmpErr(s.err(), func() error { return s.Storage.Unlock(ctx, name) })
}

func (s *switchedStorage) Store(ctx context.Context, key string, v []byte) error {
	return cmpErr(s.err(), func() error { return s.Storage.Store(ctx, key, v) })
}

func (s *switchedStorage) Delete(ctx context.Context, key string) error {
	return cmpErr(s.err(), func() error { return s.Storage.Delete(ctx, key) })
}

func (s *switchedStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.err(); err != nil {
		return nil, fs.ErrNotExist
	}
	return s.Storage.Load(ctx, key)
}

func (s *switchedStorage) List(ctx context.Context, prefix string, rec bool) ([]string, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Storage.List(ctx, prefix, rec)
}

func (s *switchedStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := s.err(); err != nil {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return s.Storage.Stat(ctx, key)
}

// cmpErr returns err, or else what f returns.
func cmpErr(err error, f func() error) error {
	if err != nil {
		return err
	}
	return f()
}

// zoneWriter is an inner provider holding the TXT values of one alias
// zone, by name, and counting the deletes of each value.
type zoneWriter struct {
	mu      sync.Mutex
	values  map[string][]string
	deletes map[string]int
}

func (w *zoneWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.values == nil {
		w.values = map[string][]string{}
	}
	for _, r := range recs {
		rr := r.RR()
		name := libdns.AbsoluteName(rr.Name, zone)
		if !slices.Contains(w.values[name], rr.Data) {
			w.values[name] = append(w.values[name], rr.Data)
		}
	}
	return recs, nil
}

func (w *zoneWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deletes == nil {
		w.deletes = map[string]int{}
	}
	for _, r := range recs {
		rr := r.RR()
		name := libdns.AbsoluteName(rr.Name, zone)
		w.values[name] = slices.DeleteFunc(w.values[name], func(v string) bool { return v == rr.Data })
		w.deletes[rr.Data]++
	}
	return recs, nil
}

// serves reports whether the zone holds value at name and how often value
// was deleted.
func (w *zoneWriter) serves(name, value string) (held bool, deletes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.values[solver.FQDN(name)], value), w.deletes[value]
}

// instance is one Caddy of a cluster in a test: an app with the journal
// on its view of the shared storage and alias providers confined to the
// given zones (follow mode, as the acme-dns endpoint's), all written by w.
type instance struct {
	app    *App
	alias  []*Provider
	rounds journalRounds
	logs   *observer.ObservedLogs
}

func newInstance(t *testing.T, storage certmagic.Storage, w solver.Writer, after time.Duration, zones ...string) *instance {
	t.Helper()
	_, app := standalone(t)
	core, logs := observer.New(zapcore.DebugLevel)
	app.logger = zap.New(core)
	app.journal = &storageJournal{storage: storage, lease: after, reach: &solver.Reachability{MaxGap: reachGap(after)}}
	in := &instance{app: app, logs: logs}
	for _, zone := range zones {
		rule := &solver.Rule{Follow: true, Zones: []string{zone}, Writer: w, WriterName: "fake"}
		if err := rule.Validate(); err != nil {
			t.Fatal(err)
		}
		wp := &solver.Provider{Mapper: &solver.Mapper{Default: rule}, Logger: app.logger, Journal: app.journal}
		p := &Provider{writer: wp, sweeper: app.newSweeper(wp)}
		app.register(p, nil)
		in.alias = append(in.alias, p)
	}
	in.rounds = journalRounds{journal: app.journal, modules: &app.modules, metrics: app.metrics, logger: app.logger,
		after: after, interval: time.Second}
	return in
}

func (in *instance) logged(msg string) int { return in.logs.FilterMessage(msg).Len() }

// TestSweepAfterStorageOutage: a storage outage longer than sweep_after
// (3 s; sweeps every second) sweeps no live value. With the storage down
// for every instance, the sweeper counts an entry's age from when it saw
// the storage reachable again, so the owner's renewals land first; a dead
// owner's entry (written just before the outage) is swept sweep_after
// after the storage came back, not before. With the storage down for the
// owner only, a sweeper that saw it reachable throughout takes the owner's
// unrenewed entry and value, and the owner, back, writes both again.
func TestSweepAfterStorageOutage(t *testing.T) {
	const after = 3 * time.Second
	live, dead := "live."+sweepZone, "dead."+sweepZone
	for _, tc := range []struct {
		name      string
		ownerOnly bool
	}{
		{"storage down for every instance", false},
		{"storage down for the owner only", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				shared := newMemStorage()
				ownerView, sweeperView := &switchedStorage{Storage: shared}, &switchedStorage{Storage: shared}
				w := &zoneWriter{}
				owner := newInstance(t, ownerView, w, after, sweepZone)
				sweeper := newInstance(t, sweeperView, w, after, sweepZone)
				var wg sync.WaitGroup
				for _, in := range []*instance{owner, sweeper} {
					wg.Go(func() { in.rounds.run(ctx) })
				}
				defer wg.Wait()
				defer cancel()
				time.Sleep(2 * after) // both have seen the storage for long

				if err := owner.alias[0].writer.PresentAt(ctx, live, digest("live")); err != nil {
					t.Fatal(err)
				}
				// The dead owner wrote its value and entry, then died.
				w.AppendRecords(ctx, sweepZone+".", []libdns.Record{libdns.TXT{Name: "dead", Text: digest("dead")}})
				storeEntry(t, shared, journalPrefix+"/dead.json", solver.JournalEntry{ID: "dead", Domain: dead, Zone: sweepZone,
					Name: dead, Type: "TXT", Value: digest("dead"), Writer: "fake", Written: time.Now(), Lease: after})

				time.Sleep(500 * time.Millisecond)
				ownerView.down.Store(true)
				sweeperView.down.Store(!tc.ownerOnly)
				time.Sleep(4 * after) // the outage: longer than sweep_after
				ownerView.down.Store(false)
				sweeperView.down.Store(false)
				up := time.Now()

				if tc.ownerOnly {
					if _, deletes := w.serves(live, digest("live")); deletes == 0 {
						t.Fatalf("the sweeper that could reach the storage did not take the owner's unrenewed value: the case tests nothing")
					}
					time.Sleep(2 * time.Second) // a renewal round of the owner's
					if held, _ := w.serves(live, digest("live")); !held {
						t.Errorf("the owner did not write back its live value %s after the outage", time.Since(up))
					}
					if !journalHolds(t, shared, owner) {
						t.Errorf("the owner did not store its journal entry again")
					}
					if n := owner.logged("wrote back a challenge value that a sweep removed while this process could not renew its journal entry"); n != 1 {
						t.Errorf("%d write-back warnings, want 1", n)
					}
					return
				}
				time.Sleep(after - 100*time.Millisecond)
				if held, _ := w.serves(dead, digest("dead")); !held {
					t.Errorf("the dead owner's value was swept %s after the storage came back, before sweep_after (%s)", time.Since(up), after)
				}
				// a probe round, sweep_after, a sweep round
				time.Sleep(2*time.Second + 100*time.Millisecond)
				if held, _ := w.serves(dead, digest("dead")); held {
					t.Errorf("the dead owner's value is still there %s after the storage came back", time.Since(up))
				}
				if held, deletes := w.serves(live, digest("live")); !held || deletes != 0 {
					t.Errorf("the live value: held %v, deleted %d times; want held, never deleted", held, deletes)
				}
				if !journalHolds(t, shared, owner) {
					t.Errorf("the owner's journal entry is gone")
				}
				for _, in := range []*instance{owner, sweeper} {
					if n := in.logged("wrote back a challenge value that a sweep removed while this process could not renew its journal entry"); n != 0 {
						t.Errorf("%d write-backs of a value no sweep removed", n)
					}
				}
			})
		})
	}
}

// journalHolds reports whether the journal in storage holds an entry of
// each presentation of in.
func journalHolds(t *testing.T, storage certmagic.Storage, in *instance) bool {
	t.Helper()
	entries, err := (storageJournal{storage: storage}).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, p := range in.alias {
		for _, pr := range p.writer.Presented() {
			for _, e := range entries {
				if e.Name == pr.Name {
					held++
					break
				}
			}
		}
	}
	return held > 0 && held == len(in.alias[0].writer.Presented())
}

// TestSweepMessages: with two alias setups in one config, an orphan that
// the other setup removes draws no "left alone" warning from the first
// (an entry no setup could have written does); while the storage is down,
// the skipped sweep's debug line says so, not that the lock stayed taken.
func TestSweepMessages(t *testing.T) {
	const leftAlone = "challenge journal entry left alone; if no other instance removes it, look at it and remove it by hand"
	for _, tc := range []struct {
		name      string
		zone      string
		warnings  int
		removedBy bool // the config's other setup removes it
	}{
		{"orphan of the config's other alias setup", sweepFollowZone, 0, true},
		{"orphan nothing in the config writes", "elsewhere.example.net", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storage := newMemStorage()
			w := &zoneWriter{}
			in := newInstance(t, storage, w, 3*time.Second, sweepZone, sweepFollowZone)
			in.app.journal.reach = nil // no staleness rule here: the entry is an hour old
			for _, p := range in.alias {
				p.sweeper.Reach = nil
			}
			name := "x." + tc.zone
			w.AppendRecords(context.Background(), tc.zone+".", []libdns.Record{libdns.TXT{Name: "x", Text: digest("x")}})
			storeEntry(t, storage, journalPrefix+"/x.json", solver.JournalEntry{ID: "x", Domain: name, Zone: tc.zone,
				Name: name, Type: "TXT", Value: digest("x"), Writer: "fake", Written: time.Now().Add(-time.Hour)})
			in.rounds.sweepLocked(context.Background())
			if n := in.logged(leftAlone); n != tc.warnings {
				t.Errorf("%d %q warnings, want %d", n, leftAlone, tc.warnings)
			}
			if held, _ := w.serves(name, digest("x")); held == tc.removedBy {
				t.Errorf("value held after the sweep: %v, want %v", held, !tc.removedBy)
			}
		})
	}

	t.Run("storage down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			down := &switchedStorage{Storage: newMemStorage()}
			down.down.Store(true)
			in := newInstance(t, down, &zoneWriter{}, 3*time.Second, sweepZone)
			in.rounds.sweepLocked(context.Background())
			got := in.logs.FilterMessage("challenge journal sweep skipped: storage unreachable").All()
			if len(got) != 1 || !errors.Is(errorField(got[0]), errStorageDown) {
				t.Errorf("skipped sweep logged %v, want one \"storage unreachable\" line with the storage's error", in.logs.All())
			}
			if n := in.logged("challenge journal sweep skipped: the sweep lock stayed taken"); n != 0 {
				t.Errorf("a sweep skipped for a storage that is down blamed the lock")
			}
		})
	})
}

// errorField returns the error logged with an entry.
func errorField(e observer.LoggedEntry) error {
	for _, f := range e.Context {
		if err, ok := f.Interface.(error); ok && f.Key == "error" {
			return err
		}
	}
	return nil
}
