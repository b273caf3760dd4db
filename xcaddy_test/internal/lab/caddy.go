package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

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

// CaddyGlobalOptions is the Caddyfile global options block of a Caddy on
// the lab: its admin address and file_system storage, the lab's Pebble as
// its only CA, the given HTTP and HTTPS ports, no OCSP stapling, and extra
// (more global options, e.g. "renew_interval 2s").
func (l *Lab) CaddyGlobalOptions(admin, storage string, httpPort, httpsPort int, extra string) string {
	return l.CaddyGlobals(admin, "file_system "+storage, fmt.Sprint(httpPort), fmt.Sprint(httpsPort), extra)
}

// CaddyGlobals is CaddyGlobalOptions with the storage option's value as
// it stands (e.g. RedisStorage's) and the ports as text, so that they can
// be placeholders ({$HTTPS_PORT}) and one Caddyfile serve a whole cluster.
func (l *Lab) CaddyGlobals(admin, storage, httpPort, httpsPort, extra string) string {
	return fmt.Sprintf(`{
	admin %s
	storage %s
	email test@example.com
	acme_ca %s
	acme_ca_root %s
	http_port %s
	https_port %s
	ocsp_stapling off
	%s
}
`, admin, storage, l.PebbleDir, l.PebbleCAPEM, httpPort, httpsPort, extra)
}

// RedisStorage is the value of a Caddyfile storage option that keeps
// Caddy's storage in the lab's Redis (caddy-storage-redis) under
// keyPrefix: instances with the same prefix are a cluster; a test with a
// prefix of its own sees nobody else's certificates, locks or journal.
func (l *Lab) RedisStorage(keyPrefix string) string {
	return fmt.Sprintf(`redis {
		address %s
		key_prefix %s
	}`, l.RedisAddr, keyPrefix)
}

// CaddyEnv is the environment of a Caddy command run in dir: this
// process's, with dir as its home and the lab's TSIG secrets for the
// {env.TSIG_SECRET} and {env.TSIG_SECRET_2} placeholders.
func (l *Lab) CaddyEnv(dir string) []string {
	return append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"TSIG_SECRET="+l.CaddyKey.Secret, "TSIG_SECRET_2="+l.CaddyKey2.Secret)
}

// CertFile returns the certificate file that Caddy's file_system storage
// holds for name, or "".
func CertFile(storage, name string) string {
	key := strings.Replace(name, "*", "wildcard_", 1)
	matches, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", key, key+".crt"))
	if len(matches) == 0 {
		return ""
	}
	return matches[0]
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
