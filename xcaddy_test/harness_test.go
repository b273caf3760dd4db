// Package xcaddy_test builds Caddy with xcaddy, as a user would, and runs it
// against the lab's real servers: BIND, Unbound and Pebble on loopback.
//
// The harness: this file sets the lab up; caddy_test.go is the Caddy-process
// API (start, config, log queries, admin, certificates, stop),
// labdns_test.go the lab-DNS API (fresh names, publish with cleanup, TXT
// per server, production serials), pebble_test.go a Pebble of a test's own
// and the lab Pebble's log.
package xcaddy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
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
// built by lab/build-caddy.sh --lab from this tree).
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
	if err := l.Inside(); err != nil {
		return err
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
	out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "lab", "build-caddy.sh"), "--lab", bin).CombinedOutput()
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
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
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
