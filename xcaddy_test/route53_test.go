package xcaddy_test

// Route53 against moto (issue 22): the alias provider over caddy-dns/route53,
// whose AWS SDK reaches the lab's moto_server through
// AWS_ENDPOINT_URL_ROUTE_53 with dummy credentials. moto's hosted zone is
// named like the lab's alias zone, validation.example.org, so the gate
// passes on BIND's copy of it; moto serves no DNS, so no record written
// there is ever served. authoritative_wait is off, so the write returns at
// once and the challenge is presented; certmagic's propagation check then
// waits for a value the resolver never answers, for propagation_timeout,
// and the cleanup deletes it. What this proves: the
// API path, i.e. the exact name and value written, another value at that
// name kept, the delete taking exactly ours, and the sweep of a crash's
// orphan through the API. What it cannot: issuance (no DNS), Route53's
// change propagation, IAM (moto checks no credentials or policy).

import (
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/solver"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// requireRoute53 returns moto's Route53 API, failing (never skipping) when
// the lab runs without moto_server, and gives Caddy its endpoint and
// credentials through this process's environment.
func requireRoute53(t *testing.T) lab.Route53 {
	t.Helper()
	r, err := requireLab(t).Route53()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return r
}

// route53TXT returns the hosted zone's TXT values at name.
func route53TXT(t *testing.T, r lab.Route53, name string) []string {
	t.Helper()
	txt, err := r.TXT(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return txt[name]
}

// waitRoute53 waits until the TXT set at name, less keep, is not empty
// and returns it.
func waitRoute53(t *testing.T, r lab.Route53, name, keep string, timeout time.Duration, c *caddyProc) []string {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		ours := slices.DeleteFunc(route53TXT(t, r, name), func(v string) bool { return v == keep })
		if len(ours) > 0 {
			return ours
		}
		if time.Now().After(deadline) {
			t.Fatalf("no challenge value at %s in moto within %s; log:\n%s", name, timeout, c.log.String())
		}
	}
}

// otherParty is a value another party keeps at an alias name.
const otherParty = "another-party-keeps-this"

// delegatedWithOther delegates a fresh name under prefix to its template
// alias, where moto already holds otherParty's value (removed when the
// test ends); it returns the name and the alias.
func delegatedWithOther(t *testing.T, r lab.Route53, prefix string) (name, alias string) {
	t.Helper()
	name = randomLabel(t, prefix) + ".example.com"
	alias = aliasOf(name)
	delegate(t, name)
	ctx := testCtx(t, 2*time.Minute)
	if err := r.ChangeTXT(ctx, "UPSERT", alias, otherParty); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ChangeTXT(ctx, "DELETE", alias, otherParty) })
	return name, alias
}

// route53Site is the template site for name through moto's Route53,
// without authoritative_wait (BIND never serves what moto holds), the
// challenge held for certmagic's propagation_timeout timeout.
func route53Site(r lab.Route53, name, timeout string) string {
	return templateSite(name, r.ProviderBlock(), "authoritative_wait -1", "propagation_timeout "+timeout)
}

// TestRoute53Moto: one challenge written through the Route53 API: the TXT
// lands at the exact alias name beside another party's value, and when
// certmagic gives up on it (the resolver never answers what moto holds)
// the cleanup's delete removes our value alone.
func TestRoute53Moto(t *testing.T) {
	r := requireRoute53(t)
	name, alias := delegatedWithOther(t, r, "r5-")

	c := startCaddyfile(t, "debug", route53Site(r, name, "8s"))
	ours := waitRoute53(t, r, alias, otherParty, 30*time.Second, c)
	c.waitLine("presented challenge on alias", "domain", name, 10*time.Second)
	if got := route53TXT(t, r, alias); !slices.Contains(got, otherParty) || len(ours) != 1 {
		t.Errorf("%s holds %q while the challenge is written; want the other party's %q and one challenge value", alias, got, otherParty)
	}
	if e := c.presentedFor(name); e.Alias != alias || e.Zone != r.Zone || e.Provider != "route53" {
		t.Errorf("challenge of %s presented at %s in zone %s through %s; want %s in %s through route53", name, e.Alias, e.Zone, e.Provider, alias, r.Zone)
	}
	c.waitLine("deleted challenge from alias", "alias", alias, 30*time.Second)
	for deadline := time.Now().Add(10 * time.Second); slices.Contains(route53TXT(t, r, alias), ours[0]); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the challenge value %q is still at %s; log:\n%s", ours[0], alias, c.log.String())
		}
	}
	if got := route53TXT(t, r, alias); !slices.Equal(got, []string{otherParty}) {
		t.Errorf("%s holds %q after the delete, want only the other party's %q", alias, got, otherParty)
	}
	if left := challengeTXT(t); len(left) > 0 {
		t.Errorf("TXT written to BIND's alias zones: %v", left)
	}
}

// TestRoute53MotoCrashSweep: Caddy is killed (SIGKILL) while its challenge
// is written in moto; a Caddy restarted on the same storage sweeps the
// orphan through the Route53 API, and the other party's value survives.
func TestRoute53MotoCrashSweep(t *testing.T) {
	r := requireRoute53(t)
	name, alias := delegatedWithOther(t, r, "rk-")
	storage := filepath.Join(t.TempDir(), "shared")

	k := startCaddyfileOn(t, storage, "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1h\n\t}", route53Site(r, name, "2m"))
	orphan := waitRoute53(t, r, alias, otherParty, 30*time.Second, k)
	time.Sleep(time.Until(k.started.Add(sweepStart + time.Second)))
	k.cmd.Process.Signal(syscall.SIGKILL)
	k.waitExit(10 * time.Second)
	if !slices.ContainsFunc(journal(t, storage), func(e solver.JournalEntry) bool {
		return e.Name == alias && e.Value == orphan[0] && e.Zone == r.Zone && e.Writer == "route53"
	}) {
		t.Fatalf("no journal entry for the orphan %s %q: %+v", alias, orphan[0], journal(t, storage))
	}

	// The restarted Caddy writes a challenge of its own at the same name
	// (once the dead process's lock is stale) and holds it: the sweep must
	// take the orphan and leave that one.
	s := startCaddyfileOn(t, storage, "dns_alias {\n\t\tsweep_after 3s\n\t\tsweep_interval 1s\n\t}", route53Site(r, name, "2m"))
	for deadline := time.Now().Add(sweepStart + 5*time.Second); slices.Contains(route53TXT(t, r, alias), orphan[0]); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan is still in moto %s after the restart; log:\n%s", time.Since(s.started), s.log.String())
		}
	}
	if l, ok := s.find("removed orphaned challenge record", "name", alias); !ok {
		t.Errorf("the restarted Caddy does not log the orphan's removal")
	} else if l.str("zone") != r.Zone {
		t.Errorf("orphan removal logged for zone %q, want %s", l.str("zone"), r.Zone)
	}
	if !slices.Contains(route53TXT(t, r, alias), otherParty) {
		t.Errorf("the sweep removed the other party's value at %s", alias)
	}
	// A graceful stop deletes the restarted Caddy's own challenge.
	s.stop()
	if got := route53TXT(t, r, alias); !slices.Equal(got, []string{otherParty}) {
		t.Errorf("%s holds %q at the end, want only the other party's %q", alias, got, otherParty)
	}
}
