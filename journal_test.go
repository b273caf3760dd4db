package alias

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestStorageJournal: entries in a file_system storage are written with the
// writer's lease, listed past temporary files and unreadable entries (which
// are reported without hiding the others), and deleted idempotently.
func TestStorageJournal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := storageJournal{storage: &certmagic.FileStorage{Path: dir}, lease: 3 * time.Second}

	if es, err := j.List(ctx); err != nil || len(es) != 0 {
		t.Fatalf("List of an empty storage = %v, %v", es, err)
	}
	written := time.Now().Truncate(time.Second)
	for _, id := range []string{"a", "b"} {
		if err := j.Put(ctx, solver.JournalEntry{ID: id, Name: "_acme-challenge.x.validation.example.org", Value: "v-" + id, Written: written}); err != nil {
			t.Fatal(err)
		}
	}
	jdir := filepath.Join(dir, "dns_alias", "journal")
	// a storage's temporary file, and an entry cut short
	os.WriteFile(filepath.Join(jdir, "123456"), []byte(`{"id":`), 0o600)
	os.WriteFile(filepath.Join(jdir, "c.json"), []byte(`{"id":`), 0o600)

	es, err := j.List(ctx)
	if err == nil || !strings.Contains(err.Error(), "dns_alias/journal/c.json") {
		t.Errorf("List did not report the unreadable entry: %v", err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
		if e.Lease != 3*time.Second || !e.Written.Equal(written) {
			t.Errorf("entry %s: lease %s, written %s", e.ID, e.Lease, e.Written)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("List = %v, want a and b", ids)
	}
	for range 2 {
		if err := j.Delete(ctx, "a"); err != nil {
			t.Errorf("Delete: %v", err)
		}
	}
}

// TestSweepLockedTakesTurns: a sweep waits for another holder of the sweep
// lock (another instance, another provider of the config) to finish, skips
// its round if the lock stays taken for an interval, and releases the lock.
// The storage's lock waits on the bubble's clock, so the intervals pass at
// once.
func TestSweepLockedTakesTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		storage := newLockingStorage()
		j := &countingJournal{storageJournal: storageJournal{storage: storage}}
		w := &solver.Provider{Mapper: &solver.Mapper{}}
		p := &Provider{writer: w, sweeper: solver.NewSweeper(w)}
		_, app := standalone(t)
		app.journal = &j.storageJournal
		app.register(p, nil)
		p.writer.Journal = j
		if err := storage.Lock(ctx, sweepLockName); err != nil {
			t.Fatal(err)
		}
		rounds := journalRounds{journal: app.journal, modules: &app.modules, metrics: app.metrics, logger: app.logger,
			after: time.Minute, interval: 1500 * time.Millisecond}
		start := time.Now()
		rounds.sweepLocked(ctx)
		if j.lists != 0 {
			t.Errorf("swept while another holder kept the lock")
		}
		if waited := time.Since(start); waited != 1500*time.Millisecond {
			t.Errorf("gave up on the lock after %s, want the interval (1.5s)", waited)
		}
		// The other holder lets go 500 ms later, on the bubble's clock.
		time.AfterFunc(500*time.Millisecond, func() { storage.Unlock(ctx, sweepLockName) })
		start = time.Now()
		rounds.interval = 10 * time.Second
		rounds.sweepLocked(ctx)
		if j.lists != 1 {
			t.Errorf("%d sweeps after the other holder released the lock, want 1", j.lists)
		}
		if waited := time.Since(start); waited != 500*time.Millisecond {
			t.Errorf("swept %s after the call, want when the other holder released the lock (500ms)", waited)
		}
		if storage.held(sweepLockName) {
			t.Errorf("the sweep lock is still held after a sweep")
		}
	})
}

// lockingStorage is a memStorage whose locks are held until unlocked, and
// waited for until the context ends.
type lockingStorage struct {
	*memStorage
	mu    sync.Mutex
	locks map[string]chan struct{} // full while held
}

func newLockingStorage() *lockingStorage {
	return &lockingStorage{memStorage: newMemStorage(), locks: map[string]chan struct{}{}}
}

func (s *lockingStorage) lock(name string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks[name] == nil {
		s.locks[name] = make(chan struct{}, 1)
	}
	return s.locks[name]
}

func (s *lockingStorage) Lock(ctx context.Context, name string) error {
	select {
	case s.lock(name) <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *lockingStorage) Unlock(_ context.Context, name string) error {
	select {
	case <-s.lock(name):
		return nil
	default:
		return fmt.Errorf("unlock of %s, which is not locked", name)
	}
}

func (s *lockingStorage) held(name string) bool { return len(s.lock(name)) == 1 }

type countingJournal struct {
	storageJournal
	lists int
}

func (j *countingJournal) List(ctx context.Context) ([]solver.JournalEntry, error) {
	j.lists++
	return j.storageJournal.List(ctx)
}

// TestStorageJournalKeys: the journal deletes only clean keys below its
// prefix, and stores entries only under IDs that cannot leave it.
func TestStorageJournalKeys(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	storage := &certmagic.FileStorage{Path: filepath.Join(root, "storage")}
	j := storageJournal{storage: storage}
	victim := filepath.Join(root, "x.json")
	os.WriteFile(victim, []byte("{}"), 0o600)
	for key, ok := range map[string]bool{
		journalPrefix + "/a.json":              true,
		journalPrefix + "/sub/a.json":          true,
		"../x.json":                            false,
		journalPrefix + "/../../../x.json":     false,
		journalPrefix + "/sub/../a.json":       false,
		journalPrefix + "//a.json":             false,
		journalPrefix + "/.json":               false,
		journalPrefix + "/a":                   false,
		journalPrefix + "x/a.json":             false,
		journalPrefix + `/..\..\..\x.json`:     false,
		"certificates/acme/example.com/a.json": false,
	} {
		if err := j.DeleteKey(ctx, key); (err == nil) != ok {
			t.Errorf("DeleteKey(%q) = %v, want allowed %v", key, err, ok)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("a refused key deleted %s", victim)
	}
	for _, id := range []string{"../../../x", "a/b", "", "a.json", strings.Repeat("a", 65), "a\x00"} {
		if err := j.Put(ctx, solver.JournalEntry{ID: id}); err == nil {
			t.Errorf("Put with ID %q accepted", id)
		}
		if err := j.Delete(ctx, id); err == nil {
			t.Errorf("Delete of ID %q accepted", id)
		}
	}
}

// downStorage is a storage that is down: every call fails as a Redis
// client's does when the server is gone.
type downStorage struct{ *memStorage }

var errStorageDown = errors.New("dial tcp 127.0.0.1:16379: connect: connection refused")

func (downStorage) Store(context.Context, string, []byte) error { return errStorageDown }
func (downStorage) Delete(context.Context, string) error        { return errStorageDown }
func (downStorage) List(context.Context, string, bool) ([]string, error) {
	return nil, errStorageDown
}

// downModuleStorage is a storage module that is its own certmagic storage,
// as caddy.storage.redis is.
type downModuleStorage struct{ downStorage }

func (downModuleStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "caddy.storage.test_down", New: func() caddy.Module { return downModuleStorage{} }}
}

// TestStorageJournalNamesStorage: when the storage fails, every journal
// operation's error names the storage (a module's ID, file_system with its
// path, or the Go type) and the key, and wraps the storage's own error.
func TestStorageJournalNamesStorage(t *testing.T) {
	// a file_system storage whose directory cannot be made: its path is
	// below a regular file
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(file, "storage")
	for _, tc := range []struct {
		storage certmagic.Storage
		name    string
		wraps   error
	}{
		{downModuleStorage{downStorage{newMemStorage()}}, "caddy.storage.test_down", errStorageDown},
		{downStorage{newMemStorage()}, "alias.downStorage", errStorageDown},
		{&certmagic.FileStorage{Path: blocked}, "file_system " + blocked, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			j := &storageJournal{storage: tc.storage, lease: 3 * time.Second}
			errs := map[string]error{"storing": j.Put(ctx, solver.JournalEntry{ID: "a1"})}
			if _, ok := tc.storage.(*certmagic.FileStorage); !ok {
				// a file_system storage's delete of a missing key and
				// listing of a missing directory are no failures
				errs["deleting"] = j.Delete(ctx, "a1")
				_, errs["listing"] = j.List(ctx)
			}
			for op, err := range errs {
				if err == nil {
					t.Errorf("%s: no error from a storage that is down", op)
					continue
				}
				want := fmt.Sprintf("in storage %s: ", tc.name)
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), op+" challenge journal key "+journalPrefix) {
					t.Errorf("%s: error %q does not name the key and %q", op, err, want)
				}
				if tc.wraps != nil && !errors.Is(err, tc.wraps) {
					t.Errorf("%s: error %q does not wrap the storage's", op, err)
				}
			}
		})
	}
}
