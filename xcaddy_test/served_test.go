package xcaddy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// TestServedWaitsForTheStoredCertificate: served waits for the event a test
// means, Caddy presenting the certificate it stored, through what a loaded
// machine shows between storing and caching: handshakes that fail ("tls:
// internal error", no certificate loaded yet), then the certificate from
// before. The server here plays Caddy in that window for its first
// handshakes. Handshaking once, as served did, failed the ACME-DNS scenario
// on a busy machine. It needs no lab but polls, as the harness does, so it
// runs with the lab suite, not in the hermetic go test ./...
func TestServedWaitsForTheStoredCertificate(t *testing.T) {
	lab.SkipUnlessEnabled(t)
	const name = "served.example.com"
	stored, storedPEM := selfSigned(t, name)
	before, _ := selfSigned(t, name)
	c := newCaddy(t)
	dir := filepath.Join(c.storage, "certificates", "ca", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), storedPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var handshakes atomic.Int32
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			switch n := handshakes.Add(1); {
			case n <= 3:
				return nil, errors.New("no certificate loaded yet")
			case n <= 6:
				return &before, nil
			default:
				return &stored, nil
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	c.httpsPort = ln.Addr().(*net.TCPAddr).Port
	chain := c.served(name)
	if !chain[0].Equal(stored.Leaf) {
		t.Fatalf("served returned serial %x, want the stored certificate's %x", chain[0].SerialNumber, stored.Leaf.SerialNumber)
	}
	if n := handshakes.Load(); n != 7 {
		t.Errorf("%d handshakes, want 7: served returned before or long after the stored certificate was presented", n)
	}
}

// selfSigned returns a certificate for name and its PEM.
func selfSigned(t *testing.T, name string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
