package xcaddy_test

// Pebble for the scenarios: a second Pebble of a test's own (short-lived
// certificates, no retryAfter), and what the lab's Pebble logged since a
// mark.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

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
		terminate(p.cmd, p.done, 5*time.Second)
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

// pebbleSeen is what Pebble's log shows since a mark: orders created,
// certificates issued, and the identifiers whose challenges it validated.
type pebbleSeen struct {
	orders    int
	issued    int
	validated map[string]int
}

var pebbleTaskIdentifier = regexp.MustCompile(`Pulled a task from the Tasks queue: .*Identifier:acme\.Identifier\{Type:"dns", Value:"([^"]+)"`)

// pebbleMark returns the end of Pebble's log. The lab is held by this
// process (lab.Hold), so whatever Pebble logs after it is this test's.
func pebbleMark(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(theLab.PebbleLog)
	if err != nil {
		t.Fatalf("pebble log: %v", err)
	}
	return fi.Size()
}

func pebbleSince(t *testing.T, mark int64) pebbleSeen {
	t.Helper()
	f, err := os.Open(theLab.PebbleLog)
	if err != nil {
		t.Fatalf("pebble log: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < mark {
		t.Fatalf("pebble's log shrank (pebble restarted during the test)")
	}
	if _, err := f.Seek(mark, 0); err != nil {
		t.Fatal(err)
	}
	p := pebbleSeen{validated: map[string]int{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Added order "):
			p.orders++
		case strings.Contains(line, "Issued certificate serial "):
			p.issued++
		default:
			if m := pebbleTaskIdentifier.FindStringSubmatch(line); m != nil {
				p.validated[m[1]]++
			}
		}
	}
	return p
}
