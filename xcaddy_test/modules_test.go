package xcaddy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/acme-alias/caddy-dns-alias/internal/lab"
)

// TestListModules: the xcaddy-built binary has every module of this plugin
// and the three DNS providers it was built with.
func TestListModules(t *testing.T) {
	requireLab(t)
	out, err := exec.Command(caddyBin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			have[f[0]] = true
		}
	}
	want := []string{
		"dns.providers.alias",
		"admin.api.dns_alias",
		"dns.providers.rfc2136",
		"dns.providers.cloudflare",
		"dns.providers.route53",
	}
	// and every module the plugin's sources register (ID: "..." in
	// caddy.ModuleInfo), so that a module added later is checked too
	want = append(want, pluginModuleIDs(t)...)
	for _, id := range want {
		if !have[id] {
			t.Errorf("caddy list-modules does not list %s:\n%s", id, out)
		}
	}
}

// pluginModuleIDs returns the module IDs in the caddy.ModuleInfo literals of
// the plugin's Go files (the repository root, not tests).
func pluginModuleIDs(t *testing.T) []string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*ID:\s*"([a-z0-9_.]+)"`)
	var ids []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(data, -1) {
			ids = append(ids, string(m[1]))
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no caddy.ModuleInfo ID found in %s/*.go", root)
	}
	return ids
}

// TestReadmeExamples: every Caddyfile in README.md's "### Examples" section
// adapts to the provider JSON printed after it, and `caddy validate` accepts
// it: the inner providers (Cloudflare and Route53 included, whose APIs can't
// be reached here) are provisioned.
func TestReadmeExamples(t *testing.T) {
	requireLab(t)
	examples := readmeExamples(t)
	if len(examples) < 4 {
		t.Fatalf("README.md's Examples section has %d Caddyfile+JSON pairs, want at least 4", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.title, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "Caddyfile")
			if err := os.WriteFile(file, []byte(ex.caddyfile), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(),
				"HOME="+dir,
				"XDG_DATA_HOME="+filepath.Join(dir, "data"),
				"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
				// dummies: provisioning only checks their form
				"TSIG_SECRET=ZHVtbXktdHNpZy1zZWNyZXQtZm9yLXZhbGlkYXRl",
				"TSIG_SECRET_2=ZHVtbXktdHNpZy1zZWNyZXQtMi1mb3ItdmFsaWRhdGU=",
				"CF_API_TOKEN=dummy0cloudflare0api0token0for0validate00",
			)

			var stdout, stderr bytes.Buffer
			cmd := exec.Command(caddyBin, "adapt", "--config", file, "--adapter", "caddyfile")
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("caddy adapt: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			var adapted any
			if err := json.Unmarshal(stdout.Bytes(), &adapted); err != nil {
				t.Fatalf("caddy adapt printed no JSON: %v\n%s", err, stdout.String())
			}
			var want any
			if err := json.Unmarshal([]byte(ex.json), &want); err != nil {
				t.Fatalf("README's JSON block does not parse: %v\n%s", err, ex.json)
			}
			found := findAliasProviders(adapted)
			if len(found) == 0 {
				t.Fatalf("the adapted config has no provider object with \"name\": \"alias\":\n%s", stdout.String())
			}
			for _, got := range found {
				if !reflect.DeepEqual(got, want) {
					g, _ := json.MarshalIndent(got, "", "  ")
					w, _ := json.MarshalIndent(want, "", "  ")
					t.Errorf("caddy adapt made\n%s\nREADME.md says\n%s", g, w)
				}
			}

			cmd = exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("caddy validate: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("Valid configuration")) {
				t.Errorf("caddy validate did not report a valid configuration:\n%s", out)
			}
		})
	}
}
