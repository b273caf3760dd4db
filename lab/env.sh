# Sourced (not run) by lab/install.sh, lab/build-caddy.sh, demo.sh and
# test.sh: the one place for the versions of what the lab installs and
# builds, and for Go's environment.   . lab/env.sh
#
# Versions that go.mod pins are read from go.mod, so that there is one
# number to change:
#   GO_VERSION     the `go` line: the Go release this module needs
#   CADDY_VERSION  github.com/caddyserver/caddy/v2, which build-caddy.sh builds
# and the rest are pinned here.

CDA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# modver MODULE: its version in go.mod's require block
cda_modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$CDA_ROOT/go.mod"; }
GO_VERSION="$(awk '$1 == "go" { print $2; exit }' "$CDA_ROOT/go.mod")"
CADDY_VERSION="$(cda_modver github.com/caddyserver/caddy/v2)"
# The inner provider of the lab's Caddy and of README's build lines. The
# plugin's go.mod does not require it: the hermetic tests use
# internal/dnsupdate in its place.
RFC2136_VERSION=v1.0.0
CLOUDFLARE_VERSION=v0.2.4
ROUTE53_VERSION=v1.6.2
# The HTTP API provider of the lab's PowerDNS (libdns/powerdns v0.1.4,
# libdns v1.1.1 as this module's); it and its dependencies verify against
# the checksum database.
POWERDNS_VERSION=v1.0.2
# The Redis storage of the cluster tests. v1.8.x is the line that builds
# against Caddy v2.11 (v1.8.1's go.mod requires caddy v2.11.1, which the
# build raises to go.mod's v2.11.x); v1.5.x is for Caddy v2.10 and older.
REDIS_STORAGE_VERSION=v1.8.1
XCADDY_VERSION=v0.4.5
PEBBLE_VERSION=v2.10.3
LEGO_VERSION=v5.6.0 # the benchmark's peer (lab/build-lego.sh)
GO_ROOT=/usr/local/go # where install.sh puts Go when it is missing or too old

# Go first, on its own line: `go env GOPATH` below must find this go, and a
# `go env` in the same export that puts Go on PATH runs before PATH is set.
export PATH="$GO_ROOT/bin:$PATH"
if command -v go >/dev/null 2>&1; then
	GOBIN_DIR="$(go env GOBIN)"
	[ -n "$GOBIN_DIR" ] || GOBIN_DIR="$(go env GOPATH)/bin"
	export PATH="$PATH:$GOBIN_DIR" # xcaddy, pebble
fi
