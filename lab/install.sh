#!/usr/bin/env bash
# Installs everything the lab needs (idempotent). Run as root on Debian 12.
#   - Go: the release go.mod names (1.26.x), in /usr/local/go: a
#     prerequisite, checked here (Debian's golang package is too old)
#   - Debian: bind9 (named), bind9-utils (named-checkconf, tsig-keygen),
#     bind9-dnsutils (dig, nsupdate), unbound, redis-server (with
#     redis-tools: redis-cli), pdns-server with pdns-backend-sqlite3 and
#     sqlite3 (the lab runs its own pdns_server; the deployment guide's
#     PowerDNS policy test), systemd (its unit loader, systemd --test, for the
#     guide's drop-in merged into Caddy's packaged unit;
#     Debian has it unless a container image left it out), openssl, iproute2
#     (ip netns), curl
#   - moto (moto_server, Route53's API) is Python, not in Debian: checked,
#     not installed (pip install 'moto[server]')
#   - Go tools: pebble and xcaddy at the versions of lab/env.sh (into
#     $(go env GOPATH)/bin)
# The host's services are left as they were: nothing is stopped, disabled
# or killed. A package this script installs is not started by its install
# (policy-rc.d, for the install only); Debian enables it for the next boot
# as it does for any install. The lab starts its own instances in a network
# namespace of its own (lab/lab.sh), so a host's BIND, Unbound or Redis, on
# any port, is no concern of it.
set -euo pipefail

# shellcheck source=lab/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export DEBIAN_FRONTEND=noninteractive

log() { echo "install.sh: $*" >&2; }

# --- Go (a prerequisite) -------------------------------------------------
# go_too_old HAVE WANT: true if Go version HAVE (e.g. 1.26.8) is below WANT
go_too_old() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | sed -n 1p)" = "$1" ]; }
go_missing() {
	log "$1"
	log "this module needs Go $GO_VERSION or newer (go.mod), in $GO_ROOT. As root:"
	log "  curl -fsSLO https://go.dev/dl/go$GO_VERSION.linux-amd64.tar.gz"
	log "  rm -rf $GO_ROOT && tar -C ${GO_ROOT%/go} -xzf go$GO_VERSION.linux-amd64.tar.gz"
	exit 1
}
if ! command -v go >/dev/null 2>&1; then
	go_missing "go not found (looked in $GO_ROOT/bin and PATH)"
fi
have_go="$(go env GOVERSION)"
have_go="${have_go#go}"
if go_too_old "$have_go" "$GO_VERSION"; then
	go_missing "go $have_go is too old"
fi

if [ "$(id -u)" != 0 ]; then
	log "must run as root"
	exit 1
fi

# --- Debian packages -------------------------------------------------------
need_pkgs=()
for p in bind9 bind9-utils bind9-dnsutils unbound redis-server redis-tools pdns-server pdns-backend-sqlite3 sqlite3 systemd openssl iproute2 curl ca-certificates; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		need_pkgs+=("$p")
	fi
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	# Keep the package scripts from starting the services they install: a
	# host that had no BIND, Unbound or Redis should not get one running.
	# policy-rc.d exit 101 = "action forbidden" (systemd's
	# deb-systemd-invoke honours it too); one already there is left alone.
	created_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
	# apt lists may be missing on a fresh machine
	if ! apt-get install -y --no-install-recommends "${need_pkgs[@]}"; then
		apt-get update
		apt-get install -y --no-install-recommends "${need_pkgs[@]}"
	fi
	if [ "$created_policy" = 1 ]; then
		rm -f /usr/sbin/policy-rc.d
		created_policy=0
	fi
else
	log "Debian packages already installed"
fi

# --- Go tools --------------------------------------------------------------
gobin="$GOBIN_DIR" # lab/env.sh

go_tool() { # name module version
	local name=$1 mod=$2 ver=$3 have
	if [ -x "$gobin/$name" ]; then
		have=$(go version -m "$gobin/$name" 2>/dev/null | awk '$1 == "mod" && !seen { print $3; seen = 1 }')
		if [ "$have" = "$ver" ]; then
			log "$name $ver already installed"
			return
		fi
	fi
	log "go install $mod@$ver"
	# Outside any module so the project's go.mod is not touched.
	(cd / && GOFLAGS=-mod=mod go install "$mod@$ver")
}
go_tool pebble github.com/letsencrypt/pebble/v2/cmd/pebble "$PEBBLE_VERSION"
go_tool xcaddy github.com/caddyserver/xcaddy/cmd/xcaddy "$XCADDY_VERSION"

for b in named named-checkconf named-checkzone tsig-keygen nsupdate dig unbound unbound-checkconf redis-server redis-cli pdns_server pdnsutil sqlite3 /lib/systemd/systemd setpriv openssl ip curl; do
	command -v "$b" >/dev/null 2>&1 || { log "missing after install: $b"; exit 1; }
done
command -v moto_server >/dev/null 2>&1 ||
	log "moto_server not found (pip install 'moto[server]'; not in Debian): the lab runs without Route53's API, and its Route53 tests fail"
log "ok (pebble and xcaddy in $gobin)"
