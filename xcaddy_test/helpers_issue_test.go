package xcaddy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/lab"
)

// Helpers for issue_test.go: they build on harness_test.go without changing it.

// startCaddyConfig starts Caddy with the config that cfg writes for the new
// process (its admin address, storage and ports are set before cfg runs),
// using adapter ("caddyfile" or "" for JSON).
func startCaddyConfig(t *testing.T, adapter string, cfg func(c *caddyProc) string) *caddyProc {
	t.Helper()
	requireLab(t)
	c := newCaddy(t)
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

// assertNames fails unless cert is for exactly the names given.
func assertNames(t *testing.T, cert *x509.Certificate, names ...string) {
	t.Helper()
	got := strings.Join(cert.DNSNames, ",")
	if want := strings.Join(names, ","); got != want {
		t.Errorf("certificate names: got %q, want %q", got, want)
	}
}

// logEntry is one line of Caddy's JSON log.
type logEntry struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
	Error  string `json:"error"`
	// fields of the plugin's "presented challenge on alias" line
	Domain   string `json:"domain"`
	Alias    string `json:"alias"`
	Zone     string `json:"zone"`
	Provider string `json:"provider"`
	raw      string
}

// logEntries parses Caddy's log; lines that are no JSON are skipped.
func (c *caddyProc) logEntries() []logEntry {
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(c.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			e.raw = line
			out = append(out, e)
		}
	}
	return out
}

// presented returns the plugin's "presented challenge on alias" log entries.
func (c *caddyProc) presented() []logEntry {
	var out []logEntry
	for _, e := range c.logEntries() {
		if e.Msg == "presented challenge on alias" {
			out = append(out, e)
		}
	}
	return out
}

// presentedFor returns the first "presented challenge on alias" entry for
// domain and fails the test if there is none.
func (c *caddyProc) presentedFor(domain string) logEntry {
	c.t.Helper()
	for _, e := range c.presented() {
		if e.Domain == domain {
			return e
		}
	}
	c.t.Fatalf("caddy's log has no \"presented challenge on alias\" line for %s", domain)
	return logEntry{}
}

// randomLabel returns prefix followed by 8 random hex digits.
func randomLabel(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// adminRequest sends a request to Caddy's admin endpoint and returns the
// status and body.
func adminRequest(ctx context.Context, method, admin, path, contentType string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+admin+path, bytes.NewReader(body))
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

// pebble is a Pebble started by a test, next to the lab's.
type pebble struct {
	lab  lab.Lab // a copy of the lab with PebbleDir and PebbleMgmt pointing here
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
}

// pebbleBinary finds the pebble binary lab/install.sh installed.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	var candidates []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) >= 1 && strings.TrimSpace(lines[0]) != "" {
			candidates = append(candidates, filepath.Join(strings.TrimSpace(lines[0]), "pebble"))
		}
		if len(lines) >= 2 {
			for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				candidates = append(candidates, filepath.Join(gp, "bin", "pebble"))
			}
		}
	}
	candidates = append(candidates, "/root/go/bin/pebble")
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	t.Fatalf("pebble binary not found (lab/install.sh installs it); tried PATH and %v", candidates)
	return ""
}

// startPebble starts a second Pebble on free ports with the lab's HTTPS
// certificate, validating through the lab's resolver, issuing certificates
// valid for validity, with retryAfter 0. It is stopped when the test ends.
func startPebble(t *testing.T, validity time.Duration) *pebble {
	t.Helper()
	l := requireLab(t)
	dir := t.TempDir()
	port, mgmt := freePort(t), freePort(t)
	labPebble := filepath.Join(l.Dir, "pebble")
	// The lab's config (lab/lab.sh write_pebble_config) with other ports, a
	// short validityPeriod in the default profile and no retryAfter.
	cfg := map[string]any{
		"pebble": map[string]any{
			"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", port),
			"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
			"certificate":                    filepath.Join(labPebble, "cert.pem"),
			"privateKey":                     filepath.Join(labPebble, "key.pem"),
			"httpPort":                       5002,
			"tlsPort":                        5001,
			"ocspResponderURL":               "",
			"externalAccountBindingRequired": false,
			"domainBlocklist":                []string{"blocked-domain.example"},
			"retryAfter":                     map[string]int{"authz": 0, "order": 0},
			"keyAlgorithm":                   "ecdsa",
			"profiles": map[string]any{
				"default": map[string]any{"description": "short-lived test profile", "validityPeriod": int(validity / time.Second)},
			},
		},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebble{lab: *l, log: &logBuffer{}, done: make(chan struct{})}
	p.lab.PebbleDir = fmt.Sprintf("https://127.0.0.1:%d/dir", port)
	p.lab.PebbleMgmt = fmt.Sprintf("https://127.0.0.1:%d", mgmt)
	p.cmd = exec.Command(pebbleBinary(t), "-config", cfgFile, "-dnsserver", l.Resolver)
	p.cmd.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	p.cmd.Env = append(env, "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("test pebble log:\n%s", p.log.String())
		}
	})

	hc, err := l.PebbleHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, url := range []string{p.lab.PebbleDir, p.lab.PebbleMgmt + "/roots/0"} {
		for {
			resp, err := hc.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("test pebble does not answer %s: %v; log:\n%s", url, err, p.log.String())
			}
			select {
			case <-p.done:
				t.Fatalf("test pebble exited; log:\n%s", p.log.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return p
}
