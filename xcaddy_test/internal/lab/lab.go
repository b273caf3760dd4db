// Package lab is test support for the project's DNS/ACME lab: two BIND
// authoritative servers on 127.0.0.2:53 and 127.0.0.3:53, Unbound on
// 127.0.0.1:15353, Redis on 127.0.0.1:16379 (the cluster scenarios'
// storage) and Pebble on 127.0.0.1:14000, all started by lab/lab.sh
// (see lab/README.md). It is imported by tests only.
//
// A test gets the lab with Require (or EnsureUp), then publishes records
// with the lab-admin key (Publish, Remove), looks at what the servers hold
// (Query, TXTRecords, Serial), resolves through Unbound (Resolve) and counts
// what Unbound was asked (CountResolverQueries, from Unbound's query log),
// and reads or stops Redis (RedisKeys, RedisGet, StopRedis; Up starts it
// again).
package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Key is a TSIG key as the lab's servers know it.
type Key struct {
	Name   string // e.g. "caddy-key" (no trailing dot)
	Secret string // base64
	Alg    string // "hmac-sha256." (the form libdns/rfc2136 and miekg/dns use)
	File   string // the key in named.conf syntax, usable with nsupdate -k
}

// Lab describes a running lab, as read from $LAB_DIR/lab.env.
type Lab struct {
	Dir         string
	Netns       string   // the network namespace every server of the lab runs in
	AuthA       string   // "127.0.0.2:53"
	AuthB       string   // "127.0.0.3:53"
	ZonesA      []string // zones served by AuthA, without trailing dots
	ZonesB      []string // zones served by AuthB
	Resolver    string   // Unbound, "127.0.0.1:15353"
	UnboundConf string
	UnboundLog  string
	PebbleDir   string // ACME directory URL
	PebbleMgmt  string // management API base URL
	PebbleCAPEM string // file: the CA of Pebble's HTTPS certificate (not of the certificates it issues)
	PebbleLog   string
	RedisAddr   string // the lab's Redis, "127.0.0.1:16379": the cluster scenarios' storage
	RedisLog    string
	AliasZone   string // validation.example.org, writable by CaddyKey (TXT only)
	AliasZone2  string // alias2.example, writable by CaddyKey2 (TXT only)
	CaddyKey    Key
	CaddyKey2   Key
	AdminKey    Key // lab-admin: may update every zone
	// Env holds every line of lab.env.
	Env map[string]string

	// SilentNSZone (silentns.example) is an alias zone writable by
	// CaddyKey (TXT only) with two nameservers: AuthA and SilentNSAddr
	// ("127.0.0.6:53"), where nothing of the lab listens: a test binds
	// a nameserver there that never answers (ServeSilently).
	SilentNSZone string
	SilentNSAddr string
}

// Dir returns the lab's state directory: $LAB_DIR, or else the checkout's
// .lab, as lab/lab.sh takes it: one lab per checkout unless told otherwise.
func Dir() string {
	if d := os.Getenv("LAB_DIR"); d != "" {
		return d
	}
	root, err := RepoRoot()
	if err != nil {
		return ".lab"
	}
	return filepath.Join(root, ".lab")
}

// Load reads $LAB_DIR/lab.env, written by lab/lab.sh up. It does not check
// that the servers run (see Healthy).
func Load() (*Lab, error) {
	return LoadFile(filepath.Join(Dir(), "lab.env"))
}

// LoadFile reads a lab.env file.
func LoadFile(path string) (*Lab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lab: %w (is the lab up? lab/lab.sh up)", err)
	}
	env, err := parseEnv(data)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", path, err)
	}
	l := &Lab{
		Dir:         env["LAB_DIR"],
		Netns:       env["LAB_NETNS"],
		AuthA:       env["AUTH_A"],
		AuthB:       env["AUTH_B"],
		ZonesA:      splitList(env["ZONES_A"]),
		ZonesB:      splitList(env["ZONES_B"]),
		Resolver:    env["RESOLVER"],
		UnboundConf: env["UNBOUND_CONF"],
		UnboundLog:  env["UNBOUND_LOG"],
		PebbleDir:   env["PEBBLE_DIR"],
		PebbleMgmt:  env["PEBBLE_MGMT"],
		PebbleCAPEM: env["PEBBLE_CA_PEM"],
		PebbleLog:   env["PEBBLE_LOG"],
		RedisAddr:   env["REDIS_ADDR"],
		RedisLog:    env["REDIS_LOG"],
		AliasZone:   env["ALIAS_ZONE"],
		AliasZone2:  env["ALIAS_ZONE2"],
		CaddyKey:    Key{env["CADDY_KEY_NAME"], env["CADDY_KEY_SECRET"], env["CADDY_KEY_ALG"], env["CADDY_KEY_FILE"]},
		CaddyKey2:   Key{env["CADDY_KEY2_NAME"], env["CADDY_KEY2_SECRET"], env["CADDY_KEY2_ALG"], env["CADDY_KEY2_FILE"]},
		AdminKey:    Key{env["ADMIN_KEY_NAME"], env["ADMIN_KEY_SECRET"], env["ADMIN_KEY_ALG"], env["ADMIN_KEY_FILE"]},
		Env:         env,

		SilentNSZone: env["SILENT_NS_ZONE"],
		SilentNSAddr: env["SILENT_NS_ADDR"],
	}
	for _, k := range []string{"LAB_DIR", "LAB_NETNS", "AUTH_A", "AUTH_B", "RESOLVER", "REDIS_ADDR", "PEBBLE_DIR", "PEBBLE_MGMT",
		"PEBBLE_CA_PEM", "ALIAS_ZONE", "ALIAS_ZONE2", "SILENT_NS_ZONE", "SILENT_NS_ADDR", "CADDY_KEY_SECRET", "CADDY_KEY2_SECRET", "ADMIN_KEY_SECRET"} {
		if env[k] == "" {
			return nil, fmt.Errorf("lab: %s: %s missing", path, k)
		}
	}
	return l, nil
}

// parseEnv reads KEY=value lines; blank lines and # comments are skipped, one
// level of matching single or double quotes around a value is removed.
func parseEnv(data []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: not KEY=value", n)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env, sc.Err()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, normZone(f))
	}
	return out
}

func normZone(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }

// RepoRoot returns the repository's root directory (the one holding
// lab/lab.sh), found from this source file's location or else from the
// current directory upwards.
func RepoRoot() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			candidates = append(candidates, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "lab", "lab.sh")); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", errors.New("lab: cannot find lab/lab.sh from the package or the working directory")
}

var upMu sync.Mutex

// Up runs lab/lab.sh up (a no-op when the lab already runs) and loads the
// result. It needs root and the tools lab/install.sh installs; it installs
// nothing itself and touches no system service. Settings pass through the environment (LAB_DIR,
// UNBOUND_PORT, REDIS_PORT, PEBBLE_PORT, PEBBLE_MGMT_PORT, PEBBLE_RETRY_AFTER,
// PEBBLE_CERT_VALIDITY); a PEBBLE_* setting that differs from the running
// Pebble's restarts Pebble.
func Up(ctx context.Context) (*Lab, error) {
	upMu.Lock()
	defer upMu.Unlock()
	return up(ctx)
}

func up(ctx context.Context) (*Lab, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	// Nothing to start for a process that could not reach it: the lab's
	// namespace is the one lab.sh would use for this process.
	netns, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "lab", "lab.sh"), "netns").Output()
	if err != nil {
		return nil, fmt.Errorf("lab: lab/lab.sh netns: %w", err)
	}
	if err := inside(strings.TrimSpace(string(netns))); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "lab", "lab.sh"), "up")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lab: lab/lab.sh up: %w\n%s", err, out)
	}
	return Load()
}

// EnsureUp returns the running lab when lab.env is there and every server
// answers, and otherwise runs Up.
func EnsureUp(ctx context.Context) (*Lab, error) {
	upMu.Lock()
	defer upMu.Unlock()
	if l, err := Load(); err == nil {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = l.Healthy(hctx)
		cancel()
		if err == nil && !pebbleKnobsSet() {
			return l, nil
		}
	}
	return up(ctx)
}

// pebbleKnobsSet reports whether the caller asked for particular Pebble
// settings; lab.sh then checks them against the running Pebble.
func pebbleKnobsSet() bool {
	_, a := os.LookupEnv("PEBBLE_RETRY_AFTER")
	_, b := os.LookupEnv("PEBBLE_CERT_VALIDITY")
	return a || b
}

// SwitchEnv is the environment variable that turns the lab suite on: the
// tests that need the lab (BIND, Unbound, Pebble, root) run only when it is
// "1", as ./test.sh and .ci/run set it. Without it they skip, so that a plain
// `go test ./...` is hermetic; with it, a lab that cannot be had fails them.
const SwitchEnv = "CADDY_DNS_ALIAS_LAB"

// Enabled reports whether the lab suite is switched on (SwitchEnv=1).
func Enabled() bool { return os.Getenv(SwitchEnv) == "1" }

// SkipUnlessEnabled skips t, saying how to run it, unless the lab suite is
// switched on.
func SkipUnlessEnabled(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skipf("needs the lab: run ./test.sh as root, or %s=1 go test after lab/install.sh (see lab/README.md)", SwitchEnv)
	}
}

// Require returns the lab for a test, bringing it up if needed (lab/lab.sh
// up, which installs nothing). Without the switch (SwitchEnv) the test is
// skipped; with it, a lab that cannot be had (not root, tools missing, a
// server that does not start) fails the test.
func Require(t testing.TB) *Lab {
	t.Helper()
	SkipUnlessEnabled(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := Hold()
	var l *Lab
	if err == nil {
		l, err = EnsureUp(ctx)
	}
	if err == nil {
		err = l.Inside()
	}
	if err != nil {
		if os.Geteuid() != 0 {
			t.Fatalf("lab unavailable: not root (the lab runs in a network namespace of its own): %v", err)
		}
		t.Fatalf("lab unavailable: %v", err)
	}
	return l
}

// Inside returns an error unless this process runs in the lab's network
// namespace, the only place its servers can be reached.
func (l *Lab) Inside() error { return inside(l.Netns) }

func inside(netns string) error {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if ns, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil && os.SameFile(self, ns) {
		return nil
	}
	return fmt.Errorf("lab: the lab runs in the network namespace %s and this process does not: run it there, e.g. lab/lab.sh exec go test ... (build first outside: there is no module proxy inside)", netns)
}
