package solver

import (
	"fmt"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"_ACME-Challenge.Example.Com.", "_acme-challenge.example.com"},
		{"  example.com.  ", "example.com"},
		{".", ""},
		{"", ""},
		// Only one root dot is stripped: a name with an empty last label
		// stays visibly broken and ValidName refuses it.
		{"example.com..", "example.com."},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFQDN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com."},
		{"Example.com.", "example.com."},
		{"_acme-challenge.VALIDATION.example.org", "_acme-challenge.validation.example.org."},
	} {
		if got := FQDN(tc.in); got != tc.want {
			t.Errorf("FQDN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestChallengeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "_acme-challenge.example.com"},
		{"Example.COM.", "_acme-challenge.example.com"},
		{"*.example.com", "_acme-challenge.example.com"},
		{"*.Shop.Example.com.", "_acme-challenge.shop.example.com"},
		{"shop.example.com", "_acme-challenge.shop.example.com"},
		// Only a leading wildcard label is the wildcard's.
		{"a.*.example.com", "_acme-challenge.a.*.example.com"},
	} {
		if got := ChallengeName(tc.in); got != tc.want {
			t.Errorf("ChallengeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Apex and wildcard share one challenge name.
	if ChallengeName("example.com") != ChallengeName("*.example.com") {
		t.Error("apex and wildcard must share a challenge name")
	}
}

func TestChallengeDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"_acme-challenge.example.com", "example.com", true},
		{"_acme-challenge.example.com.", "example.com", true},
		{"_ACME-Challenge.Shop.Example.COM.", "shop.example.com", true},
		{"_acme-challenge._acme-challenge.example.com", "_acme-challenge.example.com", true},
		{"example.com", "", false},
		{"www.example.com", "", false},
		{"_acme-challenge", "", false},
		{"_acme-challenge.", "", false},
		{"_acme-challengex.example.com", "", false},
		{"x._acme-challenge.example.com", "", false},
		{"acme-challenge.example.com", "", false},
		{"", "", false},
	} {
		got, err := ChallengeDomain(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ChallengeDomain(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ChallengeDomain(%q) = %q, nil; want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
			t.Errorf("ChallengeDomain(%q): error %q does not name the input", tc.in, err)
		}
	}
	// Round trip.
	for _, d := range []string{"example.com", "*.example.com", "Shop.Example.com."} {
		got, err := ChallengeDomain(ChallengeName(d))
		want := strings.TrimPrefix(Normalize(d), "*.")
		if err != nil || got != want {
			t.Errorf("ChallengeDomain(ChallengeName(%q)) = %q, %v; want %q", d, got, err, want)
		}
	}
}

func TestInZone(t *testing.T) {
	for _, tc := range []struct {
		name, zone string
		want       bool
	}{
		{"example.org", "example.org", true},
		{"x.example.org", "example.org", true},
		{"a.b.c.example.org", "example.org", true},
		{"X.Example.ORG", "example.org", true},
		{"x.example.org", "EXAMPLE.org.", true},
		{"x.example.org.", "example.org", true},
		{"Example.Org.", "example.org.", true},
		{"_acme-challenge.validation.example.org", "validation.example.org", true},
		// No false suffix match.
		{"badexample.org", "example.org", false},
		{"x.badexample.org", "example.org", false},
		{"xvalidation.example.org", "validation.example.org", false},
		{"validation.example.org.evil.com", "validation.example.org", false},
		// A parent is not inside its child.
		{"example.org", "validation.example.org", false},
		{"org", "example.org", false},
		{"example.com", "example.org", false},
	} {
		if got := InZone(tc.name, tc.zone); got != tc.want {
			t.Errorf("InZone(%q, %q) = %v, want %v", tc.name, tc.zone, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	label64 := strings.Repeat("a", 64)
	// 63+1+63+1+63+1+61 = 253 octets.
	name253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	name254 := name253 + "b"
	if len(name253) != 253 || len(name254) != 254 {
		t.Fatalf("test names have wrong lengths %d, %d", len(name253), len(name254))
	}
	for _, tc := range []struct {
		name    string
		wantErr string // "" for valid
	}{
		{"example.com", ""},
		{"Example.COM.", ""},
		{"_acme-challenge.example.com", ""},
		{"a-b_c.0-9.example", ""},
		{"com", ""},
		{label63 + ".example.com", ""},
		{label64 + ".example.com", "label"},
		{"x." + label64, "label"},
		{name253, ""},
		{name253 + ".", ""}, // the root dot does not count
		{name254, "253"},
		{"", "empty name"},
		{".", "empty name"},
		{"   ", "empty name"},
		{"a..example.com", "empty label"},
		{".example.com", "empty label"},
		{"example.com..", "empty label"},
		{"*.example.com", "not allowed"},
		{"exa mple.com", "not allowed"},
		{"exa/mple.com", "not allowed"},
		{"evil\\.validation.example.org", "not allowed"},
		{"exämple.com", "not allowed"},
		{"例え.jp", "not allowed"},
		{"@", "not allowed"},
		{"a\x00b.com", "not allowed"},
		{"{domain}.example.org", "not allowed"},
	} {
		err := ValidName(tc.name)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidName(%q) = %v, want nil", tc.name, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("ValidName(%q) = nil, want error containing %q", tc.name, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("ValidName(%q) = %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestValidators: each input maps to "" (valid) or a part of its error.
func TestValidators(t *testing.T) {
	for name, tc := range map[string]struct {
		fn    func(string) error
		cases map[string]string
	}{"ValidZone": {ValidZone, map[string]string{
		"validation.example.org": "",
		"Example.ORG.":           "",
		"acme.example":           "",
		"x.co.uk":                "",
		"org":                    "public suffix",
		"example":                "public suffix",
		"co.uk":                  "public suffix",
		"github.io":              "public suffix",
		"":                       "empty name",
		"a b.example.org":        "not allowed",
	}}, "ValidDigest": {ValidDigest, map[string]string{
		"LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ": "",
		"_-0123456789abcdefghijklmnopqrstuvwxyzABCDE": "",
		"site-verification=keepme":                    "not the 43",
		"":                                            "not the 43",
		"LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=": "not the 43",
		"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ":  "base64url",
		"LPJNul wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ":  "base64url",
		"LPJNul\"wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ": "base64url",
	}}, "ValidResolver": {ValidResolver, map[string]string{
		"1.2.3.4":          "",
		" 1.2.3.4:53 ":     "",
		"127.0.0.1:5353":   "",
		"2001:db8::1":      "",
		"[2001:db8::1]":    "",
		"[2001:db8::1]:53": "",
		"localhost:53":     "not an IP address or IP:port",
		"localhost":        "not an IP address or IP:port",
		"1.2.3.4:abc":      "port",
		":53":              "not an IP address or IP:port",
		"1.2.3.4:99999":    "port",
		"1.2.3.4:":         "port",
		"1.2.3.4:0":        "port",
		"1.2.3.4:053":      "port",
		"":                 "not an IP address or IP:port",
	}}} {
		for in, want := range tc.cases {
			err := tc.fn(in)
			switch {
			case want == "" && err != nil:
				t.Errorf("%s(%q) refused: %v", name, in, err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("%s(%q) = %v, want an error containing %q", name, in, err, want)
			}
		}
	}
}
