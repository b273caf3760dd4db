package solver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
)

// TestPresentAt: a write at a name the caller names (the acme-dns
// endpoint's) is confined to the default rule's zones, takes only a
// digest, is journalled like every challenge write and is swept when its
// process is gone; DeleteRecords at the name removes exactly its value.
func TestPresentAt(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		wantErr     string
	}{
		{"acct1." + testAliasZone, digest("a"), ""},
		{"ACCT1." + testAliasZone + ".", digest("a"), ""},
		{testAliasZone, digest("a"), "outside alias zones"},
		{"acct1.example.com", digest("a"), "outside alias zones"},
		{"acct1." + testAliasZone, "not a digest", "ACME DNS-01 digest"},
		{"bad..name." + testAliasZone, digest("a"), "refusing to write"},
	} {
		t.Run(tc.name+"/"+tc.value, func(t *testing.T) {
			w, j := &fakeWriter{}, &memJournal{}
			p, _ := followProvider(t, newFakeDNS(), w)
			p.Journal = j
			err := p.PresentAt(context.Background(), tc.name, tc.value)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PresentAt: %v, want an error containing %q", err, tc.wantErr)
				}
				if !w.empty() || len(j.entries) != 0 {
					t.Fatalf("a refused write reached the writer (%v) or the journal (%d entries)", w.getCalls(), len(j.entries))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name := "acct1." + testAliasZone
			if got := w.values(name); !slices.Equal(got, []string{tc.value}) {
				t.Fatalf("values at %s: %v", name, got)
			}
			entries, _ := j.List(context.Background())
			if len(entries) != 1 || entries[0].Name != name || entries[0].Zone != testAliasZone || entries[0].Domain != name {
				t.Fatalf("journal: %+v", entries)
			}
			// The process is gone: another one's sweep removes the record.
			other, _ := followProvider(t, newFakeDNS(), w)
			other.Journal = j
			other.now = func() time.Time { return time.Now().Add(time.Hour) }
			if n, err := NewSweeper(other).Sweep(context.Background(), time.Minute); err != nil || n != 1 || !w.empty() {
				t.Fatalf("sweep removed %d (%v); left %v", n, err, w.values(name))
			}
		})
	}
	t.Run("delete", func(t *testing.T) {
		w := &fakeWriter{}
		p, _ := followProvider(t, newFakeDNS(), w)
		name := "acct1." + testAliasZone
		for _, l := range []string{"a", "b"} {
			if err := p.PresentAt(context.Background(), name, digest(l)); err != nil {
				t.Fatal(err)
			}
		}
		mustDelete(t, p, testAliasZone, libdns.TXT{Name: name + ".", Text: digest("a")})
		if got := w.values(name); !slices.Equal(got, []string{digest("b")}) {
			t.Fatalf("after deleting a: %v", got)
		}
	})
}
