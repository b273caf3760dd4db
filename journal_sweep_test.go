package alias

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// Zones and names of the sweep tests' config: a static alias and a
// template in the zone sweepZone, and a follow rule confined to sweepFollowZone.
const (
	sweepZone       = "validation.example.org"
	sweepStatic     = "_acme-challenge." + sweepZone
	sweepFollowZone = "follow.example.org"
)

// digest is a stand-in ACME DNS-01 value derived from s: the provider
// writes nothing without a digest's shape.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sweepWriter records the inner provider's calls.
type sweepWriter struct {
	mu    sync.Mutex
	calls []sweepCall
}

type sweepCall struct {
	op, zone string
	rr       libdns.RR
}

func (w *sweepWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, w.record("append", zone, recs)
}

func (w *sweepWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, w.record("delete", zone, recs)
}

func (w *sweepWriter) record(op, zone string, recs []libdns.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range recs {
		w.calls = append(w.calls, sweepCall{op, zone, r.RR()})
	}
	return nil
}

func (w *sweepWriter) take() []sweepCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.calls
	w.calls = nil
	return c
}

// sweepProvider is the sweeper of a provider with a static default alias, a template rule
// for tmpl.example.com and a follow rule for *.follow.example.com, all
// written by w, whose journal is in storage; its log goes to the returned
// observer.
func sweepProvider(t testing.TB, storage certmagic.Storage, w *sweepWriter) (*solver.Sweeper, *observer.ObservedLogs) {
	t.Helper()
	rule := func(r *solver.Rule, alias string) *solver.Rule {
		if alias != "" {
			tmpl, err := solver.ParseTemplate(alias)
			if err != nil {
				t.Fatal(err)
			}
			r.Alias = tmpl
		}
		r.Writer, r.WriterName = w, "fake"
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	core, logs := observer.New(zap.WarnLevel)
	return solver.NewSweeper(&solver.Provider{
		Mapper: &solver.Mapper{
			Default: rule(&solver.Rule{Zones: []string{sweepZone}}, sweepStatic),
			Rules: []*solver.Rule{
				rule(&solver.Rule{Match: []string{"tmpl.example.com"}, Zones: []string{sweepZone}}, "_acme-challenge.{domain}."+sweepZone),
				rule(&solver.Rule{Match: []string{"*.follow.example.com"}, Follow: true, Zones: []string{sweepFollowZone}}, ""),
			},
		},
		Journal: storageJournal{storage: storage},
		Logger:  zap.New(core),
	}), logs
}

// storeEntry writes raw JSON under a journal key, as anyone with access to
// the storage could.
func storeEntry(t testing.TB, storage certmagic.Storage, key string, entry any) {
	t.Helper()
	data, ok := entry.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(entry); err != nil {
			t.Fatal(err)
		}
	}
	if err := storage.Store(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

// orphan is a valid, long-unrenewed entry of the static alias.
func orphan(id, value string) solver.JournalEntry {
	return solver.JournalEntry{ID: id, Domain: "example.com", Zone: sweepZone, Name: sweepStatic, Type: "TXT",
		Value: value, Writer: "fake", Written: time.Now().Add(-time.Hour)}
}

// TestSweepDeletesListedKeyOnly: an entry whose id climbs out of the
// journal's directory ("../../../outside-victim") or points at a
// certificate's metadata file inside storage is swept by the key it was
// listed under; the files its id names survive.
func TestSweepDeletesListedKeyOnly(t *testing.T) {
	root := t.TempDir()
	storage := &certmagic.FileStorage{Path: filepath.Join(root, "storage")}
	victims := []string{
		filepath.Join(root, "outside-victim.json"),
		filepath.Join(root, "storage", "certificates", "acme", "example.com", "example.com.json"),
	}
	for _, v := range victims {
		if err := os.MkdirAll(filepath.Dir(v), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(v, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	storeEntry(t, storage, journalPrefix+"/a.json", orphan("../../../outside-victim", digest("a")))
	storeEntry(t, storage, journalPrefix+"/b.json", orphan("../../certificates/acme/example.com/example.com", digest("b")))
	w := &sweepWriter{}
	p, _ := sweepProvider(t, storage, w)
	if n, err := p.Sweep(context.Background(), time.Minute); n != 2 || err != nil {
		t.Fatalf("Sweep = %d, %v; want both orphans removed", n, err)
	}
	for _, v := range victims {
		if _, err := os.Stat(v); err != nil {
			t.Errorf("the sweep deleted %s: %v", v, err)
		}
	}
	if keys, _ := storage.List(context.Background(), journalPrefix, true); len(keys) != 0 {
		t.Errorf("journal keys left after the sweep: %v", keys)
	}
	if got := len(w.take()); got != 2 {
		t.Errorf("%d deletes, want 2", got)
	}
}

// TestSweepRefusesEntries: entries that no write of this config could have
// made (the zone's apex, another name in the zone, an empty or foreign
// zone, a value that is no ACME digest, another record type, a name not in
// canonical form) never reach the inner provider, are logged once each with
// their key, and stay; an unreadable key (a directory named like an entry,
// a torn write) blocks none of the others; a valid orphan beside them is
// removed once, and later sweeps repeat nothing.
func TestSweepRefusesEntries(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	bad := map[string]func(*solver.JournalEntry){
		"apex":            func(e *solver.JournalEntry) { e.Name, e.Value = sweepZone, "site-verification=keepme" },
		"apex-digest":     func(e *solver.JournalEntry) { e.Name = sweepZone },
		"other-name":      func(e *solver.JournalEntry) { e.Name = "www." + sweepZone },
		"keepme":          func(e *solver.JournalEntry) { e.Value = "site-verification=keepme" },
		"empty-zone":      func(e *solver.JournalEntry) { e.Zone, e.Name = "", "www.example.com" },
		"zone-only-empty": func(e *solver.JournalEntry) { e.Zone = "" },
		"foreign":         func(e *solver.JournalEntry) { e.Zone, e.Name = "example.com", "_acme-challenge.example.com" },
		"public-suffix":   func(e *solver.JournalEntry) { e.Zone = "org" },
		"type-a":          func(e *solver.JournalEntry) { e.Type = "A" },
		"upper":           func(e *solver.JournalEntry) { e.Name = strings.ToUpper(sweepStatic) },
		"trailing-dot":    func(e *solver.JournalEntry) { e.Zone = sweepZone + "." },
		"other-domain": func(e *solver.JournalEntry) {
			e.Domain, e.Name = "tmpl.example.com", "_acme-challenge.other.example.com."+sweepZone
		},
		"follow-outside": func(e *solver.JournalEntry) {
			e.Domain, e.Zone, e.Name = "x.follow.example.com", "example.org", "x.example.org"
		},
		"writer": func(e *solver.JournalEntry) { e.Writer = "rfc2136" },
	}
	for id, spoil := range bad {
		e := orphan(id, digest(id))
		spoil(&e)
		storeEntry(t, storage, journalPrefix+"/"+id+".json", e)
	}
	storeEntry(t, storage, journalPrefix+"/torn.json", []byte(`{"id":`))
	if err := os.MkdirAll(storage.Filename(journalPrefix+"/zz.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Valid orphans of the template and the follow rule, listed after
	// the directory.
	tmpl := orphan("zzz1", digest("tmpl"))
	tmpl.Domain, tmpl.Name = "tmpl.example.com", "_acme-challenge.tmpl.example.com."+sweepZone
	storeEntry(t, storage, journalPrefix+"/zzz1.json", tmpl)
	follow := orphan("zzz2", digest("follow"))
	follow.Domain, follow.Zone, follow.Name = "x.follow.example.com", sweepFollowZone, "anywhere."+sweepFollowZone
	storeEntry(t, storage, journalPrefix+"/zzz2.json", follow)

	w := &sweepWriter{}
	p, logs := sweepProvider(t, storage, w)
	for round := range 3 {
		n, err := p.Sweep(context.Background(), time.Minute)
		if err != nil {
			t.Fatalf("round %d: Sweep: %v", round, err)
		}
		calls := w.take()
		if round == 0 {
			if n != 2 || len(calls) != 2 {
				t.Fatalf("Sweep removed %d, calls %+v; want the two valid orphans", n, calls)
			}
			for _, c := range calls {
				if c.op != "delete" || (c.rr.Data != tmpl.Value && c.rr.Data != follow.Value) {
					t.Errorf("call %+v", c)
				}
			}
			continue
		}
		if n != 0 || len(calls) != 0 {
			t.Errorf("round %d: Sweep removed %d, calls %+v; want nothing repeated", round, n, calls)
		}
	}
	for id := range bad {
		key := journalPrefix + "/" + id + ".json"
		if data, err := storage.Load(context.Background(), key); err != nil || len(data) == 0 {
			t.Errorf("refused entry %s was not left for a person to look at: %v", key, err)
		}
	}
	warned := map[string]int{}
	for _, l := range logs.All() {
		warned[l.ContextMap()["key"].(string)]++
	}
	for _, key := range slices.Concat(mapKeys(bad), []string{"torn", "zz"}) {
		if got := warned[journalPrefix+"/"+key+".json"]; got != 1 {
			t.Errorf("entry %s logged %d times over three sweeps, want once", key, got)
		}
	}
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// memStorage is a certmagic.Storage in memory that records the keys it
// listed and the keys it was asked to delete.
type memStorage struct {
	mu      sync.Mutex
	data    map[string][]byte
	listed  map[string]bool
	deleted []string
}

func newMemStorage() *memStorage {
	return &memStorage{data: map[string][]byte{}, listed: map[string]bool{}}
}

func (s *memStorage) Lock(context.Context, string) error   { return nil }
func (s *memStorage) Unlock(context.Context, string) error { return nil }

func (s *memStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = value
	return nil
}

func (s *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

func (s *memStorage) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, key)
	if _, ok := s.data[key]; !ok {
		return fs.ErrNotExist
	}
	delete(s.data, key)
	return nil
}

func (s *memStorage) Exists(_ context.Context, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data[key]
	return ok
}

func (s *memStorage) List(_ context.Context, prefix string, _ bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix+"/") {
			out = append(out, k)
			s.listed[k] = true
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func (s *memStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, Size: int64(len(v)), IsTerminal: true}, nil
}

// FuzzJournalSweep stores arbitrary bytes as a journal entry, under an
// arbitrary key below the journal's prefix, next to another instance's
// live entry, and sweeps: the inner provider is only asked to delete, only
// a digest-shaped value, only strictly below a configured alias zone; the
// only storage keys deleted are keys the sweep listed; the live entry and
// its value are never touched.
func FuzzJournalSweep(f *testing.F) {
	old := time.Now().Add(-time.Hour)
	entry := func(id, domain, zone, name, value string) string {
		e := solver.JournalEntry{ID: id, Domain: domain, Zone: zone, Name: name, Type: "TXT", Value: value, Writer: "fake", Written: old}
		data, _ := json.Marshal(e)
		return string(data)
	}
	d := digest("fuzz")
	for _, s := range []struct{ key, data string }{
		{"a.json", entry("a", "example.com", sweepZone, sweepStatic, d)},
		{"a.json", entry("../../../outside-victim", "example.com", sweepZone, sweepStatic, d)},
		{"x/../../b.json", entry("b", "example.com", sweepZone, sweepStatic, d)},
		{"../certificates/x.json", entry("c", "example.com", sweepZone, sweepStatic, d)},
		{"apex.json", entry("apex", "example.com", sweepZone, sweepZone, "site-verification=keepme")},
		{"zone.json", entry("zone", "example.com", "", "www.example.com", d)},
		{"t.json", entry("t", "tmpl.example.com", sweepZone, "_acme-challenge.tmpl.example.com."+sweepZone, d)},
		{"f.json", entry("f", "x.follow.example.com", sweepFollowZone, "x."+sweepFollowZone, d)},
		{"f2.json", entry("f", "x.follow.example.com", sweepFollowZone, sweepFollowZone, d)},
		{"u.json", entry("u", "example.com", "Validation.Example.ORG.", "_ACME-challenge.validation.example.org", d)},
		{"live.json", entry("live", "example.com", sweepZone, sweepStatic, d)},
		// An orphan holding the live entry's zone, name and value (the CA
		// handed a restarted process the same authorization).
		{"dup.json", entry("dup", "example.com", sweepZone, sweepStatic, digest("live"))},
		{"torn.json", `{"id":`},
		{"empty.json", `{}`},
		{"n.json", `null`},
		{"s.json", `{"id":"s","zone":"validation.example.org","name":"_acme-challenge.validation.example.org","value":"` + d + `","writer":"fake","type":"A"}`},
		{"s.json", `{"id":"s","zone":"validation.example.org","name":"_acme-challenge.validation.example.org","value":"` + d + `","writer":"fake","lease":-9223372036854775808}`},
		{"tmp", `garbage`},
	} {
		f.Add(s.key, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		ctx := context.Background()
		storage := newMemStorage()
		live := solver.JournalEntry{ID: "live", Domain: "example.com", Zone: sweepZone, Name: sweepStatic, Type: "TXT",
			Value: digest("live"), Writer: "fake", Written: time.Now()}
		liveKey := journalPrefix + "/live.json"
		fuzzKey := journalPrefix + "/" + key
		liveData, _ := json.Marshal(live)
		storage.Store(ctx, liveKey, liveData)
		storage.Store(ctx, fuzzKey, data)
		w := &sweepWriter{}
		p, _ := sweepProvider(t, storage, w)
		p.Sweep(ctx, time.Minute)
		p.Sweep(ctx, time.Minute)

		for _, c := range w.take() {
			zone := solver.Normalize(c.zone)
			name := solver.Normalize(libdns.AbsoluteName(c.rr.Name, c.zone))
			if c.op != "delete" || c.rr.Type != "TXT" || (zone != sweepZone && zone != sweepFollowZone) ||
				c.zone != zone+"." || name == zone || !solver.InZone(name, zone) || solver.ValidName(name) != nil {
				t.Fatalf("inner provider called outside the alias zones: %+v (entry %q)", c, data)
			}
			if solver.ValidDigest(c.rr.Data) != nil {
				t.Fatalf("inner provider asked to delete a value that is no digest: %+v", c)
			}
			if fuzzKey != liveKey && c.rr.Data == live.Value {
				t.Fatalf("the live entry's value was deleted: %+v", c)
			}
		}
		for _, k := range storage.deleted {
			if !storage.listed[k] {
				t.Fatalf("deleted storage key %q, which the sweep did not list", k)
			}
			if k == liveKey && fuzzKey != liveKey {
				t.Fatalf("deleted the live entry")
			}
		}
	})
}
