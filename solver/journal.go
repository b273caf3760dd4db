package solver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Journal keeps the challenge records written and not yet deleted, in
// storage that outlives the process (and that the instances of a cluster
// share), so that a record orphaned by a crash between present and cleanup
// is found and removed by a later sweep.
//
// What a journal holds is trusted no more than any other input: anyone with
// write access to the storage can put entries there. A sweep deletes only
// the keys it listed, and acts only on entries that pass ValidateEntry.
type Journal interface {
	// Put stores e under the key of its ID, replacing an entry with the
	// same ID.
	Put(ctx context.Context, e JournalEntry) error
	// Delete removes the entry that this process Put with this ID.
	Delete(ctx context.Context, id string) error
	// DeleteKey removes the entry List returned with this Key, and nothing
	// else.
	DeleteKey(ctx context.Context, key string) error
	// List returns every entry, each with the Key it is stored under. It
	// may return the entries it could read together with an error about
	// those it could not: an *UnreadableEntryError per key, joined.
	List(ctx context.Context) ([]JournalEntry, error)
}

// UnreadableEntryError reports a journal key whose content is no entry (not
// JSON, no ID, a directory, a failed read).
type UnreadableEntryError struct {
	Key string
	Err error
}

func (e *UnreadableEntryError) Error() string {
	return fmt.Sprintf("journal entry %s is unreadable: %v", e.Key, e.Err)
}

func (e *UnreadableEntryError) Unwrap() error { return e.Err }

// JournalEntry is one challenge record written into an alias zone. Its value
// is the ACME challenge digest, which is public in DNS anyway.
type JournalEntry struct {
	// Key is where List found the entry; it is not stored in the entry.
	Key    string `json:"-"`
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Zone   string `json:"zone"`
	Name   string `json:"name"`
	// Type is the record type, always TXT ("" in entries of older
	// versions).
	Type    string    `json:"type,omitempty"`
	Value   string    `json:"value"`
	Writer  string    `json:"writer"`
	Written time.Time `json:"written"`
	// Seen is when the process that wrote the record last confirmed that
	// it still presents it (Renew); zero means Written.
	Seen time.Time `json:"seen,omitzero"`
	// Lease is how long after Seen the writing process promises to renew
	// the entry (its own sweep_after); a sweep never removes an entry
	// within its lease, whatever its own maxAge.
	Lease time.Duration `json:"lease,omitempty"`
}

// MinSweepAfter is the shortest sweep_after, the lease of every entry, a
// write under way included: its process renews the entry every third of
// it, which must leave time for a storage write and for some clock
// difference between instances.
const MinSweepAfter = 3 * time.Second

// lastSeen is when the entry was last known to be in use.
func (e JournalEntry) lastSeen() time.Time {
	if e.Seen.After(e.Written) {
		return e.Seen
	}
	return e.Written
}

func newJournalID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ValidateEntry checks a journal entry as a write is checked, without
// trusting any of it: its name and zone are valid DNS names in canonical
// form, the zone is no public suffix and contains the name, the record is
// TXT, and the value has the shape of an ACME DNS-01 digest. Whether this
// config's mapping could have produced the name is entryWriter's question.
func ValidateEntry(e JournalEntry) error {
	for _, f := range []struct{ field, name string }{{"name", e.Name}, {"zone", e.Zone}, {"domain", e.Domain}} {
		if f.name != Normalize(f.name) {
			return fmt.Errorf("%s %q is not in canonical form (lower case, no trailing dot)", f.field, f.name)
		}
		if err := ValidName(f.name + "."); err != nil {
			return fmt.Errorf("%s: %w", f.field, err)
		}
	}
	if err := ValidZone(e.Zone); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	if e.Name == e.Zone || !InZone(e.Name, e.Zone) {
		return fmt.Errorf("name %q does not lie below zone %q", e.Name, e.Zone)
	}
	if e.Type != "" && e.Type != "TXT" {
		return fmt.Errorf("type %q: only TXT challenge records are written", e.Type)
	}
	if err := ValidDigest(e.Value); err != nil {
		return err
	}
	return nil
}

// heldRecord is a challenge record by zone, name and value, compared as
// DNS compares names.
type heldRecord struct{ zone, name, value string }

func heldRecordOf(zone, name, value string) heldRecord {
	return heldRecord{Normalize(zone), Normalize(name), value}
}
