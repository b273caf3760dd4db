// Package solver holds the DNS logic of caddy-dns-alias: mapping an ACME
// challenge name onto an alias zone, following CNAME chains confined to
// configured zones, and the libdns wrapper that writes challenge records
// through an inner provider. It imports no Caddy package so that it can be
// tested and reused on its own.
//
// Provider implements the four libdns record interfaces, and departs from
// their documented semantics where following them could touch a record it
// did not write:
//
//   - DeleteRecords of a record this process did not present is a no-op
//     (as libdns asks of a record that does not exist);
//   - DeleteRecords of a record without a value, which libdns reads as every
//     value at the name, is refused with an error: it deletes only what it
//     presented, each by its value;
//   - SetRecords adds the values not presented yet and never replaces the
//     TXT set at a name: other challenges' values there stay;
//   - the same value presented twice is one record, deleted with its last
//     user: the first DeleteRecords reports it deleted while it is served on;
//   - AppendRecords and SetRecords accept ACME challenge TXT records only,
//     and GetRecords lists what this process presents, under alias names,
//     never what the alias zone holds.
package solver

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
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

// ValidZone checks that zone can be an alias zone: a valid name that is not
// a public suffix ("org", "example", "co.uk", "github.io"), which nobody can
// own as a validation zone. The Public Suffix List decides, as
// golang.org/x/net/publicsuffix embeds it.
func ValidZone(zone string) error {
	if err := ValidName(zone); err != nil {
		return err
	}
	z := Normalize(zone)
	if IsPublicSuffix(z) {
		return fmt.Errorf("%q is a public suffix (Public Suffix List), not a zone this server can own", z)
	}
	return nil
}

// IsPublicSuffix reports whether name is on the Public Suffix List (or is
// the root).
func IsPublicSuffix(name string) bool {
	n := Normalize(name)
	suffix, _ := publicsuffix.PublicSuffix(n)
	return n == "" || suffix == n
}

// DigestLen is the length of an ACME DNS-01 TXT value: the unpadded
// base64url encoding of a SHA-256 digest (RFC 8555 §8.4).
const DigestLen = 43

// ValidDigest checks that value has the shape of an ACME DNS-01 TXT value:
// 43 characters of base64url.
func ValidDigest(value string) error {
	if len(value) != DigestLen {
		return fmt.Errorf("value is %d characters long, not the %d of an ACME DNS-01 digest", len(value), DigestLen)
	}
	for _, r := range value {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("value contains %q, which is not base64url (an ACME DNS-01 digest)", r)
		}
	}
	return nil
}

// ValidResolver checks a resolvers entry: an IP address, or an IP address
// and a port (1-65535) as "1.2.3.4:53" or "[2001:db8::1]:53". Host names are
// refused: resolving the resolver would need a resolver.
func ValidResolver(s string) error {
	s = strings.TrimSpace(s)
	ip := net.ParseIP(strings.Trim(s, "[]"))
	if ip == nil {
		host, port, err := net.SplitHostPort(s)
		if ip = net.ParseIP(host); err != nil || ip == nil {
			return fmt.Errorf("resolver %q is not an IP address or IP:port (resolvers are given by address)", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("resolver %q: port %q is not a number from 1 to 65535", s, port)
		}
	}
	// No DNS server answers from these: a query to one never gets a reply.
	if ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
		return fmt.Errorf("resolver %q is an unspecified, multicast or broadcast address, which no DNS server answers from", s)
	}
	return nil
}
