package solver

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	// A suffix so long that even the hashed label no longer fits:
	// 24 (hash) + 1 + 24 (hash) + 1 + 205 = 255 > 253.
	longSuffix := strings.Repeat(strings.Repeat("s", 40)+".", 5) + "org" // 208 octets
	for _, tc := range []struct {
		in         string
		wantErr    string // "" for valid
		wantRaw    string
		wantStatic bool
		wantSuffix string
	}{
		{in: "_acme-challenge.validation.example.org", wantRaw: "_acme-challenge.validation.example.org",
			wantStatic: true, wantSuffix: "_acme-challenge.validation.example.org"},
		{in: "_ACME-Challenge.Validation.Example.ORG.", wantRaw: "_acme-challenge.validation.example.org",
			wantStatic: true, wantSuffix: "_acme-challenge.validation.example.org"},
		{in: "_acme-challenge.{domain}.validation.example.org", wantRaw: "_acme-challenge.{domain}.validation.example.org",
			wantSuffix: "validation.example.org"},
		{in: "{domain_hash}.validation.example.org", wantRaw: "{domain_hash}.validation.example.org",
			wantSuffix: "validation.example.org"},
		{in: "{domain}.{domain_hash}.validation.example.org", wantRaw: "{domain}.{domain_hash}.validation.example.org",
			wantSuffix: "validation.example.org"},
		// Placeholders are matched after normalization (lower case).
		{in: "_acme-challenge.{DOMAIN}.validation.example.org.", wantRaw: "_acme-challenge.{domain}.validation.example.org",
			wantSuffix: "validation.example.org"},
		{in: "", wantErr: "empty"},
		{in: ".", wantErr: "empty"},
		{in: "_acme-challenge.validation.example.org..", wantErr: "more than one dot"},
		{in: "_acme-challenge.{domain}.validation.example.org...", wantErr: "more than one dot"},
		{in: "_acme-challenge.{domains}.validation.example.org", wantErr: "unknown placeholder {domains}"},
		{in: "_acme-challenge.{host}.validation.example.org", wantErr: "unknown placeholder {host}"},
		{in: "_acme-challenge.{}.validation.example.org", wantErr: "unknown placeholder {}"},
		{in: "_acme-challenge.{domain.validation.example.org", wantErr: "unclosed"},
		{in: "_acme-challenge.{domain}.{domain_hash.validation.example.org", wantErr: "unclosed"},
		{in: "_acme-challenge.domain}.validation.example.org", wantErr: "unmatched"},
		{in: "_acme-challenge.{domain}}.validation.example.org", wantErr: "unmatched"},
		// The suffix must name a zone of at least two labels.
		{in: "validation", wantErr: "must end in the name of the validation zone"},
		{in: "_acme-challenge.{domain}.org", wantErr: "must end in the name of the validation zone"},
		{in: "{domain}", wantErr: "must end in the name of the validation zone"},
		{in: "_acme-challenge.{domain_hash}", wantErr: "must end in the name of the validation zone"},
		// Names no domain could ever make valid.
		{in: "_acme-challenge..validation.example.org", wantErr: "empty label"},
		{in: "_acme challenge.validation.example.org", wantErr: "not allowed"},
		{in: strings.Repeat("a", 64) + ".validation.example.org", wantErr: "label"},
		{in: strings.Repeat("a.", 127) + "org", wantErr: "253"},
		{in: "{domain}.{domain_hash}." + longSuffix, wantErr: "253"},
	} {
		tpl, err := ParseTemplate(tc.in)
		if tc.wantErr != "" {
			if err == nil {
				t.Errorf("ParseTemplate(%q) = %q, nil; want error containing %q", tc.in, tpl, tc.wantErr)
			} else if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTemplate(%q) = %v; want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q) = %v", tc.in, err)
			continue
		}
		if tpl.String() != tc.wantRaw || tpl.IsStatic() != tc.wantStatic || tpl.Suffix() != tc.wantSuffix {
			t.Errorf("ParseTemplate(%q) = raw %q static %v suffix %q; want %q %v %q",
				tc.in, tpl.String(), tpl.IsStatic(), tpl.Suffix(), tc.wantRaw, tc.wantStatic, tc.wantSuffix)
		}
	}

	// The same long suffix with one hashed label still fits and is accepted,
	// so the refusal above is about length, not about the suffix.
	if _, err := ParseTemplate("{domain}." + longSuffix); err != nil {
		t.Errorf("ParseTemplate({domain}.<208 octets>) = %v, want nil (the hash fits)", err)
	}
}

func mustTemplate(t testing.TB, s string) Template {
	t.Helper()
	tpl, err := ParseTemplate(s)
	if err != nil {
		t.Fatalf("ParseTemplate(%q): %v", s, err)
	}
	return tpl
}

func TestTemplateExpand(t *testing.T) {
	static := mustTemplate(t, "_acme-challenge.validation.example.org")
	perDomain := mustTemplate(t, "_acme-challenge.{domain}.validation.example.org")
	hashed := mustTemplate(t, "{domain_hash}.validation.example.org")
	both := mustTemplate(t, "{domain}.{domain_hash}.validation.example.org")

	// 4 labels of 60 = 243 octets: a valid domain that no longer fits under
	// "_acme-challenge." and ".validation.example.org".
	longDomain := strings.TrimSuffix(strings.Repeat(strings.Repeat("d", 60)+".", 4), ".")
	if ValidName(longDomain) != nil {
		t.Fatal("longDomain should be a valid name")
	}
	h := HashLabel("shop.example.com")

	for _, tc := range []struct {
		tpl    Template
		domain string
		want   string
	}{
		{static, "example.com", "_acme-challenge.validation.example.org"},
		{static, "*.other.net", "_acme-challenge.validation.example.org"},
		{static, longDomain, "_acme-challenge.validation.example.org"},
		{perDomain, "shop.example.com", "_acme-challenge.shop.example.com.validation.example.org"},
		{perDomain, "*.shop.example.com", "_acme-challenge.shop.example.com.validation.example.org"},
		{perDomain, "Shop.EXAMPLE.com.", "_acme-challenge.shop.example.com.validation.example.org"},
		{hashed, "shop.example.com", h + ".validation.example.org"},
		{hashed, "*.SHOP.example.com.", h + ".validation.example.org"},
		{both, "shop.example.com", "shop.example.com." + h + ".validation.example.org"},
		// Too long: {domain} becomes the hash label.
		{perDomain, longDomain, "_acme-challenge." + HashLabel(longDomain) + ".validation.example.org"},
		{both, longDomain, HashLabel(longDomain) + "." + HashLabel(longDomain) + ".validation.example.org"},
	} {
		got, err := tc.tpl.Expand(tc.domain)
		if err != nil || got != tc.want {
			t.Errorf("%q.Expand(%q) = %q, %v; want %q", tc.tpl, tc.domain, got, err, tc.want)
			continue
		}
		if err := ValidName(got); err != nil {
			t.Errorf("%q.Expand(%q) = %q, which is invalid: %v", tc.tpl, tc.domain, got, err)
		}
		if !InZone(got, tc.tpl.Suffix()) {
			t.Errorf("%q.Expand(%q) = %q, outside the suffix %q", tc.tpl, tc.domain, got, tc.tpl.Suffix())
		}
	}

	// A domain that is no DNS name is refused, never hashed: hashing is
	// for the length limits only.
	for _, tpl := range []Template{static, perDomain, hashed, both} {
		for _, domain := range []string{"", ".", "a b.x", "exa mple.com", "a..b", "*.*.example.com", "example.com..",
			"a\x00b.example.com", "exämple.com", strings.Repeat("a", 64) + ".example.com", longDomain + ".dddddddddddd"} {
			if got, err := tpl.Expand(domain); err == nil || !strings.Contains(err.Error(), "no valid DNS name") || !strings.Contains(err.Error(), fmt.Sprintf("%q", domain)) {
				t.Errorf("%q.Expand(%q) = %q, %v; want it refused, naming the domain", tpl, domain, got, err)
			}
		}
	}

	// Distinct domains get distinct names from a per-domain template, even
	// when both are hashed.
	other := longDomain[:len(longDomain)-1] + "e"
	a, _ := perDomain.Expand(longDomain)
	b, _ := perDomain.Expand(other)
	if a == b {
		t.Errorf("two long domains expand to the same alias %q", a)
	}

	// A template that only just fits for short domains: a hand-built one
	// that ParseTemplate would refuse fails at Expand instead of producing
	// a broken name.
	tooLong := Template{raw: "{domain_hash}." + strings.Repeat(strings.Repeat("x", 63)+".", 4) + "org"}
	if got, err := tooLong.Expand("example.com"); err == nil {
		t.Errorf("Expand on an over-long template = %q, want an error", got)
	} else if !strings.Contains(err.Error(), "example.com") {
		t.Errorf("Expand error %q does not name the domain", err)
	}
}

func TestHashLabel(t *testing.T) {
	h := HashLabel("example.com")
	if len(h) != 24 {
		t.Errorf("HashLabel length = %d, want 24", len(h))
	}
	if err := ValidName(h); err != nil {
		t.Errorf("HashLabel %q is not a valid name: %v", h, err)
	}
	if strings.Trim(h, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Errorf("HashLabel %q is not lower-case base32", h)
	}
	for _, same := range []string{"example.com", "EXAMPLE.com", "Example.Com.", "*.example.com", " example.com "} {
		if got := HashLabel(same); got != h {
			t.Errorf("HashLabel(%q) = %q, want %q (same as example.com)", same, got, h)
		}
	}
	// Deterministic across calls, distinct across domains.
	seen := map[string]string{}
	for _, d := range []string{"example.com", "example.net", "a.example.com", "b.example.com", "example.co"} {
		got := HashLabel(d)
		if got != HashLabel(d) {
			t.Errorf("HashLabel(%q) is not deterministic", d)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("HashLabel(%q) = HashLabel(%q) = %q", d, prev, got)
		}
		seen[got] = d
	}
	// The documented value, so that operators (and other tools) can
	// compute it: base32 of the first 15 bytes of SHA-256("example.com").
	if want := "un42n5xov642kxrxrqiyanhc"; h != want {
		t.Errorf("HashLabel(example.com) = %q, want %q", h, want)
	}
}

// TestTemplateSuffix checks the promise Rule.Validate relies on: every
// expansion lies at or below Suffix, also when a placeholder shares its label
// with fixed text.
func TestTemplateSuffix(t *testing.T) {
	longDomain := strings.TrimSuffix(strings.Repeat(strings.Repeat("d", 60)+".", 4), ".")
	for _, tc := range []struct{ tpl, suffix string }{
		{"_acme-challenge.validation.example.org", "_acme-challenge.validation.example.org"},
		{"_acme-challenge.{domain}.validation.example.org", "validation.example.org"},
		{"{domain_hash}.validation.example.org", "validation.example.org"},
		{"_acme-challenge.{domain}-x.validation.example.org", "validation.example.org"},
		{"_acme-challenge.{domain}validation.example.org", "example.org"},
		{"{domain_hash}-{domain}.acme.validation.example.org", "acme.validation.example.org"},
	} {
		tpl := mustTemplate(t, tc.tpl)
		if got := tpl.Suffix(); got != tc.suffix {
			t.Errorf("%q.Suffix() = %q, want %q", tc.tpl, got, tc.suffix)
		}
		for _, d := range []string{"example.com", "*.shop.example.com", "validation.example.org", "a", longDomain} {
			name, err := tpl.Expand(d)
			if err != nil {
				t.Errorf("%q.Expand(%q): %v", tc.tpl, d, err)
				continue
			}
			if !InZone(name, tpl.Suffix()) {
				t.Errorf("%q.Expand(%q) = %q, not below Suffix %q", tc.tpl, d, name, tpl.Suffix())
			}
		}
	}
	// So a template glued to the zone's first label is outside that zone.
	r := Rule{Alias: mustTemplate(t, "_acme-challenge.{domain}validation.example.org"), Zones: []string{"validation.example.org"}, Writer: &fakeWriter{}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("Validate = %v, want the alias refused as outside validation.example.org", err)
	}
	// A label glued to a single-label suffix is refused at parse time.
	if _, err := ParseTemplate("_acme-challenge.{domain}example.org"); err == nil {
		t.Error(`ParseTemplate("_acme-challenge.{domain}example.org") succeeded; its zone would be "org"`)
	}
}
