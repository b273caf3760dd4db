package xcaddy_test

// The Caddy-process API of every scenario: start a Caddy on the lab (a
// Caddyfile or a config of any adapter, on its own or a shared storage),
// read its log through typed queries, talk to its admin endpoint, wait for
// its certificates and its challenge journal, and stop it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/solver"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// caddyProc is one running Caddy.
type caddyProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	storage string
	// redisPrefix is the key prefix of the lab Redis's storage, for a
	// Caddy on `storage redis` (a cluster node); storage is unused then.
	redisPrefix string
	env         []string // added to the lab's Caddy environment
	admin       string   // 127.0.0.1:port
	httpsPort   int
	log         *logBuffer
	started     time.Time
	done        chan struct{}
}

// globalOptions are the lab's global options; extra is added to the global
// options block (e.g. "renew_interval 2s").
func (c *caddyProc) globalOptions(l *lab.Lab, extra string) string {
	return l.CaddyGlobalOptions(c.admin, c.storage, freePort(c.t), c.httpsPort, extra)
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

// startCaddy starts Caddy with the config that cfg writes for the new
// process (its admin address, storage and ports are set before cfg runs),
// using adapter ("caddyfile" or "" for JSON), on storage (a directory
// shared between processes, or "" for the process's own). It is stopped
// when the test ends.
func startCaddy(t *testing.T, storage, adapter string, cfg func(c *caddyProc) string) *caddyProc {
	t.Helper()
	requireLab(t)
	c := newCaddy(t)
	if storage != "" {
		c.storage = storage
	}
	name := "caddy.json"
	if adapter == "caddyfile" {
		name = "Caddyfile"
	}
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(cfg(c)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--config", path}
	if adapter != "" {
		args = append(args, "--adapter", adapter)
	}
	c.start(args...)
	return c
}

// startCaddyfile starts Caddy on the lab's global options plus extraGlobal,
// and sites.
func startCaddyfile(t *testing.T, extraGlobal, sites string) *caddyProc {
	t.Helper()
	return startCaddyfileOn(t, "", extraGlobal, sites)
}

// startCaddyfileOn is startCaddyfile on storage (see startCaddy).
func startCaddyfileOn(t *testing.T, storage, extraGlobal, sites string) *caddyProc {
	t.Helper()
	return startCaddy(t, storage, "caddyfile", func(c *caddyProc) string {
		return c.globalOptions(theLab, extraGlobal) + "\n" + sites
	})
}

// templateSite is a site block for names (one, or several comma-separated)
// whose challenges go to the template alias in validation.example.org
// through provider; aliasExtra goes into the alias provider's block,
// tlsExtra into the tls block.
func templateSite(names, provider, aliasExtra, tlsExtra string) string {
	return fmt.Sprintf(`%s {
	tls {
		dns alias {
			%s
			zone validation.example.org
			alias _acme-challenge.{domain}.validation.example.org
			resolvers %s
			private_nameservers
			%s
		}
		resolvers %s
		%s
	}
	respond "ok"
}
`, names, provider, theLab.Resolver, aliasExtra, theLab.Resolver, tlsExtra)
}

// start runs the binary with args and stops it when the test ends.
func (c *caddyProc) start(args ...string) {
	t := c.t
	t.Helper()
	c.cmd = exec.Command(caddyBin, args...)
	c.cmd.Dir = c.dir
	c.cmd.Env = append(theLab.CaddyEnv(c.dir), c.env...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
}

func (c *caddyProc) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	terminate(c.cmd, c.done, 10*time.Second)
	if c.t.Failed() {
		c.t.Logf("caddy log:\n%s", c.log.String())
	}
}

// terminate stops the process cmd, whose Wait closes done: SIGTERM, then
// SIGKILL after grace.
func terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// waitExit waits for Caddy to exit and returns how long that took.
func (c *caddyProc) waitExit(timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	select {
	case <-c.done:
		return time.Since(start)
	case <-time.After(timeout):
		c.t.Fatalf("caddy did not exit within %s; log:\n%s", timeout, c.log.String())
		return 0
	}
}

// --- certificates and TLS

// certFile returns the certificate file Caddy stored for name, or "".
func (c *caddyProc) certFile(name string) string {
	return lab.CertFile(c.storage, name)
}

// storedChain returns the certificate chain (PEM) Caddy stored for name,
// in its file_system storage or in Redis, or nil if there is none yet.
func (c *caddyProc) storedChain(name string) []byte {
	t := c.t
	t.Helper()
	if c.redisPrefix != "" {
		pem, _, err := theLab.RedisCert(testCtx(t, 10*time.Second), c.redisPrefix, name)
		if err != nil {
			t.Fatalf("reading the certificate of %s from redis: %v", name, err)
		}
		return pem
	}
	f := c.certFile(name)
	if f == "" {
		return nil
	}
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
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
		if pem := c.storedChain(name); pem != nil {
			took := time.Since(c.started)
			chain := parseChain(t, name, pem)
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

// parseChain parses the stored chain of name, failing the test unless it
// holds a certificate.
func parseChain(t *testing.T, name string, pem []byte) []*x509.Certificate {
	t.Helper()
	chain, err := lab.ParseCertificates(pem)
	if err != nil {
		t.Fatalf("stored certificate of %s: %v", name, err)
	}
	if len(chain) == 0 {
		t.Fatalf("the stored certificate of %s holds none", name)
	}
	return chain
}

// waitCerts waits, within one timeout, for the certificate of each name
// (see waitCert), checks that it is for that name alone, and returns the
// longest time to a certificate.
func (c *caddyProc) waitCerts(names []string, timeout time.Duration) time.Duration {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var took time.Duration
	for _, name := range names {
		cert, d := c.waitCert(name, time.Until(deadline))
		assertNames(c.t, cert, name)
		took = max(took, d)
	}
	return took
}

// assertNames fails unless cert is for exactly the names given.
func assertNames(t *testing.T, cert *x509.Certificate, names ...string) {
	t.Helper()
	got := strings.Join(cert.DNSNames, ",")
	if want := strings.Join(names, ","); got != want {
		t.Errorf("certificate names: got %q, want %q", got, want)
	}
}

// handshake does a TLS handshake with Caddy for sni and returns the chain
// it presents. timeout covers connecting and the handshake, during which
// Caddy may obtain the certificate (on demand).
func (c *caddyProc) handshake(sni string, timeout time.Duration) ([]*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp",
		fmt.Sprintf("127.0.0.1:%d", c.httpsPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

// servedWait bounds how long served waits for Caddy to present the
// certificate it stored: far more than loading one from storage takes on a
// loaded machine (milliseconds), so that only a Caddy that never does fails.
const servedWait = time.Minute

// served returns the certificate chain Caddy presents for sni, once it
// presents the one it stored for sni (if it stored one). certmagic stores a
// certificate before it loads it into its cache, and a handshake in between
// fails with "tls: internal error" (no certificate yet) or gets the one
// before a renewal: a test that saw it stored waits for the event it means,
// the certificate served. It fails the test if no handshake succeeds within
// servedWait, and returns the last chain if none matched.
func (c *caddyProc) served(sni string) []*x509.Certificate {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(servedWait)
	for {
		chain, err := c.handshake(sni, 5*time.Second)
		if err == nil {
			pem := c.storedChain(sni)
			if pem == nil || parseChain(t, sni, pem)[0].Equal(chain[0]) {
				return chain
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("TLS handshake with %s: %v (for %s)", sni, err, servedWait)
			}
			return chain
		}
		select {
		case <-c.done:
			t.Fatalf("caddy exited while a handshake for %s was awaited; log:\n%s", sni, c.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// assertPebbleCert checks that chain is one Pebble issued for name alone.
func assertPebbleCert(t *testing.T, chain []*x509.Certificate, name string) {
	t.Helper()
	if err := theLab.VerifyPebbleChain(testCtx(t, 30*time.Second), chain, name); err != nil {
		t.Errorf("the certificate served for %s is not one Pebble issued for it: %v", name, err)
		return
	}
	if got := chain[0].DNSNames; len(got) != 1 || got[0] != name {
		t.Errorf("the certificate served for %s names %v", name, got)
	}
}

// --- admin endpoint

// adminRequest sends a request to the admin endpoint at addr and returns
// the status and body.
func adminRequest(ctx context.Context, method, addr, path, contentType string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// waitAdmin waits until Caddy's admin endpoint answers GET /config/.
func (c *caddyProc) waitAdmin(timeout time.Duration) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, _, err := adminRequest(ctx, http.MethodGet, c.admin, "/config/", "", nil)
		cancel()
		if err == nil && status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy's admin endpoint %s does not answer after %s (last: %d %v); log:\n%s", c.admin, timeout, status, err, c.log.String())
		}
		select {
		case <-c.done:
			t.Fatalf("caddy exited; log:\n%s", c.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// adminCall sends method path (with body of contentType, if any) to
// Caddy's admin endpoint and returns the status and body; it fails the test
// if there is no answer.
func (c *caddyProc) adminCall(method, path, contentType string, body []byte) (int, string) {
	c.t.Helper()
	status, resp, err := adminRequest(testCtx(c.t, time.Minute), method, c.admin, path, contentType, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v; log:\n%s", method, path, err, c.log.String())
	}
	return status, resp
}

// adminGet sends GET path to Caddy's admin endpoint.
func (c *caddyProc) adminGet(path string) (int, string) {
	c.t.Helper()
	return c.adminCall(http.MethodGet, path, "", nil)
}

// --- log

// logLine is one line of Caddy's JSON log: its time, the common fields,
// the fields the plugin's and certmagic's lines carry, and all fields.
type logLine struct {
	TS     time.Time
	Level  string
	Logger string
	Msg    string
	Error  string
	// the plugin's "presented challenge on alias" and deletion lines
	Domain, Alias, Zone, Provider string
	// certmagic's and the gate's lines
	Identifier string
	Fields     map[string]any
	raw        string
}

// str returns the string field k, or "".
func (l logLine) str(k string) string {
	s, _ := l.Fields[k].(string)
	return s
}

// logLines parses Caddy's log; lines that are no JSON object are skipped.
func (c *caddyProc) logLines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(c.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil || m == nil {
			continue
		}
		l := logLine{Fields: m, raw: sc.Text()}
		if ts, ok := m["ts"].(float64); ok {
			sec, frac := math.Modf(ts)
			l.TS = time.Unix(int64(sec), int64(frac*1e9))
		}
		l.Level, l.Logger, l.Msg, l.Error = l.str("level"), l.str("logger"), l.str("msg"), l.str("error")
		l.Domain, l.Alias, l.Zone, l.Provider = l.str("domain"), l.str("alias"), l.str("zone"), l.str("provider")
		l.Identifier = l.str("identifier")
		out = append(out, l)
	}
	return out
}

// linesWith returns the log lines with msg whose field key is value (any
// line with msg if key is "").
func (c *caddyProc) linesWith(msg, key, value string) []logLine {
	var out []logLine
	for _, l := range c.logLines() {
		if l.Msg == msg && (key == "" || l.str(key) == value) {
			out = append(out, l)
		}
	}
	return out
}

// find returns the first log line with msg whose field key is value.
func (c *caddyProc) find(msg, key, value string) (logLine, bool) {
	if ls := c.linesWith(msg, key, value); len(ls) > 0 {
		return ls[0], true
	}
	return logLine{}, false
}

// pollLine waits up to timeout for a log line that pred accepts.
func (c *caddyProc) pollLine(timeout time.Duration, pred func(logLine) bool) (logLine, bool) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		for _, l := range c.logLines() {
			if pred(l) {
				return l, true
			}
		}
		if time.Now().After(deadline) {
			return logLine{}, false
		}
	}
}

// waitMatch waits for a log line that pred accepts and fails the test,
// naming what, if none comes within timeout.
func (c *caddyProc) waitMatch(what string, timeout time.Duration, pred func(logLine) bool) logLine {
	c.t.Helper()
	l, ok := c.pollLine(timeout, pred)
	if !ok {
		c.t.Fatalf("no log line %s within %s; log:\n%s", what, timeout, c.log.String())
	}
	return l
}

// waitLine waits for a log line with msg whose field key is value.
func (c *caddyProc) waitLine(msg, key, value string, timeout time.Duration) logLine {
	c.t.Helper()
	return c.waitMatch(fmt.Sprintf("%q with %s=%s", msg, key, value), timeout, func(l logLine) bool {
		return l.Msg == msg && l.str(key) == value
	})
}

// waitFor reports whether a log line with msg whose field key is value
// appears within timeout.
func (c *caddyProc) waitFor(msg, key, value string, timeout time.Duration) bool {
	_, ok := c.pollLine(timeout, func(l logLine) bool { return l.Msg == msg && l.str(key) == value })
	return ok
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

// countBy counts the log lines with msg of the processes cs per value of
// their string field key.
func countBy(key, msg string, cs ...*caddyProc) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		for _, l := range c.linesWith(msg, "", "") {
			if v, ok := l.Fields[key].(string); ok {
				out[v]++
			}
		}
	}
	return out
}

// presented returns the plugin's "presented challenge on alias" log lines.
func (c *caddyProc) presented() []logLine {
	return c.linesWith("presented challenge on alias", "", "")
}

// presentedFor returns the first "presented challenge on alias" line for
// domain and fails the test if there is none.
func (c *caddyProc) presentedFor(domain string) logLine {
	c.t.Helper()
	l, ok := c.find("presented challenge on alias", "domain", domain)
	if !ok {
		c.t.Fatalf("caddy's log has no \"presented challenge on alias\" line for %s", domain)
	}
	return l
}

// --- challenge journal

// journal reads the challenge journal in a file_system storage.
func journal(t *testing.T, storage string) []solver.JournalEntry {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(storage, "dns_alias", "journal", "*.json"))
	var out []solver.JournalEntry
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // removed meanwhile
		}
		var e solver.JournalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("journal entry %s: %v", f, err)
		}
		out = append(out, e)
	}
	return out
}

// waitJournalEmpty fails unless the journal empties within timeout.
func waitJournalEmpty(t *testing.T, storage string, timeout time.Duration) {
	t.Helper()
	var left []solver.JournalEntry
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if left = journal(t, storage); len(left) == 0 {
			return
		}
	}
	t.Errorf("challenge journal in %s still holds %+v", storage, left)
}
