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
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"go.uber.org/zap"

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
	return j.storage.Store(ctx, key, data)
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
	return err
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
		return nil, err
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

// configStorage returns the config's storage, or nil for a context made
// without a config (the check subcommand, tests): caddy.Context.Storage
// dereferences the config and has no other way to ask.
func configStorage(ctx caddy.Context) (s certmagic.Storage) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	return ctx.Storage()
}

// sweepStartDelay keeps `caddy validate` and other short-lived
// provisionings, whose context ends at once, from sweeping.
const sweepStartDelay = 2 * time.Second

// withdrawTimeout bounds the removal of this process's own challenge
// records when Caddy exits.
const withdrawTimeout = 10 * time.Second

var (
	// journalLoops counts the running journal loops and deletesInFlight
	// the challenge deletes under way, so that the process exit waits for
	// the records being removed (and their journal entries with them).
	journalLoops    atomic.Int64
	deletesInFlight atomic.Int64
	exitHookOnce    sync.Once
)

// exitWait bounds how long the process exit waits for them.
const exitWait = withdrawTimeout + 5*time.Second

// DeleteRecords is the solver's, counted: certmagic's cleanup of a
// challenge cancelled by a graceful stop races with the process exit, which
// waits for it.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, records []libdns.Record) ([]libdns.Record, error) {
	deletesInFlight.Add(1)
	defer deletesInFlight.Add(-1)
	return p.Provider.DeleteRecords(ctx, zone, records)
}

// startJournal keeps the crash journal of p in storage: entries are renewed
// while their challenges run, orphans older than after are swept soon after
// provisioning and then every interval, and at process exit the records
// still presented are deleted.
func (p *Provider) startJournal(ctx caddy.Context, storage certmagic.Storage, after, interval time.Duration) {
	p.Journal = storageJournal{storage: storage, lease: after}
	exitHookOnce.Do(func() {
		caddy.OnExit(func(context.Context) {
			deadline := time.Now().Add(exitWait)
			for (journalLoops.Load() > 0 || deletesInFlight.Load() > 0) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		})
	})
	journalLoops.Add(1)
	go func() {
		defer journalLoops.Add(-1)
		p.journalLoop(ctx, ctx.Logger(), storage, after, interval)
	}()
}

// journalLoop renews this process's entries every renew period (a third of
// after, at most interval; on a goroutine of its own, so that a slow sweep
// never delays it) and sweeps orphans soon after provisioning and then every
// interval, until the config is unloaded. When the process is exiting, it
// then deletes the records still presented.
func (p *Provider) journalLoop(ctx context.Context, logger *zap.Logger, storage certmagic.Storage, after, interval time.Duration) {
	go func() {
		renew := time.NewTicker(max(min(after/3, interval), 100*time.Millisecond))
		defer renew.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-renew.C:
				if err := p.Renew(ctx); err != nil && ctx.Err() == nil {
					logger.Warn("renewing challenge journal entries", zap.Error(err))
				}
			}
		}
	}()
	sweep := time.NewTimer(sweepStartDelay)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			if caddy.Exiting() {
				wctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
				p.Withdraw(wctx)
				cancel()
			}
			return
		case <-sweep.C:
			p.sweepLocked(ctx, logger, storage, after, interval)
			sweep.Reset(interval)
		}
	}
}

// sweepLocked sweeps under the storage-wide sweep lock, so that the
// instances of a cluster (and several alias providers in one config) take
// turns; if the lock is not free within an interval (at most a minute),
// this round is skipped.
func (p *Provider) sweepLocked(ctx context.Context, logger *zap.Logger, storage certmagic.Storage, after, interval time.Duration) {
	lctx, cancel := context.WithTimeout(ctx, min(interval, time.Minute))
	err := storage.Lock(lctx, sweepLockName)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			logger.Debug("challenge journal sweep skipped: the sweep lock stayed taken", zap.Error(err))
		}
		return
	}
	defer func() {
		if err := storage.Unlock(context.WithoutCancel(ctx), sweepLockName); err != nil {
			logger.Warn("releasing the challenge journal sweep lock", zap.Error(err))
		}
	}()
	if _, err := p.Sweep(ctx, after); err != nil && ctx.Err() == nil {
		logger.Warn("sweeping orphaned challenge records", zap.Error(err))
	}
}
