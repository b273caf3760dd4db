package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDelegation(t *testing.T) {
	got := Delegation("a.example.com", "validation.example.org")
	want := "_acme-challenge.a.example.com. 60 IN CNAME _acme-challenge.a.example.com.validation.example.org."
	if got != want {
		t.Errorf("Delegation: %q, want %q", got, want)
	}
	if _, err := ParseRRs("example.com", got); err != nil {
		t.Errorf("the delegation does not parse: %v", err)
	}
}

func TestCertFile(t *testing.T) {
	storage := t.TempDir()
	dir := filepath.Join(storage, "certificates", "acme-v02.example-directory", "wildcard_.a.example.com")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "wildcard_.a.example.com.crt")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := CertFile(storage, "*.a.example.com"); got != file {
		t.Errorf("CertFile(*.a.example.com) = %q, want %q", got, file)
	}
	if got := CertFile(storage, "a.example.com"); got != "" {
		t.Errorf("CertFile(a.example.com) = %q, want none", got)
	}
}

func TestCaddyGlobalOptions(t *testing.T) {
	l := &Lab{PebbleDir: "https://127.0.0.1:14000/dir", PebbleCAPEM: "/lab/ca.pem"}
	got := l.CaddyGlobalOptions("127.0.0.1:2019", "/s", 80, 443, "debug")
	for _, want := range []string{"\tadmin 127.0.0.1:2019\n", "\tstorage file_system /s\n", "\tacme_ca https://127.0.0.1:14000/dir\n", "\tacme_ca_root /lab/ca.pem\n", "\thttp_port 80\n", "\thttps_port 443\n", "\tdebug\n}\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("global options lack %q:\n%s", want, got)
		}
	}
}
