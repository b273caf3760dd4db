package solver

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// Placeholders an alias template may contain.
const (
	// PlaceholderDomain is the domain being validated, without the wildcard's
	// "*." and without a trailing dot, e.g. "shop.example.com".
	PlaceholderDomain = "{domain}"
	// PlaceholderDomainHash is HashLabel of the domain: one label of fixed
	// length, for validation zones that want names not to reveal the domain.
	PlaceholderDomainHash = "{domain_hash}"
)

// Template is an alias name that may contain placeholders. A name without
// placeholders is a static alias: every domain maps onto it.
type Template struct {
	raw string
}

// ParseTemplate checks that s is a usable alias: known placeholders only, and
// every expansion a valid DNS name. The longest possible domain is tried so
// that an alias that can only fail at run time is refused at provision time.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: Normalize(s)}
	if t.raw == "" {
		return t, fmt.Errorf("alias is empty")
	}
	if strings.HasSuffix(t.raw, ".") {
		return t, fmt.Errorf("alias %q ends in more than one dot", s)
	}
	rest := t.raw
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return t, fmt.Errorf("alias %q has an unmatched '}'", s)
			}
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return t, fmt.Errorf("alias %q has an unclosed '{'", s)
		}
		ph := rest[open : open+end+1]
		if ph != PlaceholderDomain && ph != PlaceholderDomainHash {
			return t, fmt.Errorf("alias %q uses unknown placeholder %s (known: %s, %s)", s, ph, PlaceholderDomain, PlaceholderDomainHash)
		}
		rest = rest[open+end+1:]
	}
	for _, sample := range []string{"example.com", longestDomain} {
		if _, err := t.Expand(sample); err != nil {
			return t, fmt.Errorf("alias %q cannot produce a valid name: %w", s, err)
		}
	}
	if !strings.Contains(t.Suffix(), ".") {
		return t, fmt.Errorf("alias %q must end in the name of the validation zone (e.g. %s.validation.example.org)", s, t.raw)
	}
	return t, nil
}

// longestDomain is a 253-octet name, the longest a domain can be.
var longestDomain = strings.Repeat(strings.Repeat("a", 62)+".", 5)[:253]

// IsStatic reports whether the alias is the same name for every domain.
func (t Template) IsStatic() bool { return !strings.ContainsRune(t.raw, '{') }

// String returns the template as configured (normalized).
func (t Template) String() string { return t.raw }

// Suffix is the fixed part after the last placeholder (the whole name for a
// static alias): every expansion lies at or below it.
func (t Template) Suffix() string {
	i := strings.LastIndexByte(t.raw, '}')
	if i < 0 {
		return t.raw
	}
	// Up to the next dot: in "{domain}x.zone" the label "<domain>x" varies.
	_, s, _ := strings.Cut(t.raw[i+1:], ".")
	return s
}

// Expand returns the alias name for domain. When inserting the domain would
// exceed a DNS length limit, {domain} is replaced by HashLabel(domain) instead
// of producing a broken name; if even that does not fit, it is an error. A
// domain that is no valid DNS name ("", "a b.x", "*.*.example.com") is
// refused, never hashed.
func (t Template) Expand(domain string) (string, error) {
	d := strings.TrimPrefix(Normalize(domain), "*.")
	// The added dot keeps ValidName from normalizing away a second
	// trailing dot ("example.com..").
	if err := ValidName(d + "."); err != nil {
		return "", fmt.Errorf("alias for %q: the domain is no valid DNS name: %w", domain, err)
	}
	hash := HashLabel(d)
	name := strings.NewReplacer(PlaceholderDomain, d, PlaceholderDomainHash, hash).Replace(t.raw)
	if ValidName(name) != nil && strings.Contains(t.raw, PlaceholderDomain) {
		name = strings.NewReplacer(PlaceholderDomain, hash, PlaceholderDomainHash, hash).Replace(t.raw)
	}
	if err := ValidName(name); err != nil {
		return "", fmt.Errorf("alias for %q: %w", d, err)
	}
	return name, nil
}

// HashLabel is the documented stand-in for a domain that is too long to
// embed: the first 15 bytes of SHA-256 of the normalized domain, base32
// encoded in lower case (24 characters, a valid DNS label).
func HashLabel(domain string) string {
	sum := sha256.Sum256([]byte(strings.TrimPrefix(Normalize(domain), "*.")))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:15]))
}
