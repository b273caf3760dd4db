#!/usr/bin/env bash
# Builds Caddy the way users do, with xcaddy: this working tree's plugin plus
# the DNS providers the tests and examples use.
#   lab/build-caddy.sh [OUTPUT]   (default: ./caddy)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-./caddy}")"
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
# The checksum database does not answer for some caddy-dns and libdns modules.
export GONOSUMDB="${GONOSUMDB:-github.com/caddy-dns/*,github.com/libdns/*}"
# xcaddy runs `go get` on the plugin even though it is replaced by this
# directory; an unpublished module path must then fall back to the
# replacement instead of failing on the registry's refusal.
proxy="$(go env GOPROXY)"
export GOPROXY="${proxy%%[,|]*}|off"
command -v xcaddy >/dev/null || go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
cd "$(mktemp -d)"
xcaddy build v2.11.9 --output "$out" \
	--with "github.com/acme-alias/caddy-dns-alias=$root" \
	--with github.com/caddy-dns/rfc2136@v1.0.0 \
	--with github.com/caddy-dns/cloudflare@v0.2.4 \
	--with github.com/caddy-dns/route53@v1.6.2
