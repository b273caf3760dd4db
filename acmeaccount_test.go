package alias

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestGateCAAAccountURI: once this server's ACME account at the policy's
// CA is in storage (where certmagic keeps it), a CAA whose accounturi names
// only other accounts aborts the obtain before the order, printing the
// record that binds this server's account; a CAA naming this account
// passes, and while no account is stored accounturi cannot be judged and
// the obtain goes on.
func TestGateCAAAccountURI(t *testing.T) {
	const ca = "https://ca.example/acme/directory"
	const ours = "https://ca.example/acme/acct/1"
	for _, tc := range []struct {
		name     string
		email    string // the issuer's
		stored   map[string]string
		domain   string
		wantErr  []string // nil: the obtain goes on
		wantNote string   // a note the check reports
	}{
		{
			name: "another account", email: "Admin@Example.com", domain: "bound.example.com",
			stored: map[string]string{"acme/ca.example-acme-directory/users/admin@example.com/admin.json": `{"status":"valid","location":"` + ours + `"}`},
			wantErr: []string{
				"CAA issue at bound.example.com allows ca.example only for the ACME accounts https://ca.example/acme/acct/other, not this server's (" + ours + ")",
				`add: bound.example.com. 300 IN CAA 0 issue "ca.example; accounturi=` + ours + `"`,
			},
		},
		{
			name: "another account, no email: the default user", domain: "bound.example.com",
			stored:  map[string]string{"acme/ca.example-acme-directory/users/default/registration.json": `{"location":"` + ours + `"}`},
			wantErr: []string{"not this server's (" + ours + ")"},
		},
		{
			name: "this server's account", email: "admin@example.com", domain: "ours.example.com",
			stored: map[string]string{"acme/ca.example-acme-directory/users/admin@example.com/admin.json": `{"location":"` + ours + `"}`},
		},
		{
			name: "no account yet", email: "admin@example.com", domain: "bound.example.com",
			wantNote: "this server has no account at that CA yet",
		},
		{
			name: "an account at another CA", email: "admin@example.com", domain: "bound.example.com",
			stored:   map[string]string{"acme/other-ca.example-directory/users/admin@example.com/admin.json": `{"location":"https://other-ca.example/acct/9"}`},
			wantNote: "this server has no account at that CA yet",
		},
		{
			name: "no CAA: the binding record is a note", email: "admin@example.com", domain: "shop.example.com",
			stored:   map[string]string{"acme/ca.example-acme-directory/users/admin@example.com/admin.json": `{"location":"` + ours + `"}`},
			wantNote: `publish: shop.example.com. 300 IN CAA 0 issue "ca.example; accounturi=` + ours + `"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startGateLab(t, map[string]any{"caa_identities": []string{"ca.example"}})
			storage := &certmagic.FileStorage{Path: t.TempDir()}
			for key, value := range tc.stored {
				if err := storage.Store(context.Background(), key, []byte(value)); err != nil {
					t.Fatal(err)
				}
			}
			l.app.accounts.storage = storage
			l.app.policies[1].issuer = &caddytls.ACMEIssuer{CA: ca, Email: tc.email}

			_, rep := l.app.check(context.Background(), tc.domain, cacheReadOnly)
			var notes []string
			for _, f := range rep.Findings {
				if !f.Fatal {
					notes = append(notes, f.Message)
				}
			}
			if tc.wantNote != "" && !strings.Contains(strings.Join(notes, "\n"), tc.wantNote) {
				t.Errorf("no note says %q: %q", tc.wantNote, notes)
			}
			err := l.obtaining(t, tc.domain)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("obtain aborted: %v", err)
				}
				return
			}
			var de *solver.DelegationError
			if !errors.Is(err, caddy.ErrEventAborted) || !errors.As(err, &de) || de.Code() != solver.CodeCAAAccountURI {
				t.Fatalf("got %v, want an abort for %s", err, solver.CodeCAAAccountURI)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q lacks %q", err, want)
				}
			}
			if n := len(l.srv.Updates()); n != 0 {
				t.Errorf("the gate sent %d updates, want none", n)
			}
		})
	}
}

// TestConfigStorage: the check command reads the ACME accounts where
// `caddy run` keeps them: the config's storage, else Caddy's default.
func TestConfigStorage(t *testing.T) {
	ctx, _ := standalone(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  string
		want certmagic.Storage
	}{
		{`{"storage":{"module":"file_system","root":"` + dir + `"}}`, &certmagic.FileStorage{Path: dir}},
		{`{}`, caddy.DefaultStorage},
	} {
		got, err := configStorage(ctx, []byte(tc.cfg))
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if fs, ok := got.(*certmagic.FileStorage); !ok || fs.Path != tc.want.(*certmagic.FileStorage).Path {
			t.Errorf("%s: storage %#v, want %#v", tc.cfg, got, tc.want)
		}
	}
}
