package solver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"
)

// TestReachability: the reachable run starts at the first success after a
// failure, after a gap longer than MaxGap, or at the first observation; a
// missing key is a success and the caller's own cancellation no
// observation.
func TestReachability(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := errors.New("connection refused")
	type obs struct {
		at  time.Duration
		err error
	}
	for _, tc := range []struct {
		name    string
		obs     []obs
		at      time.Duration // when Since is asked
		since   time.Duration
		wantErr string
	}{
		{"nothing observed", nil, 0, 0, "storage not reached yet"},
		{"reachable throughout", []obs{{0, nil}, {time.Second, nil}, {2 * time.Second, nil}}, 2 * time.Second, 0, ""},
		{"down now", []obs{{0, nil}, {time.Second, down}}, time.Second, 0, "storage unreachable: connection refused"},
		{"back after an outage", []obs{{0, nil}, {time.Second, down}, {5 * time.Second, down}, {6 * time.Second, nil}, {7 * time.Second, nil}}, 7 * time.Second, 6 * time.Second, ""},
		{"a gap starts a new run", []obs{{0, nil}, {time.Second, nil}, {4 * time.Second, nil}}, 4 * time.Second, 4 * time.Second, ""},
		{"not observed lately", []obs{{0, nil}}, 3 * time.Second, 0, "storage not observed for 3s"},
		{"a missing key is an answer", []obs{{0, fs.ErrNotExist}, {time.Second, fmt.Errorf("key: %w", fs.ErrNotExist)}}, time.Second, 0, ""},
		{"own cancellation is no observation", []obs{{0, nil}, {time.Second, context.Canceled}, {2 * time.Second, nil}}, 2 * time.Second, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reachability{MaxGap: 2 * time.Second}
			for _, o := range tc.obs {
				r.Observe(t0.Add(o.at), o.err)
			}
			since, err := r.Since(t0.Add(tc.at))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("Since: %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !since.Equal(t0.Add(tc.since)) {
				t.Errorf("Since = %s, %v; want %s", since.Sub(t0), err, tc.since)
			}
		})
	}
}
