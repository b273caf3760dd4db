package acmednsserver

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"golang.org/x/crypto/bcrypt"

	alias "github.com/acme-alias/caddy-dns-alias"
)

// runningHandler is the endpoint handler of the running config.
func runningHandler(t *testing.T) *Handler {
	t.Helper()
	for _, zw := range alias.RunningZoneWriters() {
		if h, ok := zw.Owner().(*Handler); ok {
			return h
		}
	}
	t.Fatal("no acme_dns_server in the running config")
	return nil
}

// TestHandlerValuesSurviveReload: a config reload deletes no value and the
// new config's endpoint knows the values from the journal, with their
// write times; a later config on the same storage (a restart, another
// instance) ages them by the value rules: past the lifetime, all but the
// two newest go, records and journal entries.
func TestHandlerValuesSurviveReload(t *testing.T) {
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("alice-key"), bcrypt.MinCost)
	config := func(lifetime string) []byte {
		return []byte(endpointConfig(fmt.Sprintf(`"zone":%q,"provider":%s,"authoritative_wait":-1,"value_lifetime":%q,"accounts":[{"username":"alice","key_hash":%q,"subdomain":"a1"}]`,
			endpointZone, recorderJSON, lifetime, hash), dir))
	}
	t.Cleanup(func() { caddy.Stop() })
	if err := caddy.Load(config("1h"), true); err != nil {
		t.Fatal(err)
	}
	takeCalls()
	for _, v := range []string{"1", "2", "3"} {
		if code := handlerUpdate(t, runningHandler(t), "alice-key", digest(v)); code != 200 {
			t.Fatalf("update %s: %d", v, code)
		}
	}
	if err := caddy.Load(config("2h"), true); err != nil {
		t.Fatal(err)
	}
	h := runningHandler(t)
	h.TendZone(context.Background())
	if calls := takeCalls(); len(calls) != 3 {
		t.Fatalf("calls %+v, want the three appends and no delete across the reload", calls)
	}
	if a := h.server.Accounts(); a[0].Values != 3 {
		t.Fatalf("the reloaded endpoint knows %d values, want 3", a[0].Values)
	}
	// Three hours on: the entries are rewritten as written then, and
	// renewed 40 minutes ago, within their lease, as an instance serving
	// the account renews them (so the sweep, which acts on the leases,
	// stays out of this).
	storage := &certmagic.FileStorage{Path: dir}
	for i, e := range journalEntries(t, dir) {
		e.Written = time.Now().Add(-3*time.Hour + time.Duration(i)*time.Minute)
		e.Seen = time.Now().Add(-40 * time.Minute)
		data, _ := json.Marshal(e)
		if err := storage.Store(context.Background(), "dns_alias/journal/"+e.ID+".json", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := caddy.Load(config("1h"), true); err != nil {
		t.Fatal(err)
	}
	runningHandler(t).TendZone(context.Background())
	calls := takeCalls()
	if len(calls) != 1 || calls[0].op != "delete" {
		t.Fatalf("calls %+v, want the delete of the oldest value", calls)
	}
	entries := journalEntries(t, dir)
	if len(entries) != 2 {
		t.Fatalf("journal: %d entries, want the two newest", len(entries))
	}
	for _, e := range entries {
		if e.Value == calls[0].value || time.Since(e.Seen) > time.Minute {
			t.Errorf("entry %s: the deleted value, or not renewed (seen %s)", e.Value, e.Seen)
		}
	}
}
