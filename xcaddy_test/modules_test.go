package xcaddy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme-alias/caddy-dns-alias/internal/configwalk"
	"github.com/acme-alias/caddy-dns-alias/internal/readme"
	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// TestListModules: the xcaddy-built binary (lab/build-caddy.sh, which adds
// the acme-dns endpoint's package next to the plugin) has every module of
// this plugin and of the endpoint, the three DNS providers and the Redis
// storage it was built with.
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
		"http.handlers.acme_dns_server",
		"admin.api.acme_dns_server",
		"dns.providers.rfc2136",
		"dns.providers.cloudflare",
		"dns.providers.route53",
		"caddy.storage.redis",
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
// the plugin's Go files (the repository root and the acme-dns endpoint's
// package, not tests).
func pluginModuleIDs(t *testing.T) []string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, dir := range []string{root, filepath.Join(root, "acmednsserver")} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
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
		t.Fatalf("no caddy.ModuleInfo ID found in %s/*.go and acmednsserver/*.go", root)
	}
	return ids
}

// TestReadmeCaddyfiles: every ```caddyfile block of README.md and docs/ adapts with
// the xcaddy-built Caddy; the ```json block shown right after it (same
// heading, nothing fenced between) is what `caddy adapt` makes, at some
// place of the adapted config (an alias provider object: every alias
// provider of it); and `caddy validate` accepts it, with the placeholder
// values README's Examples section gives (the inner providers, Cloudflare
// and Route53 included, whose APIs can't be reached here, are provisioned).
func TestReadmeCaddyfiles(t *testing.T) {
	requireLab(t)
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	placeholders := readmePlaceholderEnv(t, doc)
	blocks, paired := 0, 0
	for _, b := range doc.Blocks() {
		if b.Lang != "caddyfile" {
			continue
		}
		blocks++
		var jsonText string
		if j, ok := doc.JSONAfter(b); ok {
			jsonText = j.Text
			paired++
		}
		t.Run(fmt.Sprintf("%s:%d", b.File, b.Line), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "Caddyfile")
			if err := os.WriteFile(file, []byte(b.Text), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(),
				"HOME="+dir,
				"XDG_DATA_HOME="+filepath.Join(dir, "data"),
				"XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
			env = append(env, placeholders...)
			// the cluster example's storage pings Redis when provisioned:
			// the lab's, wherever it listens
			env = append(env, "REDIS_ADDRESS="+theLab.RedisAddr)
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(caddyBin, "adapt", "--config", file, "--adapter", "caddyfile")
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: caddy adapt: %v\n%s%s", b, err, stdout.String(), stderr.String())
			}
			if jsonText != "" {
				checkShownJSON(t, b, stdout.Bytes(), jsonText)
			}
			cmd = exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: caddy validate: %v\n%s", b, err, out)
			}
			if !bytes.Contains(out, []byte("Valid configuration")) {
				t.Errorf("%s: caddy validate did not report a valid configuration:\n%s", b, out)
			}
		})
	}
	// the Examples (4), platform onboarding, ACME-DNS, the journal's sweep,
	// the cluster on Redis, the cluster on a shared directory
	if blocks < 9 || paired < 7 {
		t.Errorf("README.md and docs/ have %d Caddyfile blocks, %d of them with JSON after them; want at least 9 and 7", blocks, paired)
	}
}

// readmePlaceholderEnv returns the KEY=value pairs of the `export` lines of
// the ```sh block in README's Examples section that runs `caddy validate`.
func readmePlaceholderEnv(t *testing.T, doc readme.Set) []string {
	t.Helper()
	var env []string
	for _, b := range doc.In("## Examples") {
		if b.Lang != "sh" || !strings.Contains(b.Text, "caddy validate") {
			continue
		}
		for _, c := range readme.Commands(b) {
			if rest, ok := strings.CutPrefix(c, "export "); ok {
				env = append(env, strings.Fields(rest)...)
			}
		}
	}
	if len(env) < 4 {
		t.Fatalf("README's Examples section gives %d placeholder values (export lines before caddy validate): %q", len(env), env)
	}
	return env
}

// checkShownJSON fails t unless the JSON README shows is a part of the
// adapted config: equal to the value at some place in it, or, for an alias
// provider object, equal to every alias provider in it.
func checkShownJSON(t *testing.T, b readme.Block, adapted []byte, shown string) {
	t.Helper()
	var cfg, want any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatalf("caddy adapt printed no JSON: %v\n%s", err, adapted)
	}
	if err := json.Unmarshal([]byte(shown), &want); err != nil {
		t.Fatalf("%s: README's JSON after it does not parse: %v\n%s", b, err, shown)
	}
	if obj, ok := want.(map[string]any); ok && obj["name"] == "alias" {
		found := configwalk.AliasProviders(cfg)
		if len(found) == 0 {
			t.Fatalf("%s: the adapted config has no alias provider:\n%s", b, adapted)
		}
		for _, got := range found {
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				t.Errorf("%s: caddy adapt made the provider\n%s\nREADME.md shows\n%s", b, g, shown)
			}
		}
		return
	}
	if !containsValue(cfg, want) {
		t.Errorf("%s: README's JSON after it is nowhere in what caddy adapt makes of it:\n%s\nREADME.md shows\n%s", b, adapted, shown)
	}
}

// containsValue reports whether want equals v or a value anywhere in it.
func containsValue(v, want any) bool {
	if reflect.DeepEqual(v, want) {
		return true
	}
	switch x := v.(type) {
	case map[string]any:
		for _, child := range x {
			if containsValue(child, want) {
				return true
			}
		}
	case []any:
		for _, child := range x {
			if containsValue(child, want) {
				return true
			}
		}
	}
	return false
}

// TestReadmeBuild runs every command of the ```sh blocks of README's
// "Building Caddy with the plugin" section as it stands, in a fresh
// directory, with the checkout for /path/to/caddy-dns-alias and the
// repository's root for the relative lab/ path, in an environment that
// exempts no module from Go's checksum database, and checks that what each
// built is Caddy with the plugin, the acme-dns endpoint and the rfc2136
// provider.
func TestReadmeBuild(t *testing.T) {
	requireLab(t)
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, b := range doc.In("## Building Caddy with the plugin") {
		if b.Lang == "sh" {
			cmds = append(cmds, readme.Commands(b)...)
		}
	}
	if len(cmds) < 2 {
		t.Fatalf("README's build section has %d commands, want the script and xcaddy by hand: %q", len(cmds), cmds)
	}
	for i, c := range cmds {
		t.Run(fmt.Sprintf("command %d", i+1), func(t *testing.T) {
			dir := t.TempDir()
			line := strings.ReplaceAll(c, "/path/to/caddy-dns-alias", root)
			line = strings.ReplaceAll(line, "lab/build-caddy.sh", filepath.Join(root, "lab", "build-caddy.sh"))
			if !strings.Contains(line, "./caddy") {
				t.Fatalf("README's build command does not write ./caddy: %s", c)
			}
			ctx := testCtx(t, 15*time.Minute)
			start := time.Now()
			for _, v := range checksumExemptions {
				if strings.Contains(c, v) {
					t.Errorf("README's build command sets %s, which turns off checksum verification: %s", v, c)
				}
			}
			cmd := exec.CommandContext(ctx, "bash", "-c", line)
			cmd.Dir = dir
			// as a user's shell has it: nothing exempt from Go's checksum
			// database, whatever this test's environment says
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
				return slices.ContainsFunc(checksumExemptions, func(v string) bool { return strings.HasPrefix(kv, v+"=") })
			})
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("README's build command failed: %v\n$ %s\n%s", err, c, out)
			}
			t.Logf("%s: built in %s", c, time.Since(start).Round(time.Second))
			mods, err := exec.Command(filepath.Join(dir, "caddy"), "list-modules").CombinedOutput()
			if err != nil {
				t.Fatalf("caddy list-modules: %v\n%s", err, mods)
			}
			want := []string{"dns.providers.alias", "http.handlers.acme_dns_server", "dns.providers.rfc2136"}
			// a DNS provider added with --with is in the build too
			for _, m := range regexp.MustCompile(`--with github\.com/caddy-dns/([a-z0-9]+)`).FindAllStringSubmatch(c, -1) {
				want = append(want, "dns.providers."+m[1])
			}
			for _, id := range want {
				if !bytes.Contains(mods, []byte(id+"\n")) {
					t.Errorf("the Caddy README's %q built has no %s:\n%s", c, id, mods)
				}
			}
		})
	}
}

// checksumExemptions are the Go settings that exempt modules from the
// checksum database (GOFLAGS could say -insecure).
var checksumExemptions = []string{"GONOSUMDB", "GONOSUMCHECK", "GOPRIVATE", "GOINSECURE", "GOSUMDB", "GOFLAGS"}

// TestDocsNamedConf: every ```named block of README.md and docs/ (BIND
// configuration, e.g. the deployment guide's TXT-only update-policy) is
// accepted by named-checkconf, the lab's BIND's own checker.
func TestDocsNamedConf(t *testing.T) {
	requireLab(t)
	doc, err := readme.Load()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range doc.Blocks() {
		if b.Lang != "named" {
			continue
		}
		n++
		file := filepath.Join(t.TempDir(), "named.conf")
		if err := os.WriteFile(file, []byte(b.Text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("named-checkconf", file).CombinedOutput(); err != nil {
			t.Errorf("%s: named-checkconf: %v\n%s", b, err, out)
		}
	}
	if n == 0 {
		t.Error("README.md and docs/ have no ```named block; the deployment guide's update-policy is one")
	}
}
