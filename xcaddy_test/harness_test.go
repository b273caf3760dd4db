// Package xcaddy_test builds Caddy with xcaddy, as a user would, and runs it
// against the lab's real servers: BIND, Unbound and Pebble on loopback.
package xcaddy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acme-alias/caddy-dns-alias/internal/lab"
)

var (
	// caddyBin is the xcaddy-built binary; empty when the lab suite is
	// off (lab.SwitchEnv) or the lab or the build failed, with the reason
	// in setupErr.
	caddyBin string
	theLab   *lab.Lab
	setupErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-dns-alias-xcaddy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if lab.Enabled() {
		setupErr = setup(dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup brings the lab up and builds Caddy (or takes $CADDY_BIN, a binary
// built by lab/build-caddy.sh from this tree).
func setup(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := lab.Hold(); err != nil {
		return err
	}
	l, err := lab.EnsureUp(ctx)
	if err != nil {
		return fmt.Errorf("starting the lab: %w", err)
	}
	theLab = l
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		caddyBin = bin
		return nil
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "caddy")
	start := time.Now()
	out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "lab", "build-caddy.sh"), bin).CombinedOutput()
	if err != nil {
		return fmt.Errorf("building Caddy with xcaddy: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "xcaddy build took %s\n", time.Since(start).Round(time.Second))
	caddyBin = bin
	return nil
}

// requireLab returns the lab: it skips the test when the lab suite is off
// (lab.SwitchEnv) and fails it when the suite is on but the lab or the
// Caddy build could not be had.
func requireLab(t *testing.T) *lab.Lab {
	t.Helper()
	lab.SkipUnlessEnabled(t)
	if setupErr != nil {
		t.Fatalf("lab or Caddy build unavailable: %v", setupErr)
	}
	return theLab
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logBuffer collects a process's output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// caddyProc is one running Caddy.
type caddyProc struct {
	t         *testing.T
	cmd       *exec.Cmd
	dir       string
	storage   string
	admin     string // 127.0.0.1:port
	httpsPort int
	log       *logBuffer
	started   time.Time
	done      chan struct{}
}

// globalOptions are the lab's global options; extra is added to the global
// options block (e.g. "renew_interval 2s").
func (c *caddyProc) globalOptions(l *lab.Lab, extra string) string {
	return fmt.Sprintf(`{
	admin %s
	storage file_system %s
	email test@example.com
	acme_ca %s
	acme_ca_root %s
	http_port %d
	https_port %d
	ocsp_stapling off
	%s
}
`, c.admin, c.storage, l.PebbleDir, l.PebbleCAPEM, freePort(c.t), c.httpsPort, extra)
}

func newCaddy(t *testing.T) *caddyProc {
	dir := t.TempDir()
	return &caddyProc{
		t:         t,
		dir:       dir,
		storage:   filepath.Join(dir, "storage"),
		admin:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpsPort: freePort(t),
		log:       &logBuffer{},
		done:      make(chan struct{}),
	}
}

// startCaddyfile starts Caddy on the lab's global options plus sites.
func startCaddyfile(t *testing.T, extraGlobal, sites string) *caddyProc {
	t.Helper()
	c := newCaddy(t)
	cfg := c.globalOptions(requireLab(t), extraGlobal) + "\n" + sites
	path := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start("run", "--config", path, "--adapter", "caddyfile")
	return c
}

// start runs the binary with args and stops it when the test ends.
func (c *caddyProc) start(args ...string) {
	t := c.t
	t.Helper()
	c.cmd = exec.Command(caddyBin, args...)
	c.cmd.Dir = c.dir
	c.cmd.Env = append(os.Environ(), "HOME="+c.dir, "XDG_DATA_HOME="+filepath.Join(c.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"))
	c.cmd.Env = append(c.cmd.Env, c.env()...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
}

// env passes the lab's TSIG secrets to Caddy as {env.*} placeholders.
func (c *caddyProc) env() []string {
	l := theLab
	return []string{
		"TSIG_SECRET=" + l.CaddyKey.Secret,
		"TSIG_SECRET_2=" + l.CaddyKey2.Secret,
	}
}

func (c *caddyProc) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.done:
	default:
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	if c.t.Failed() {
		c.t.Logf("caddy log:\n%s", c.log.String())
	}
}

// waitLog waits until Caddy's log contains s.
func (c *caddyProc) waitLog(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(c.log.String(), s) {
			return true
		}
		select {
		case <-c.done:
			return strings.Contains(c.log.String(), s)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// certFile returns the certificate file Caddy stored for name, or "".
func (c *caddyProc) certFile(name string) string {
	key := strings.Replace(name, "*", "wildcard_", 1)
	matches, _ := filepath.Glob(filepath.Join(c.storage, "certificates", "*", key, key+".crt"))
	if len(matches) == 0 {
		return ""
	}
	return matches[0]
}

// waitCert waits for the certificate of name in Caddy's storage, checks that
// Pebble issued it for name, and returns it with the time it took.
func (c *caddyProc) waitCert(name string, timeout time.Duration) (*x509.Certificate, time.Duration) {
	c.t.Helper()
	return c.waitCertFrom(name, timeout, theLab.VerifyPebbleChain)
}

// waitCertFrom waits for the certificate of name in Caddy's storage and
// checks it with verify (e.g. against a Pebble other than the lab's). It
// returns the leaf and how long it took since c.started.
func (c *caddyProc) waitCertFrom(name string, timeout time.Duration, verify func(context.Context, []*x509.Certificate, string) error) (*x509.Certificate, time.Duration) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if f := c.certFile(name); f != "" {
			took := time.Since(c.started)
			chain := readChain(t, f)
			if err := verify(testCtx(t, 30*time.Second), chain, name); err != nil {
				t.Fatalf("certificate for %s in storage does not verify: %v", name, err)
			}
			return chain[0], took
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s after %s; caddy log:\n%s", name, timeout, c.log.String())
		}
		select {
		case <-c.done:
			t.Fatalf("caddy exited before obtaining %s; log:\n%s", name, c.log.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readChain(t *testing.T, file string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		t.Fatalf("%s holds no certificate", file)
	}
	return chain
}

// served returns the certificate chain Caddy presents for sni.
func (c *caddyProc) served(sni string) []*x509.Certificate {
	t := c.t
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp",
		fmt.Sprintf("127.0.0.1:%d", c.httpsPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", sni, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// challengeTXT lists every challenge TXT record left in the lab's alias
// zones, asking their authoritative servers directly.
func challengeTXT(t *testing.T) []string {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	var left []string
	for _, z := range []struct{ server, zone string }{{l.AuthA, l.AliasZone}, {l.AuthB, l.AliasZone2}} {
		txts, err := l.TXTRecords(ctx, z.server, z.zone)
		if err != nil {
			t.Fatalf("listing TXT in %s: %v", z.zone, err)
		}
		for _, rr := range txts {
			left = append(left, fmt.Sprintf("%s TXT %q", rr.Hdr.Name, strings.Join(rr.Txt, "")))
		}
	}
	return left
}

// assertNoChallengeLeft waits briefly for cleanups to finish, then fails if
// any TXT record is left in an alias zone.
func assertNoChallengeLeft(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if left = challengeTXT(t); len(left) == 0 {
			return
		}
	}
	t.Errorf("challenge records left behind in the alias zones: %v", left)
}

// productionSerials reads the SOA serial of every production zone from its
// authoritative servers.
func productionSerials(t *testing.T) map[string]uint32 {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	out := map[string]uint32{}
	for _, zone := range append(append([]string{}, l.ZonesA...), l.ZonesB...) {
		if zone == l.AliasZone || zone == l.AliasZone2 {
			continue
		}
		servers, err := l.Servers(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			serial, err := l.Serial(ctx, s, zone)
			if err != nil {
				t.Fatalf("serial of %s at %s: %v", zone, s, err)
			}
			out[zone+"@"+s] = serial
		}
	}
	return out
}

// assertProductionUnchanged fails if any production zone's serial moved
// since before: nothing may ever be written there.
func assertProductionUnchanged(t *testing.T, before map[string]uint32) {
	t.Helper()
	after := productionSerials(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("production zone %s changed: serial %d -> %d", k, v, after[k])
		}
	}
}

// publish adds records to production zones with the lab's admin key, as the
// domain's owner would, and flushes them from Unbound's cache.
func publish(t *testing.T, records ...string) {
	t.Helper()
	l := requireLab(t)
	ctx := testCtx(t, 30*time.Second)
	for _, rr := range records {
		parsed, err := dns.NewRR(rr)
		if err != nil {
			t.Fatalf("bad record %q: %v", rr, err)
		}
		zone := zoneOf(t, parsed.Header().Name)
		if err := l.Publish(ctx, zone, rr); err != nil {
			t.Fatalf("publishing %s: %v", rr, err)
		}
		if err := l.FlushResolver(ctx, parsed.Header().Name); err != nil {
			t.Fatalf("flushing %s: %v", parsed.Header().Name, err)
		}
	}
}

// zoneOf returns the lab zone that contains name.
func zoneOf(t *testing.T, name string) string {
	t.Helper()
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	best := ""
	for _, z := range append(append([]string{}, theLab.ZonesA...), theLab.ZonesB...) {
		if (n == z || strings.HasSuffix(n, "."+z)) && len(z) > len(best) {
			best = z
		}
	}
	if best == "" {
		t.Fatalf("%s is in no lab zone", name)
	}
	return best
}

// rfc2136 is the inner provider block for the lab's alias zone.
func rfc2136() string {
	return fmt.Sprintf(`provider rfc2136 {
				key_name %s
				key {env.TSIG_SECRET}
				key_alg hmac-sha256
				server %s
			}`, theLab.CaddyKey.Name, theLab.AuthA)
}
