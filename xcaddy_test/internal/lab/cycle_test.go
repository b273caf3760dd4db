package lab

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// labCycles is how many down/up cycles TestUpDownCycles runs: a pipeline
// that fails at random (lab.sh once lost one `ip | grep -q` in four to
// SIGPIPE) shows up in far fewer.
const labCycles = 50

// TestUpDownCycles runs lab/lab.sh down and up labCycles times: every up
// succeeds and adds the lab's loopback addresses (labelled), every down
// removes all of them and never claims that the lab did not add one. The
// lab is up again afterwards.
func TestUpDownCycles(t *testing.T) {
	l := Require(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, hp := range []string{l.AuthA, l.AuthB, l.Env["ACMEDNS_ADDR"], l.Env["PDNS_ADDR"], l.SilentNSAddr} {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			t.Fatalf("lab.env: %q: %v", hp, err)
		}
		addrs = append(addrs, host)
	}
	labSh := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "lab", "lab.sh")}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lab/lab.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	start := time.Now()
	for i := 1; i <= labCycles; i++ {
		out := labSh("down")
		if strings.Contains(out, "leaving") {
			t.Fatalf("cycle %d: down left an address it added:\n%s", i, out)
		}
		for _, a := range addrs {
			if on, _ := loAddr(t, a); on {
				t.Fatalf("cycle %d: %s is still on lo after down:\n%s", i, a, out)
			}
		}
		out = labSh("up")
		for _, a := range addrs {
			if on, ours := loAddr(t, a); !on || !ours {
				t.Fatalf("cycle %d: after up, %s on lo: %v, labelled by the lab: %v\n%s", i, a, on, ours, out)
			}
		}
	}
	t.Logf("%d down/up cycles in %s", labCycles, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Healthy(ctx); err != nil {
		t.Fatalf("the lab after the cycles: %v", err)
	}
}

// loAddr reports whether addr is on lo, and whether with the lab's label
// (lab.sh's ADDR_LABEL), from the whole output of `ip -4 -o addr show dev lo`.
func loAddr(t *testing.T, addr string) (on, ours bool) {
	t.Helper()
	out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", "lo").Output()
	if err != nil {
		t.Fatalf("ip addr show dev lo: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// 1: lo    inet 127.0.0.2/32 scope host lo:cdalab\ ...
		for j := 0; j+1 < len(f); j++ {
			if f[j] == "inet" && strings.HasPrefix(f[j+1], addr+"/") {
				on = true
				ours = ours || strings.Contains(line, " lo:cdalab")
			}
		}
	}
	return on, ours
}
