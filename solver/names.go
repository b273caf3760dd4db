// Package solver holds the DNS logic of caddy-dns-alias: mapping an ACME
// challenge name onto an alias zone, following CNAME chains confined to
// configured zones, and the libdns wrapper that writes challenge records
// through an inner provider. It imports no Caddy package so that it can be
// tested and reused on its own.
package solver

import (
	"fmt"
	"strings"
)

// ChallengePrefix is the label ACME DNS-01 puts in front of the domain.
const ChallengePrefix = "_acme-challenge"

// DNS limits from RFC 1035 §2.3.4, in presentation form without the root dot.
const (
	maxLabelLen = 63
	maxNameLen  = 253
)

// Normalize lowercases a domain name and strips its trailing dot: owner names
// compare case-insensitively and providers disagree about the final dot.
func Normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// FQDN returns the normalized name with the trailing dot that zone-file and
// wire-format APIs expect.
func FQDN(name string) string {
	return Normalize(name) + "."
}

// ChallengeName is the name at which ACME looks for the DNS-01 TXT record of
// domain. A wildcard domain shares the challenge name of its base domain.
func ChallengeName(domain string) string {
	return ChallengePrefix + "." + strings.TrimPrefix(Normalize(domain), "*.")
}

// ChallengeDomain is the inverse of ChallengeName: the domain whose challenge
// lives at name, or an error if name is not a challenge name.
func ChallengeDomain(name string) (string, error) {
	n := Normalize(name)
	domain, ok := strings.CutPrefix(n, ChallengePrefix+".")
	if !ok || domain == "" {
		return "", fmt.Errorf("%q is not an ACME challenge name (%s.<domain>)", name, ChallengePrefix)
	}
	return domain, nil
}

// InZone reports whether name equals zone or lies below it.
func InZone(name, zone string) bool {
	n, z := Normalize(name), Normalize(zone)
	return n == z || strings.HasSuffix(n, "."+z)
}

// ValidName checks that name is a hostname-like DNS name that a challenge
// record can be written at: non-empty labels of letters, digits, '-' and '_',
// within the length limits.
func ValidName(name string) error {
	n := Normalize(name)
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if len(n) > maxNameLen {
		return fmt.Errorf("name %q is %d octets long, more than DNS allows (%d)", n, len(n), maxNameLen)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" {
			return fmt.Errorf("name %q has an empty label", n)
		}
		if len(label) > maxLabelLen {
			return fmt.Errorf("label %q of %q is %d octets long, more than DNS allows (%d)", label, n, len(label), maxLabelLen)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("name %q contains %q, which is not allowed in a challenge name", n, r)
			}
		}
	}
	return nil
}
