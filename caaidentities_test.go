package alias

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// TestCAADirectoryReads: a directory is read once, then served from
// acmez's own directory cache (the one certmagic's orders use); a
// directory that could not be read is not asked again for a while, so that
// the checks of many names do not each wait for it.
func TestCAADirectoryReads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		wantIDs []string
	}{
		{"readable", http.StatusOK, []string{"directory-ca.example"}},
		{"failing", http.StatusInternalServerError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reads atomic.Int32
			dir := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reads.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(`{"newNonce":"x","newOrder":"x","meta":{"caaIdentities":["Directory-CA.example"]}}`))
			}))
			t.Cleanup(dir.Close)
			d := &caaDirectory{client: func([]string) (*http.Client, error) { return dir.Client(), nil }}
			for i := range 3 {
				ids, err := d.identities(context.Background(), dir.URL, nil)
				if !slices.Equal(ids, tc.wantIDs) || (err == nil) != (tc.wantIDs != nil) {
					t.Fatalf("read %d: %v, %v; want %v", i+1, ids, err, tc.wantIDs)
				}
			}
			if n := reads.Load(); n != 1 {
				t.Errorf("the directory was asked %d times for 3 checks, want 1", n)
			}
		})
	}
}
