package solver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
)

// memJournal is an in-memory Journal; the storage-backed one is glue. Keys
// are "mem/<id>"; entries put under other keys (putKey) stand for what
// anyone with access to the storage can write there.
type memJournal struct {
	mu      sync.Mutex
	entries map[string]JournalEntry // by key
	deleted []string                // keys DeleteKey was asked for
	putErr  error                   // what Put fails with, storing nothing (a storage that is down)
}

func (j *memJournal) Put(_ context.Context, e JournalEntry) error {
	j.mu.Lock()
	err := j.putErr
	j.mu.Unlock()
	if err != nil {
		return err
	}
	j.putKey("mem/"+e.ID, e)
	return nil
}

func (j *memJournal) failPuts(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.putErr = err
}

// TestJournalDownWritesNothing: while the journal cannot be written (its
// storage is down: a Redis restarting), a challenge fails before anything
// reaches the inner provider, with the journal's error (which names the
// storage) wrapped, and leaves nothing presented; once the journal works
// again, the same challenge is written and journalled.
func TestJournalDownWritesNothing(t *testing.T) {
	fw := &fakeWriter{}
	p := staticProvider(t, fw)
	j := &memJournal{}
	p.Journal = j
	down := errors.New("storing challenge journal key dns_alias/journal/x.json in storage caddy.storage.redis: dial tcp 127.0.0.1:16379: connect: connection refused")
	j.failPuts(down)
	value := "journal down"
	_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", value)})
	if !errors.Is(err, down) {
		t.Fatalf("AppendRecords with the journal down = %v, want its error wrapped", err)
	}
	for _, want := range []string{"example.com", "in the journal before writing it", "caddy.storage.redis"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if calls := fw.getCalls(); len(calls) != 0 {
		t.Errorf("the inner provider was called although the journal write failed: %+v", calls)
	}
	if recs, _ := p.GetRecords(context.Background(), "example.com."); len(recs) != 0 {
		t.Errorf("GetRecords after the failed present = %v, want nothing presented", recs)
	}
	j.failPuts(nil)
	recs := mustAppend(t, p, "example.com.", txt("_acme-challenge", value))
	if got := fw.values(testStaticAlias); !slices.Equal(got, digests(value)) || j.len() != 1 {
		t.Errorf("after the journal is back: alias holds %v and the journal %d entries, want the value and its entry", got, j.len())
	}
	mustDelete(t, p, "example.com.", recs...)
	if j.len() != 0 || !fw.empty() {
		t.Errorf("after the cleanup: %d journal entries, alias %v", j.len(), fw.values(testStaticAlias))
	}
}

func (j *memJournal) putKey(key string, e JournalEntry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.entries == nil {
		j.entries = map[string]JournalEntry{}
	}
	e.Key = ""
	j.entries[key] = e
}

func (j *memJournal) Delete(ctx context.Context, id string) error {
	return j.DeleteKey(ctx, "mem/"+id)
}

func (j *memJournal) DeleteKey(_ context.Context, key string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.deleted = append(j.deleted, key)
	delete(j.entries, key)
	return nil
}

func (j *memJournal) List(context.Context) ([]JournalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []JournalEntry
	for k, e := range j.entries {
		e.Key = k
		out = append(out, e)
	}
	return out, nil
}

// digest is a stand-in ACME DNS-01 TXT value derived from s: 43 characters
// of base64url, as a sweep demands.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (j *memJournal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries)
}

// TestJournalRecordsAndForgets: a write is journalled before it happens and
// forgotten after its delete.
func TestJournalRecordsAndForgets(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	p := staticProvider(t, w)
	p.Journal = j
	var seenBeforeWrite bool
	w.setFailures(func(string, libdns.RR) error {
		seenBeforeWrite = j.len() == 1
		return nil
	}, nil)
	recs := mustAppend(t, p, "example.com.", txt("_acme-challenge", "v1"))
	if !seenBeforeWrite {
		t.Error("the journal entry was not written before the record")
	}
	es, _ := j.List(context.Background())
	if len(es) != 1 || es[0].Name != testStaticAlias || es[0].Zone != testAliasZone || es[0].Value != digest("v1") || es[0].Writer != "fake" || es[0].Domain != "example.com" {
		t.Fatalf("journal = %+v", es)
	}
	mustDelete(t, p, "example.com.", recs...)
	if j.len() != 0 {
		t.Errorf("journal still holds %d entries after cleanup", j.len())
	}
}

// TestSweepAfterCrash: a process dies between present and cleanup; the next
// one sweeps the orphan once it is older than the challenge lifetime, and
// leaves younger entries (another instance's challenges in flight) alone.
func TestSweepAfterCrash(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	clock := newFakeClock()
	crashed := staticProvider(t, w)
	crashed.Journal, crashed.now = j, clock.Now
	mustAppend(t, crashed, "example.com.", txt("_acme-challenge", "orphan"))

	clock.Advance(10 * time.Minute)
	other := staticProvider(t, w)
	other.Journal, other.now = j, clock.Now
	mustAppend(t, other, "example.net.", txt("_acme-challenge", "in-flight"))

	restarted := staticProvider(t, w)
	restarted.Journal, restarted.now = j, clock.Now
	n, err := sweeperOf(restarted).Sweep(context.Background(), 5*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 removed", n, err)
	}
	if got := w.values(testStaticAlias); !slices.Equal(got, []string{digest("in-flight")}) {
		t.Errorf("alias holds %v after the sweep, want only the in-flight value", got)
	}
	if j.len() != 1 {
		t.Errorf("journal holds %d entries, want the in-flight one", j.len())
	}

	// The in-flight challenge, now old, is still presented by its process:
	// that process's own sweep leaves it.
	clock.Advance(time.Hour)
	if n, _ := sweeperOf(other).Sweep(context.Background(), 5*time.Minute); n != 0 {
		t.Errorf("a process swept its own live challenge")
	}
}

func TestSweepKeepsEntriesWithoutWriter(t *testing.T) {
	w := &fakeWriter{}
	j := &memJournal{}
	j.Put(context.Background(), JournalEntry{ID: "x", Zone: "gone.example", Name: "_acme-challenge.gone.example", Value: digest("v"), Writer: "fake", Written: time.Unix(0, 0)})
	p := staticProvider(t, w)
	p.Journal = j
	if n, err := sweeperOf(p).Sweep(context.Background(), time.Minute); n != 0 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if j.len() != 1 || len(w.getCalls()) != 0 {
		t.Error("an entry whose zone no writer covers was touched")
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New(`dns response error code "REFUSED" (5)`), false},
		{errors.New(`dns response error code "NOTAUTH" (9)`), false},
		{errors.New(`dns response error code "SERVFAIL" (2)`), true},
		{fmt.Errorf("read udp 127.0.0.1:1->127.0.0.2:53: %w", syscall.ECONNREFUSED), true},
		{errors.New("i/o timeout"), true},
		{errors.New("HTTP status 503"), true},
		{errors.New("HTTP status 403: invalid token"), false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("Transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error // returned by successive attempts; nil after
		deadline  time.Duration
		wantCalls int
		wantErr   bool
	}{
		{"success at once", nil, time.Second, 1, false},
		{"transient then success", []error{syscall.ECONNREFUSED, syscall.ECONNREFUSED}, 5 * time.Second, 3, false},
		{"permanent fails at once", []error{errors.New(`dns response error code "REFUSED" (5)`)}, 5 * time.Second, 1, true},
		{"transient until attempts run out", slices.Repeat([]error{syscall.ECONNREFUSED}, 10), 30 * time.Second, retryAttempts, true},
		{"transient until the deadline", slices.Repeat([]error{syscall.ECONNREFUSED}, 10), 150 * time.Millisecond, 0, true},
	}
	for _, tt := range tests {
		// In a synctest bubble the backoffs pass on the bubble's clock,
		// at once.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
				defer cancel()
				calls := 0
				start := time.Now()
				err := retry(ctx, func(context.Context) error {
					calls++
					if calls <= len(tt.errs) {
						return tt.errs[calls-1]
					}
					return nil
				})
				if (err != nil) != tt.wantErr {
					t.Fatalf("retry = %v, want error %v", err, tt.wantErr)
				}
				if tt.wantCalls > 0 && calls != tt.wantCalls {
					t.Errorf("%d attempts, want %d", calls, tt.wantCalls)
				}
				if time.Since(start) > tt.deadline+100*time.Millisecond {
					t.Errorf("retry ran %s past its %s deadline", time.Since(start), tt.deadline)
				}
			})
		})
	}
}
