#!/usr/bin/env bash
# Builds Caddy the way users do, with xcaddy: this working tree's plugin plus
# the DNS providers the tests and examples use and the Redis storage of the
# cluster tests, at the versions lab/env.sh pins (Caddy's from go.mod).
#   lab/build-caddy.sh [OUTPUT]   (default: ./caddy)
set -euo pipefail
out="$(realpath -m "${1:-./caddy}")"
# shellcheck source=lab/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# xcaddy runs `go get` on the plugin even though it is replaced by this
# directory. For a module that is not published, a proxy that answers 404
# makes go fall back to the replacement; one that answers 403 (as some
# mirrors do) stops the build. "<proxy>|off" falls back on any error.
proxy="$(go env GOPROXY)"
export GOPROXY="${proxy%%[,|]*}|off"
command -v xcaddy >/dev/null || go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
cd "$(mktemp -d)"
xcaddy build "$CADDY_VERSION" --output "$out" \
	--with "github.com/acme-alias/caddy-dns-alias=$CDA_ROOT" \
	--with "github.com/caddy-dns/rfc2136@$RFC2136_VERSION" \
	--with "github.com/caddy-dns/cloudflare@$CLOUDFLARE_VERSION" \
	--with "github.com/caddy-dns/route53@$ROUTE53_VERSION" \
	--with "github.com/caddy-dns/powerdns@$POWERDNS_VERSION" \
	--with "github.com/pberkel/caddy-storage-redis@$REDIS_STORAGE_VERSION"
