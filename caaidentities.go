package alias

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// caaDirectory reads the CAA identities that ACME directories publish
// (meta.caaIdentities, RFC 8555 §7.1.1): CAA must be judged against the CA
// the policy asks, not a fixed list. acmez keeps every directory it read
// for 12 hours, shared with certmagic's orders, so a directory is read
// once; what is remembered here is a directory that could not be read, so
// that the checks of many names do not each wait for it.
type caaDirectory struct {
	mu       sync.Mutex
	failures map[string]time.Time                       // by directory URL and roots: when reading it last failed
	client   func(roots []string) (*http.Client, error) // tests replace it
}

// caaFailureTTL is how long a directory that could not be read is not
// asked again.
const caaFailureTTL = time.Minute

// forPolicy returns the CAA identities of the CA that pol's alias
// provider obtains certificates from: its ACME directory's caaIdentities,
// else the provider's caa_identities. None means CAA is reported but not
// judged.
func (d *caaDirectory) forPolicy(ctx context.Context, pol *policy, logger *zap.Logger) []string {
	var configured []string
	if pol.provider != nil {
		configured = pol.provider.CAAIdentities
	}
	if pol.issuer == nil {
		return configured
	}
	url := caURL(pol.issuer)
	ids, err := d.identities(ctx, url, pol.issuer.TrustedRootsPEMFiles)
	if err != nil && logger != nil {
		logger.Debug("reading the CA's CAA identities from its ACME directory", zap.String("directory", url), zap.Error(err))
	}
	if len(ids) > 0 {
		return ids
	}
	return configured
}

// identities reads the caaIdentities of the directory at url, trusting
// roots (PEM files) besides the system's, unless reading it failed less
// than caaFailureTTL ago.
func (d *caaDirectory) identities(ctx context.Context, url string, roots []string) ([]string, error) {
	key := url + "\x00" + strings.Join(roots, "\x00")
	d.mu.Lock()
	failed, ok := d.failures[key]
	d.mu.Unlock()
	if ok && time.Since(failed) < caaFailureTTL {
		return nil, fmt.Errorf("ACME directory %s: not asked again within %s of a failure", url, caaFailureTTL)
	}
	ids, err := d.fetch(ctx, url, roots)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.failures, key)
		return ids, nil
	}
	if d.failures == nil {
		d.failures = map[string]time.Time{}
	}
	d.failures[key] = time.Now()
	return nil, err
}

func (d *caaDirectory) fetch(ctx context.Context, url string, roots []string) ([]string, error) {
	newClient := d.client
	if newClient == nil {
		newClient = directoryClient
	}
	client, err := newClient(roots)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// acmez's client, which certmagic orders with: it shares one cache of
	// directories by URL with certmagic's orders (12 hours). It reads the
	// whole body, as for those orders: the URL is the operator's CA, not
	// outside input.
	dir, err := (&acme.Client{Directory: url, HTTPClient: client}).GetDirectory(ctx)
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", url, err)
	}
	if dir.Meta == nil {
		return nil, nil
	}
	var ids []string
	for _, id := range dir.Meta.CAAIdentities {
		if id = solver.Normalize(id); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// directoryClient trusts the system's roots and the issuer's own
// (trusted_roots_pem_files, as for its ACME requests).
func directoryClient(roots []string) (*http.Client, error) {
	if len(roots) == 0 {
		return &http.Client{}, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range roots {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading trusted root %s: %w", f, err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}
