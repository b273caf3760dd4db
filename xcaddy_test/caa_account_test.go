package xcaddy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestGateCAAAccountURI: a CAA record whose accounturi (RFC 8657) names
// another ACME account than the one this server registered at Pebble is
// refused by the gate before any order, with the record that binds this
// server's account; `caddy dns-alias check` prints that record for a
// domain whose CAA does not bind it. Pebble does not enforce CAA, so the
// gate's refusal, and the order count staying at zero, is the proof.
func TestGateCAAAccountURI(t *testing.T) {
	// the CAA identity Pebble's directory lists (meta.caaIdentities), which
	// the gate judges against ahead of gateSite's caa_identities
	const pebbleCA = "pebble.letsencrypt.org"
	requireLab(t)
	label := randomLabel(t, "acct-")
	good := label + "-good.example.com"
	trap := label + "-trap.example.com"
	publish(t, delegation(good))
	// The first Caddy registers the account at Pebble with its first order.
	first := startCaddyfile(t, "", gateSite([]string{good}, ""))
	first.waitCert(good, 90*time.Second)
	first.stop()
	ours := storedAccount(t, first.storage)

	other := ours[:strings.LastIndex(ours, "/")+1] + "999999"
	publish(t, delegation(trap))
	publish(t, fmt.Sprintf(`%s. 60 IN CAA 0 issue "%s; accounturi=%s"`, trap, pebbleCA, other))
	mark := pebbleMark(t)
	c := startCaddyfileOn(t, first.storage, "", gateSite([]string{trap}, ""))
	line := c.waitLine(gateRefused, "identifier", trap, 60*time.Second)
	if got := line.str("finding"); got != solver.CodeCAAAccountURI {
		t.Errorf("the gate names finding %q, want %q: %s", got, solver.CodeCAAAccountURI, line.raw)
	}
	binding := fmt.Sprintf(`%s. 300 IN CAA 0 issue "%s; accounturi=%s"`, trap, pebbleCA, ours)
	if got := line.str("publish"); got != binding {
		t.Errorf("the refusal prints %q, want the record binding this server's account: %s", got, binding)
	}
	if !strings.Contains(line.str("error"), other) {
		t.Errorf("the refusal does not name the account the CAA allows (%s): %s", other, line.raw)
	}
	// certmagic retries a refused obtain; every retry meets the gate.
	time.Sleep(2 * time.Second)
	if p := pebbleSince(t, mark); p.orders != 0 {
		t.Errorf("Pebble received %d orders for %s, refused by CAA accounturi, want 0", p.orders, trap)
	}
	c.stop()

	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(c.globalOptions(theLab, "")+gateSite([]string{good}, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCheckCmd(t, "--config", config, good)
	want := fmt.Sprintf(`%s. 300 IN CAA 0 issue "%s; accounturi=%s"`, good, pebbleCA, ours)
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("caddy dns-alias check exited %d and does not print %s:\n%s\n%s", code, want, out, errOut)
	}
}

// storedAccount returns the URL of the one ACME account in a Caddy's
// file_system storage (acme/<CA>/users/<user>/<user>.json, "location").
func storedAccount(t *testing.T, storage string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(storage, "acme", "*", "users", "*", "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d ACME accounts in %s, want 1: %v", len(files), storage, files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var acct struct {
		Location string `json:"location"`
	}
	if err := json.Unmarshal(raw, &acct); err != nil || acct.Location == "" {
		t.Fatalf("%s: no account location (%v): %s", files[0], err, raw)
	}
	return acct.Location
}
