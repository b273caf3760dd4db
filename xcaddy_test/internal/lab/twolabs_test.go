package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestTwoLabs brings up a second lab, with a LAB_DIR and a network
// namespace of its own but the same addresses and ports, while this test's
// lab runs: both answer, a record published in the second is not in the
// first, and the second's down stops every server it started and removes
// its namespace, leaving the first lab as it was.
func TestTwoLabs(t *testing.T) {
	l := Require(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	netns := "cdalab-test-" + hex.EncodeToString(suffix)
	dir := filepath.Join(t.TempDir(), "lab2")
	second := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "lab", "lab.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "LAB_DIR="+dir, "LAB_NETNS="+netns)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
			out, err := second("down", "--purge")
			t.Logf("cleanup: lab.sh down --purge of the second lab: %v\n%s", err, out)
		}
	})
	if out, err := second("up"); err != nil {
		t.Fatalf("lab.sh up of the second lab: %v\n%s", err, out)
	}
	if out, err := second("status"); err != nil || !strings.Contains(out, "every server answers") {
		t.Fatalf("the second lab's status: %v\n%s", err, out)
	}
	two, err := LoadFile(filepath.Join(dir, "lab.env"))
	if err != nil {
		t.Fatal(err)
	}
	if two.Netns != netns || two.AuthA != l.AuthA || two.Resolver != l.Resolver || two.AdminKey.Secret == l.AdminKey.Secret {
		t.Fatalf("the second lab: netns %s, %s, %s, its own admin key %v; want %s and this lab's addresses", two.Netns, two.AuthA, two.Resolver, two.AdminKey.Secret != l.AdminKey.Secret, netns)
	}

	// A record only the second lab has, published and resolved in its namespace.
	name := "twolabs-" + hex.EncodeToString(suffix) + ".example.com"
	update := "server " + strings.Replace(two.AuthA, ":", " ", 1) + "\nzone example.com\nupdate add " + name + ". 60 IN TXT \"second\"\nsend\n"
	cmd := exec.Command("bash", filepath.Join(root, "lab", "lab.sh"), "exec", "nsupdate", "-k", two.AdminKey.File)
	cmd.Env = append(os.Environ(), "LAB_DIR="+dir, "LAB_NETNS="+netns)
	cmd.Stdin = strings.NewReader(update)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate in the second lab: %v\n%s", err, out)
	}
	host, port, _ := strings.Cut(two.Resolver, ":")
	out, err := second("exec", "dig", "+short", "@"+host, "-p", port, "TXT", name)
	if err != nil || strings.TrimSpace(out) != `"second"` {
		t.Fatalf("the second lab's resolver answers %q (%v), want \"second\"", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg, err := l.Query(ctx, l.AuthA, name, dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Answer) != 0 || msg.Rcode != dns.RcodeNameError {
		t.Fatalf("this lab answers %s for the second lab's record: %v", dns.RcodeToString[msg.Rcode], msg.Answer)
	}

	pids := map[string]int{}
	for _, f := range []string{"a/named.pid", "b/named.pid", "unbound/unbound.pid", "redis/redis.pid", "pebble/pebble.pid"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pids[f] = pid
	}
	if out, err := second("down"); err != nil {
		t.Fatalf("lab.sh down of the second lab: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netns)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second lab's namespace %s is still there after down (%v)", netns, err)
	}
	for f, pid := range pids {
		if running(pid) {
			t.Errorf("%s's process %d still runs after down", f, pid)
		}
	}
	if err := l.Healthy(ctx); err != nil {
		t.Fatalf("this lab after the second one's down: %v", err)
	}
}

// running reports whether the process pid exists and is no zombie (an
// exited daemon waits for this machine's init to reap it).
func running(pid int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if state, ok := strings.CutPrefix(line, "State:"); ok {
			state = strings.TrimSpace(state)
			return !strings.HasPrefix(state, "Z") && !strings.HasPrefix(state, "X")
		}
	}
	return true
}
