package lab

import "fmt"

// RFC2136Provider is the Caddyfile block of the rfc2136 provider that
// writes to the lab's alias zone with the key caddy-key, whose secret Caddy
// reads from $TSIG_SECRET. xcaddy_test and the benchmark both configure it.
func (l *Lab) RFC2136Provider() string {
	return RFC2136Block(l.CaddyKey.Name, "{env.TSIG_SECRET}", l.AuthA)
}

// RFC2136Block is an rfc2136 provider block (for the body of a dns or
// alias block) with the given key name, key (or placeholder) and server.
func RFC2136Block(keyName, key, server string) string {
	return fmt.Sprintf(`provider rfc2136 {
				key_name %s
				key %s
				key_alg hmac-sha256
				server %s
			}`, keyName, key, server)
}

// Delegation is the record a domain's owner publishes to delegate name's
// challenge to the template _acme-challenge.{domain}.<aliasZone>.
func Delegation(name, aliasZone string) string {
	return fmt.Sprintf("_acme-challenge.%s. 60 IN CNAME _acme-challenge.%s.%s.", name, name, aliasZone)
}
