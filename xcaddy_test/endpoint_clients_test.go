package xcaddy_test

// The acme-dns endpoint with the clients people run, as a new user would:
// lego across a restart of Caddy, lego with three names on one account
// and a base URL ending in a slash, and Debian's certbot with a manual
// hook that posts to /update as acme-dns's own certbot hook does.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndpointRestartKeeps: Caddy exits (SIGTERM) once lego's value is
// written, before the CA's validation (lego waits a fixed 10 s after its
// update before it asks the CA), and starts again on the same storage: the
// value stays in DNS across the restart, the restarted Caddy knows it from
// the journal, and lego's certificate is issued.
func TestEndpointRestartKeeps(t *testing.T) {
	requireLab(t)
	a := newEndpointAccount(t)
	domain := randomLabel(t, "epr-") + ".example.com"
	a.delegate(t, domain)
	storage := filepath.Join(t.TempDir(), "storage")
	port := freePort(t)
	site := endpointSite(fmt.Sprint(port), "", a)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	first := startCaddyfileOn(t, storage, "", site)
	waitHealth(t, first, base)
	const legoWait = 10 * time.Second
	t.Setenv("LEGO_DNS_PROPAGATION_WAIT", legoWait.String())
	r := startLego(t, base, a, a.key, domain)
	value := waitAliasTXT(t, a.fullDomain(), time.Minute, first)
	written := time.Now()
	first.cmd.Process.Signal(syscall.SIGTERM)
	first.waitExit(20 * time.Second)
	if got := aliasTXT(t, a.fullDomain()); !slices.Equal(got, value) {
		t.Fatalf("after Caddy's exit %s holds %q, want the value %q", a.fullDomain(), got, value)
	}
	restarted := startCaddyfileOn(t, storage, "", site)
	waitHealth(t, restarted, base)
	if took := time.Since(written); took >= legoWait {
		t.Fatalf("the restart took %s, past lego's wait of %s before the validation", took, legoWait)
	}
	if err := r.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("lego failed across the restart: %v; its output:\n%s", err, r.out.String())
	}
	assertNameSet(t, parseChain(t, domain, r.cert(t, domain))[0].DNSNames, domain)
	// The restarted Caddy knows the value, with its write time, from
	// the journal: the listing counts it once the account is used or
	// its round ran (at its start).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, listing := restarted.adminGet("/dns-alias/acme-dns/accounts")
		if strings.Contains(listing, `"values":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted endpoint does not list the value: %s", listing)
		}
	}
}

// TestEndpointThreeNamesTrailingSlash: lego obtains one certificate for
// three names that share one account (three values at its one name at
// once, which acme-dns's two newest cannot serve), with a base URL ending
// in a slash (lego v5 joins its paths with url.JoinPath, which drops the
// extra slash; certbot's hook below does not).
func TestEndpointThreeNamesTrailingSlash(t *testing.T) {
	requireLab(t)
	a := newEndpointAccount(t)
	domain := randomLabel(t, "ep3n-") + ".example.com"
	names := []string{domain, "*." + domain, "www." + domain}
	a.delegate(t, domain, "www."+domain)
	c, base := startEndpoint(t, "", "", a)
	start := time.Now()
	obtain(t, base+"/", a, names...)
	t.Logf("lego obtained %d names on one account in %s", len(names), time.Since(start).Round(time.Millisecond))
	if got := aliasTXT(t, a.fullDomain()); len(got) != 3 {
		t.Errorf("%s holds %q, want the three values", a.fullDomain(), got)
	}
	if n := len(c.linesWith("acme-dns update written", "account", a.user)); n != 3 {
		t.Errorf("%d updates written, want 3", n)
	}
}

// certbotHook is a manual auth hook that posts the validation to the
// endpoint's /update as acme-dns-auth.py does, with the account from its
// environment; it appends each answer's status, how many redirects it
// followed and the update's time in seconds to $ACMEDNS_TRACE.
const certbotHook = `#!/bin/sh
set -e
exec curl -sS --fail -L -X POST -H "X-Api-User: $ACMEDNS_USER" -H "X-Api-Key: $ACMEDNS_KEY" \
	-H 'Content-Type: application/json' -o /dev/null -w '%{http_code} %{num_redirects} %{time_total}\n' \
	-d "{\"subdomain\":\"$ACMEDNS_SUBDOMAIN\",\"txt\":\"$CERTBOT_VALIDATION\"}" "$ACMEDNS_URL/update" >>"$ACMEDNS_TRACE"
`

// TestEndpointCertbot: Debian's certbot (lab/install.sh installs it)
// obtains a certificate for an apex and its wildcard through the endpoint
// with a manual auth hook posting to /update, each update answered before
// certbot asks the CA to validate. The hook's base URL ends in a slash, as
// certbot-dns-acmedns's README writes it: it posts to //update, which the
// endpoint redirects (307) to /update, and curl follows with its body, as
// acme-dns-auth.py's requests does.
func TestEndpointCertbot(t *testing.T) {
	l := requireLab(t)
	certbot, err := exec.LookPath("certbot")
	if err != nil {
		t.Fatalf("certbot is not installed (lab/install.sh installs Debian's): %v", err)
	}
	a := newEndpointAccount(t)
	domain := randomLabel(t, "epc-") + ".example.com"
	a.delegate(t, domain)
	c, base := startEndpoint(t, "", "", a)
	dir := t.TempDir()
	hook := filepath.Join(dir, "acme-dns-hook.sh")
	if err := os.WriteFile(hook, []byte(certbotHook), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(certbot, "certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
		"--server", l.PebbleDir, "--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"),
		"--logs-dir", filepath.Join(dir, "logs"), "--manual", "--preferred-challenges", "dns", "--manual-auth-hook", hook,
		"-d", domain, "-d", "*."+domain)
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+l.PebbleCAPEM, "ACMEDNS_URL="+base+"/", "ACMEDNS_USER="+a.user,
		"ACMEDNS_KEY="+a.key, "ACMEDNS_SUBDOMAIN="+a.sub, "ACMEDNS_TRACE="+filepath.Join(dir, "trace"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("certbot failed: %v\n%s\nCaddy's log:\n%s", err, out, c.log.String())
	}
	t.Logf("certbot obtained %s and its wildcard in %s", domain, time.Since(start).Round(time.Millisecond))
	pem, err := os.ReadFile(filepath.Join(dir, "config", "live", domain, "cert.pem"))
	if err != nil {
		t.Fatalf("certbot wrote no certificate: %v\n%s", err, out)
	}
	assertNameSet(t, parseChain(t, domain, pem)[0].DNSNames, domain, "*."+domain)
	if n := len(c.linesWith("acme-dns update written", "account", a.user)); n != 2 {
		t.Errorf("%d updates written, want 2", n)
	}
	// Each update: answered 200 after one redirect (//update to /update).
	trace, _ := os.ReadFile(filepath.Join(dir, "trace"))
	lines := strings.Split(strings.TrimSpace(string(trace)), "\n")
	if len(lines) != 2 {
		t.Fatalf("the hook's updates: %q, want two", trace)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "200" || f[1] != "1" {
			t.Errorf("the hook's update %q (status, redirects, seconds): want 200 after one redirect", line)
			continue
		}
		t.Logf("certbot's hook: update answered in %s s (its redirect included)", f[2])
	}
	if strings.Contains(c.log.String(), a.key) {
		t.Error("Caddy's log shows the account's key")
	}
}

// TestEndpointOnboardingCheck: `caddy acme-dns check` asks the running
// Caddy's admin API to check domains against an account before a client's
// first order: a domain delegated to the account's fulldomain passes the
// whole check (chain, the production zone's nameservers, CAA), one without
// the CNAME fails with the record to publish, and the command exits 1.
func TestEndpointOnboardingCheck(t *testing.T) {
	requireLab(t)
	a := newEndpointAccount(t)
	good, missing := randomLabel(t, "epo-")+".example.com", randomLabel(t, "epm-")+".example.com"
	a.delegate(t, good)
	c, _ := startEndpoint(t, "", "", a)
	run := func(domains ...string) (string, int) {
		cmd := exec.CommandContext(testCtx(t, time.Minute), caddyBin, append([]string{"acme-dns", "check", "--account", a.user, "--address", c.admin}, domains...)...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("caddy acme-dns check: %v\n%s", err, out)
		return "", 0
	}
	if out, code := run(good); code != 0 || !strings.Contains(out, good) || !strings.Contains(out, " ok ") {
		t.Errorf("check of %s, delegated: exit %d\n%s", good, code, out)
	}
	fix := fmt.Sprintf("fix: _acme-challenge.%s. 300 IN CNAME %s.", missing, a.fullDomain())
	if out, code := run(good, missing); code != 1 || !strings.Contains(out, fix) {
		t.Errorf("check of %s, not delegated: exit %d, want 1 with %q\n%s", missing, code, fix, out)
	}
}
