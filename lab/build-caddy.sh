#!/usr/bin/env bash
# Builds Caddy the way users do, with xcaddy: this working tree's plugin and
# its acme-dns endpoint (the package acmednsserver, which xcaddy imports from
# the replaced module without a go get of its own) plus the DNS providers the tests and examples use (rfc2136, cloudflare,
# route53), at the versions lab/env.sh pins (Caddy's from go.mod), and any
# module you add.
#
#   lab/build-caddy.sh [--with MODULE[@VERSION][=REPLACEMENT]]... [--redis-storage] [--lab] [OUTPUT]
#
#   --with           one more module, as xcaddy takes it (repeatable), e.g.
#                    --with github.com/caddy-dns/powerdns@v1.0.2
#   --redis-storage  add the Redis storage of the cluster tests
#                    (github.com/pberkel/caddy-storage-redis@$REDIS_STORAGE_VERSION);
#   --lab            what the lab's tests, benchmark and demo build in beyond
#                    the defaults: the Redis storage and caddy-dns/powerdns
#                    ($POWERDNS_VERSION), the inner provider of the PowerDNS
#                    scenarios
#   OUTPUT           default ./caddy
set -euo pipefail
extra=()
out=./caddy
while [ $# -gt 0 ]; do
	case $1 in
	--with)
		[ $# -ge 2 ] || {
			echo "build-caddy.sh: --with needs a module" >&2
			exit 2
		}
		extra+=(--with "$2")
		shift 2
		;;
	--with=*)
		extra+=(--with "${1#--with=}")
		shift
		;;
	--redis-storage)
		redis=1
		shift
		;;
	--lab)
		redis=1
		powerdns=1
		shift
		;;
	-*)
		echo "usage: lab/build-caddy.sh [--with MODULE[@VERSION][=REPLACEMENT]]... [--redis-storage] [--lab] [OUTPUT]" >&2
		exit 2
		;;
	*)
		out=$1
		shift
		;;
	esac
done
out="$(realpath -m "$out")"
# shellcheck source=lab/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ "${powerdns:-0}" = 1 ]; then
	extra+=(--with "github.com/caddy-dns/powerdns@$POWERDNS_VERSION")
fi
if [ "${redis:-0}" = 1 ]; then
	extra+=(--with "github.com/pberkel/caddy-storage-redis@$REDIS_STORAGE_VERSION")
fi
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
	--with "github.com/acme-alias/caddy-dns-alias/acmednsserver" \
	--with "github.com/caddy-dns/rfc2136@$RFC2136_VERSION" \
	--with "github.com/caddy-dns/cloudflare@$CLOUDFLARE_VERSION" \
	--with "github.com/caddy-dns/route53@$ROUTE53_VERSION" \
	"${extra[@]}"
