package alias

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// journalPrefix is where challenge journal entries live in Caddy's storage.
// Instances sharing storage (a cluster) share the journal.
const journalPrefix = "dns_alias/journal"

// storageJournal is the solver's crash journal in Caddy's configured
// storage, so it survives restarts and is shared by a cluster.
type storageJournal struct {
	storage certmagic.Storage
}

func (j storageJournal) key(id string) string { return path.Join(journalPrefix, id+".json") }

func (j storageJournal) Put(ctx context.Context, e solver.JournalEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.storage.Store(ctx, j.key(e.ID), data)
}

func (j storageJournal) Delete(ctx context.Context, id string) error {
	return j.storage.Delete(ctx, j.key(id))
}

func (j storageJournal) List(ctx context.Context) ([]solver.JournalEntry, error) {
	keys, err := j.storage.List(ctx, journalPrefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []solver.JournalEntry
	for _, k := range keys {
		data, err := j.storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile by another instance
		}
		if err != nil {
			return nil, err
		}
		var e solver.JournalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("journal entry %s: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
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

// sweepLoop removes records orphaned by crashes: soon after provisioning and
// then every interval, until the config is unloaded.
func (p *Provider) sweepLoop(ctx context.Context, logger *zap.Logger, after, interval time.Duration) {
	delay := sweepStartDelay
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if _, err := p.Sweep(ctx, after); err != nil && ctx.Err() == nil {
			logger.Warn("sweeping orphaned challenge records", zap.Error(err))
		}
		delay = interval
	}
}
