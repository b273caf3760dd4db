package lab

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// PebbleRoots fetches the issuing hierarchy of the running Pebble from its
// management API: every root (/roots/0, /roots/1, ...) and every
// intermediate (/intermediates/0, ...), for verifying the certificates it
// issued. Pebble makes a new hierarchy at each start, so fetch it after the
// lab is up and not before a Pebble restart.
func (l *Lab) PebbleRoots(ctx context.Context) (roots, intermediates *x509.CertPool, err error) {
	hc, err := l.PebbleHTTPClient()
	if err != nil {
		return nil, nil, err
	}
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	for _, kind := range []struct {
		path string
		pool *x509.CertPool
	}{{"/roots/", roots}, {"/intermediates/", intermediates}} {
		for i := 0; ; i++ {
			certs, found, err := getPEMCerts(ctx, hc, fmt.Sprintf("%s%s%d", strings.TrimSuffix(l.PebbleMgmt, "/"), kind.path, i))
			if err != nil {
				return nil, nil, err
			}
			if !found {
				if i == 0 {
					return nil, nil, fmt.Errorf("lab: pebble has no %s0", kind.path)
				}
				break
			}
			for _, c := range certs {
				kind.pool.AddCert(c)
			}
		}
	}
	return roots, intermediates, nil
}

// VerifyPebbleChain checks that chain (leaf first, as a server sends it)
// was issued by the running Pebble for dnsName.
func (l *Lab) VerifyPebbleChain(ctx context.Context, chain []*x509.Certificate, dnsName string) error {
	if len(chain) == 0 {
		return fmt.Errorf("lab: empty chain")
	}
	roots, inter, err := l.PebbleRoots(ctx)
	if err != nil {
		return err
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots, Intermediates: inter})
	return err
}

func getPEMCerts(ctx context.Context, hc *http.Client, url string) ([]*x509.Certificate, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("lab: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("lab: GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, fmt.Errorf("lab: GET %s: %w", url, err)
	}
	certs, err := ParseCertificates(body)
	if err != nil {
		return nil, false, fmt.Errorf("lab: GET %s: %w", url, err)
	}
	if len(certs) == 0 {
		return nil, false, fmt.Errorf("lab: GET %s: no certificate", url)
	}
	return certs, true, nil
}

// ParseCertificates returns the certificates in the PEM blocks of data, in
// order; blocks of other types are skipped.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return certs, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}
