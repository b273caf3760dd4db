package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/internal/caddyconf"
	"github.com/acme-alias/caddy-dns-alias/solver"
)

// journalPrefix is where challenge journal entries live in Caddy's storage.
// Instances sharing storage (a cluster) share the journal.
const journalPrefix = "dns_alias/journal"

// sweepLockName is the storage lock a sweep holds, so that the instances of
// a cluster do not remove the same orphan at once.
const sweepLockName = "dns_alias_journal_sweep"

// storageJournal is the solver's crash journal in Caddy's configured
// storage, so it survives restarts and is shared by a cluster.
type storageJournal struct {
	storage certmagic.Storage
	// lease is stamped on every entry written: this process renews its
	// entries well within it (its sweep_after), and no sweep removes an
	// entry within its lease.
	lease time.Duration
}

// storageErr wraps a storage's error with what was done and the storage's
// name: a storage's own errors often name only a key or an address, and an
// operator whose challenge failed because the journal could not be written
// must see that the storage is what failed.
func (j storageJournal) storageErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s challenge journal key %s in storage %s: %w", op, key, caddyconf.StorageName(j.storage), err)
}

// key is where the entry with this ID is stored. IDs are this process's own
// (hex); anything that could leave the journal's directory is refused.
func (j storageJournal) key(id string) (string, error) {
	if id == "" || len(id) > 64 || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != "" {
		return "", fmt.Errorf("journal entry ID %q is not 1-64 letters, digits, '-' or '_'", id)
	}
	return journalPrefix + "/" + id + ".json", nil
}

func (j storageJournal) Put(ctx context.Context, e solver.JournalEntry) error {
	key, err := j.key(e.ID)
	if err != nil {
		return err
	}
	e.Lease = max(e.Lease, j.lease)
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.storageErr("storing", key, j.storage.Store(ctx, key, data))
}

func (j storageJournal) Delete(ctx context.Context, id string) error {
	key, err := j.key(id)
	if err != nil {
		return err
	}
	return j.DeleteKey(ctx, key)
}

// DeleteKey deletes a key List returned; a key outside the journal's
// directory is refused (with a file_system storage, Delete is os.RemoveAll).
func (j storageJournal) DeleteKey(ctx context.Context, key string) error {
	if !isJournalKey(key) {
		return fmt.Errorf("refusing to delete storage key %q: not a challenge journal entry under %s/", key, journalPrefix)
	}
	err := j.storage.Delete(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // another instance was first
	}
	return j.storageErr("deleting", key, err)
}

// isJournalKey reports whether key is a clean key of an entry below the
// journal's prefix.
func isJournalKey(key string) bool {
	rest, ok := strings.CutPrefix(key, journalPrefix+"/")
	return ok && rest != ".json" && strings.HasSuffix(rest, ".json") && path.Clean(key) == key &&
		!strings.Contains(key, "\\") && !slices.Contains(strings.Split(rest, "/"), "..")
}

// List returns the readable entries, each with the key it was listed
// under; keys that are no entry (a storage's temporary files, directory
// markers) are skipped, and a key that cannot be read or parsed (a
// directory named like an entry, say) is reported as an
// *solver.UnreadableEntryError without hiding the others. It lists
// recursively: some storages (S3-based ones) answer a non-recursive listing
// with the directory itself instead of the keys in it.
func (j storageJournal) List(ctx context.Context) ([]solver.JournalEntry, error) {
	keys, err := j.storage.List(ctx, journalPrefix, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, j.storageErr("listing", journalPrefix, err)
	}
	var out []solver.JournalEntry
	var errs []error
	for _, k := range keys {
		if !strings.HasSuffix(k, ".json") {
			continue
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if !isJournalKey(k) {
			errs = append(errs, &solver.UnreadableEntryError{Key: k, Err: fmt.Errorf("not a clean key below %s/", journalPrefix)})
			continue
		}
		data, err := j.storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile by another instance
		}
		if err != nil {
			errs = append(errs, &solver.UnreadableEntryError{Key: k, Err: err})
			continue
		}
		var e solver.JournalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			errs = append(errs, &solver.UnreadableEntryError{Key: k, Err: err})
			continue
		}
		if e.ID == "" {
			errs = append(errs, &solver.UnreadableEntryError{Key: k, Err: errors.New("no id")})
			continue
		}
		e.Key = k
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// journalRounds keeps the journal of a config's alias providers: it renews
// their entries and sweeps the orphans of processes that died.
type journalRounds struct {
	journal  *storageJournal
	modules  *registry
	metrics  *metrics
	logger   *zap.Logger
	after    time.Duration // sweep_after
	interval time.Duration // sweep_interval
}

// run renews this process's journal entries every third of sweep_after (at
// most every sweep_interval; on a goroutine of its own, so that a slow
// sweep never delays it) and sweeps orphans at once and then every
// sweep_interval, until ctx ends.
func (r journalRounds) run(ctx context.Context) {
	after, interval := r.after, r.interval
	var wg sync.WaitGroup
	wg.Go(func() {
		renew := time.NewTicker(max(min(after/3, interval), 100*time.Millisecond))
		defer renew.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-renew.C:
				for _, p := range r.modules.providers() {
					if err := p.sweeper.Renew(ctx); err != nil && ctx.Err() == nil {
						r.logger.Warn("renewing challenge journal entries", zap.Error(err))
					}
				}
			}
		}
	})
	defer wg.Wait()
	sweep := time.NewTimer(0)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			r.sweepLocked(ctx)
			sweep.Reset(interval)
		}
	}
}

// sweepLocked sweeps under the storage-wide sweep lock, so that the
// instances of a cluster take turns; if the lock is not free within an
// interval (at most a minute), this round is skipped.
func (r journalRounds) sweepLocked(ctx context.Context) {
	storage := r.journal.storage
	lctx, cancel := context.WithTimeout(ctx, min(r.interval, time.Minute))
	err := storage.Lock(lctx, sweepLockName)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Debug("challenge journal sweep skipped: the sweep lock stayed taken", zap.Error(err))
		}
		return
	}
	defer func() {
		if err := storage.Unlock(context.WithoutCancel(ctx), sweepLockName); err != nil {
			r.logger.Warn("releasing the challenge journal sweep lock", zap.Error(err))
		}
	}()
	for _, p := range r.modules.providers() {
		removed, err := p.sweeper.Sweep(ctx, r.after)
		r.metrics.sweepRemoved.Add(float64(removed))
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("sweeping orphaned challenge records", zap.Error(err))
		}
	}
}
