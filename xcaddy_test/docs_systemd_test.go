package xcaddy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/readme"
)

// TestDocsSystemdDropIn: the deployment guide's drop-in (the ```ini block
// that names its path under caddy.service.d), merged by systemd's own unit
// loader into Caddy's packaged unit (testdata/caddy.service, copied from
// caddyserver/dist, whose ExecStart is `caddy run --environ`), loads
// without a warning, passes the secrets file, and yields an ExecStart that,
// run with the xcaddy-built Caddy and a stand-in secret in its
// environment, starts Caddy without printing the secret. The packaged unit
// alone is run the same way and must print it: that is what the drop-in
// is for, and what shows this test can see it.
//
// systemd cannot run as PID 1 here, so `systemd --test --system` (the
// manager's unit loader, the one `systemctl cat` and `systemctl show` would
// report, without starting anything) computes the effective ExecStart; the
// test then runs that command line itself, with the environment that
// EnvironmentFile= would give it.
func TestDocsSystemdDropIn(t *testing.T) {
	requireLab(t)
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	packaged, err := os.ReadFile(filepath.Join("testdata", "caddy.service"))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "stand-in-secret-4f1c9a"
	// The unit alone: the journal would get the secret.
	if out := runEffectiveExecStart(t, packaged, "", "", secret); !strings.Contains(out, secret) {
		t.Fatalf("the packaged unit's ExecStart did not print the stand-in secret; this test cannot tell whether a drop-in hides it:\n%s", out)
	}
	n := 0
	for _, b := range doc.Blocks() {
		first, _, _ := strings.Cut(b.Text, "\n")
		name, ok := strings.CutPrefix(first, "# /etc/systemd/system/caddy.service.d/")
		if b.Lang != "ini" || !ok {
			continue
		}
		n++
		if name != "override.conf" {
			t.Errorf("%s: the drop-in is %s, but `systemctl edit caddy`, which the guide says writes it, writes override.conf", b, name)
		}
		if !strings.Contains(b.Text, "\nEnvironmentFile=") {
			t.Errorf("%s: the drop-in sets no EnvironmentFile", b)
		}
		if out := runEffectiveExecStart(t, packaged, name, b.Text, secret); strings.Contains(out, secret) {
			t.Errorf("%s: Caddy started by the packaged unit with this drop-in printed the secret from its environment:\n%s", b, out)
		}
	}
	if n == 0 {
		t.Error("the docs have no ```ini drop-in for caddy.service")
	}
}

// runEffectiveExecStart merges dropIn (named name; none if "") into unit
// with systemd's loader, runs the resulting ExecStart with the built Caddy
// in place of /usr/bin/caddy, a Caddyfile of the test's in place of
// /etc/caddy/Caddyfile, and secret in its environment (as the guide's
// EnvironmentFile gives it), until Caddy serves its config, and returns
// what Caddy printed.
func runEffectiveExecStart(t *testing.T, unit []byte, name, dropIn, secret string) string {
	t.Helper()
	dir := t.TempDir()
	// systemd --test runs as nobody (systemdTestDump): the unit files must
	// be readable by it.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, text string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "caddy.service"), string(unit))
	if name != "" {
		write(filepath.Join(dir, "caddy.service.d", name), dropIn)
	}
	dump, warnings := systemdTestDump(t, dir)
	if len(warnings) > 0 {
		t.Errorf("systemd warns about the unit or its drop-in:\n%s", strings.Join(warnings, "\n"))
	}
	execStart := unitCommands(dump, "caddy.service", "ExecStart")
	if len(execStart) != 1 {
		t.Fatalf("the merged unit has %d ExecStart commands, want 1: %q", len(execStart), execStart)
	}
	args := strings.Fields(execStart[0])
	if args[0] != "/usr/bin/caddy" {
		t.Fatalf("the merged ExecStart runs %s, not /usr/bin/caddy: %s", args[0], execStart[0])
	}
	c := newCaddy(t)
	caddyfile := filepath.Join(c.dir, "Caddyfile")
	write(caddyfile, c.globalOptions(theLab, "")+"\nhttp://127.0.0.1:"+strconv.Itoa(freePort(t))+" {\n\trespond \"ok\"\n}\n")
	for i, a := range args {
		if a == "/etc/caddy/Caddyfile" {
			args[i] = caddyfile
		}
	}
	c.env = append(c.env, "DNS_ALIAS_STANDIN_SECRET="+secret)
	c.start(args[1:]...)
	if !c.waitLog("serving initial configuration", 30*time.Second) {
		t.Fatalf("Caddy run as %q did not start:\n%s", execStart[0], c.log.String())
	}
	c.stop()
	return c.log.String()
}

// systemdTestDump returns what `systemd --test --system` prints of the
// units found first in dir (then in the system's unit paths, for the
// targets the unit names), and the warnings it printed about files in dir.
func systemdTestDump(t *testing.T, dir string) (string, []string) {
	t.Helper()
	bin := ""
	for _, p := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("no systemd binary (/lib/systemd/systemd): lab/install.sh installs systemd")
	}
	args := []string{bin, "--test", "--system", "--unit=caddy.service", "--no-pager"}
	if os.Geteuid() == 0 {
		// systemd refuses --test as root. And `ip netns exec` (the lab's
		// namespace) mounts a /sys of its own without the cgroup file
		// system, without which the loader does not start: mount one in
		// a private mount namespace, for this command alone. The loader
		// also creates /run/systemd, which exists only where systemd
		// booted the machine (not in a container, nor on a machine as
		// lab/fresh-machine.sh shows it): it gets a /run of its own.
		args = append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount -t cgroup2 none /sys/fs/cgroup && mount -t tmpfs -o mode=1777 none /run && exec "$@"`, "sh",
			"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}, args...)
	}
	cmd := exec.CommandContext(testCtx(t, time.Minute), args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":", "SYSTEMD_LOG_TARGET=console")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var warnings []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, dir+"/") {
			warnings = append(warnings, line)
		}
	}
	return string(out), warnings
}

// unitCommands returns the command lines of a unit's Exec* setting in a
// systemd dump ("\t-> Unit caddy.service:" ... "\t\t-> ExecStart:"
// "\t\t\tCommand Line: ...").
func unitCommands(dump, unit, setting string) []string {
	var cmds []string
	inUnit, inSetting := false, false
	sc := bufio.NewScanner(strings.NewReader(dump))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "\t-> Unit "):
			inUnit, inSetting = line == "\t-> Unit "+unit+":", false
		case !inUnit:
		case strings.HasPrefix(line, "\t\t-> "):
			inSetting = line == "\t\t-> "+setting+":"
		case inSetting && strings.HasPrefix(line, "\t\t\tCommand Line: "):
			cmds = append(cmds, strings.TrimPrefix(line, "\t\t\tCommand Line: "))
		case !strings.HasPrefix(line, "\t\t\t"):
			inSetting = false
		}
	}
	return cmds
}
