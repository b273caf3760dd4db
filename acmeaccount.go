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
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// acmeAccounts finds, in Caddy's storage, the ACME accounts a policy's
// issuer orders with, so that CAA's accounturi (RFC 8657) can be judged
// before the order: certmagic keeps each account at
// acme/<issuer key>/users/<email or "default">/<user>.json, its URL in
// "location".
type acmeAccounts struct {
	storage certmagic.Storage // nil: accounts are unknown
}

// maxStoredAccounts bounds the accounts read under one CA: a storage
// holds one per email address the config ever named.
const maxStoredAccounts = 32

// issuer returns what CAA is judged against for pol: its CA's identities
// and this server's account URIs there.
func (a *App) issuer(ctx context.Context, pol *policy) solver.Issuer {
	iss := solver.Issuer{CAIdentities: a.caa.forPolicy(ctx, pol, a.logger)}
	if pol == nil || pol.issuer == nil {
		return iss
	}
	uris, err := a.accounts.uris(ctx, pol.issuer)
	if err != nil && a.logger != nil {
		a.logger.Warn("reading the ACME account from storage; CAA accounturi not judged", zap.String("ca", caURL(pol.issuer)), zap.Error(err))
	}
	iss.AccountURIs = uris
	return iss
}

// uris returns the URLs of the accounts that iss orders with at its CA,
// the one certmagic picks first: the account of iss's email when it has
// one; else every account stored under the CA, newest first (certmagic
// uses the newest, or the email another issuer of the process found
// first). None while the CA has registered none for this storage.
func (s acmeAccounts) uris(ctx context.Context, iss *caddytls.ACMEIssuer) ([]string, error) {
	if s.storage == nil {
		return nil, nil
	}
	users := path.Join("acme", certmagic.StorageKeys.Safe((&certmagic.ACMEIssuer{CA: caURL(iss)}).IssuerKey()), "users")
	if email := strings.ToLower(strings.TrimSpace(iss.Email)); email != "" {
		uri, err := s.location(ctx, path.Join(users, certmagic.StorageKeys.Safe(email)))
		if errors.Is(err, fs.ErrNotExist) || uri == "" {
			return nil, nil
		}
		return []string{uri}, err
	}
	dirs, err := s.storage.List(ctx, users, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the ACME accounts at %s: %w", users, err)
	}
	type account struct {
		uri      string
		modified time.Time
	}
	var found []account
	for _, dir := range dirs[:min(len(dirs), maxStoredAccounts)] {
		info, err := s.storage.Stat(ctx, dir)
		if err != nil || info.IsTerminal {
			continue
		}
		uri, err := s.location(ctx, dir)
		if err != nil || uri == "" {
			continue
		}
		found = append(found, account{uri, info.Modified})
	}
	slices.SortStableFunc(found, func(x, y account) int { return y.modified.Compare(x.modified) })
	var uris []string
	for _, f := range found {
		if !slices.Contains(uris, f.uri) {
			uris = append(uris, f.uri)
		}
	}
	return uris, nil
}

// location reads the URL of the account kept in the user directory dir:
// its one .json file (<user>.json, or registration.json).
func (s acmeAccounts) location(ctx context.Context, dir string) (string, error) {
	keys, err := s.storage.List(ctx, dir, false)
	if err != nil {
		return "", err
	}
	for _, key := range keys {
		if !strings.HasSuffix(key, ".json") {
			continue
		}
		raw, err := s.storage.Load(ctx, key)
		if err != nil {
			return "", fmt.Errorf("reading the ACME account %s: %w", key, err)
		}
		var acct acme.Account
		if err := json.Unmarshal(raw, &acct); err != nil {
			return "", fmt.Errorf("decoding the ACME account %s: %w", key, err)
		}
		return acct.Location, nil
	}
	return "", nil
}
