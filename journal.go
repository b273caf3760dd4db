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
	// reach records every storage operation's outcome, for the sweep's
	// staleness rule (solver.Reachability); nil records nothing.
	reach *solver.Reachability
}

// observe records the outcome of a storage operation and returns err.
func (j storageJournal) observe(err error) error {
	j.reach.Observe(time.Now(), err)
	return err
}

// probe lists the journal's directory (not recursively: one request to
// most storages), so that the storage's reachability is known between the
// journal's own operations (a missing directory is an answer). Not Stat or
// Load: caddy-storage-redis v1.8.1 answers those with fs.ErrNotExist when
// Redis is down.
func (j storageJournal) probe(ctx context.Context) error {
	_, err := j.storage.List(ctx, journalPrefix, false)
	if j.observe(err); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return j.storageErr("probing", journalPrefix, err)
	}
	return nil
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
	return j.storageErr("storing", key, j.observe(j.storage.Store(ctx, key, data)))
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
	err := j.observe(j.storage.Delete(ctx, key))
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
	if j.observe(err); errors.Is(err, fs.ErrNotExist) {
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
		if j.observe(err); errors.Is(err, fs.ErrNotExist) {
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
// sweep never delays it), probing the storage as it goes, and sweeps
// orphans at once and then every sweep_interval, until ctx ends.
func (r journalRounds) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		renew := time.NewTicker(r.renewEvery())
		defer renew.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-renew.C:
				r.renew(ctx)
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
			sweep.Reset(r.interval)
		}
	}
}

// renewEvery is how often the entries are renewed and the storage probed.
func (r journalRounds) renewEvery() time.Duration {
	return max(min(r.after/3, r.interval), 100*time.Millisecond)
}

// reachGap is the longest time between two observations of the storage
// that the sweep still counts as one unbroken reachable run
// (solver.Reachability): more than one renewal round, less than the two
// thirds of sweep_after a live owner's entry needs to go stale.
func reachGap(after time.Duration) time.Duration { return after / 2 }

// renew renews each provider's entries, or, after one of its renewals
// failed, restores them under the sweep lock (solver.Sweeper.Restore),
// and then probes the storage, so that its reachability is known even
// when nothing is in flight.
func (r journalRounds) renew(ctx context.Context) {
	for _, p := range r.modules.providers() {
		if !p.sweeper.Missed() {
			if err := p.sweeper.Renew(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("renewing challenge journal entries", zap.Error(err))
			}
			continue
		}
		unlock, err := r.lock(ctx, r.renewEvery())
		if err != nil {
			if ctx.Err() == nil {
				r.logger.Warn("renewing challenge journal entries after a failed renewal: the sweep lock is not free yet; trying again next round", zap.Error(err))
			}
			continue
		}
		_, err = p.sweeper.Restore(ctx)
		unlock()
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("renewing challenge journal entries after a failed renewal", zap.Error(err))
		}
	}
	r.journal.probe(ctx)
}

// lock takes the storage-wide sweep lock, waiting at most wait, and
// returns its release.
func (r journalRounds) lock(ctx context.Context, wait time.Duration) (unlock func(), err error) {
	storage := r.journal.storage
	lctx, cancel := context.WithTimeout(ctx, wait)
	err = storage.Lock(lctx, sweepLockName)
	cancel()
	if err != nil {
		return nil, err
	}
	return func() {
		if err := storage.Unlock(context.WithoutCancel(ctx), sweepLockName); err != nil {
			r.logger.Warn("releasing the challenge journal sweep lock", zap.Error(err))
		}
	}, nil
}

// sweepLocked sweeps under the storage-wide sweep lock, so that the
// instances of a cluster take turns; if the lock is not free within an
// interval (at most a minute), this round is skipped.
func (r journalRounds) sweepLocked(ctx context.Context) {
	unlock, err := r.lock(ctx, min(r.interval, time.Minute))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		// A storage that is down fails its locks too (or lets them
		// time out): say which it was.
		if perr := r.journal.probe(ctx); perr != nil {
			r.logger.Debug("challenge journal sweep skipped: storage unreachable", zap.Error(perr))
		} else {
			r.logger.Debug("challenge journal sweep skipped: the sweep lock stayed taken", zap.Error(err))
		}
		return
	}
	defer unlock()
	for _, p := range r.modules.providers() {
		removed, err := p.sweeper.Sweep(ctx, r.after)
		r.metrics.sweepRemoved.Add(float64(removed))
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("sweeping orphaned challenge records", zap.Error(err))
		}
	}
}
