#!/usr/bin/env bash
# Installs everything the lab needs (idempotent). Run as root on Debian 12.
#   - Debian: bind9 (named), bind9-utils (named-checkconf, tsig-keygen),
#     bind9-dnsutils (dig, nsupdate), unbound, openssl, iproute2, curl
#   - Go: pebble v2.10.3, xcaddy v0.4.5 (into $(go env GOPATH)/bin)
# The Debian services bind9/named and unbound are stopped and disabled
# afterwards: the lab starts its own instances (lab/lab.sh).
set -euo pipefail

export PATH="/usr/local/go/bin:$PATH"
export GONOSUMDB="${GONOSUMDB:-github.com/caddy-dns/*,github.com/libdns/*}"
export DEBIAN_FRONTEND=noninteractive

PEBBLE_VERSION=v2.10.3
XCADDY_VERSION=v0.4.5

log() { echo "install.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "must run as root"
	exit 1
fi

# --- Debian packages -------------------------------------------------------
need_pkgs=()
for p in bind9 bind9-utils bind9-dnsutils unbound openssl iproute2 curl ca-certificates; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		need_pkgs+=("$p")
	fi
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	# Keep the package scripts from starting the system services: they would
	# grab port 53 / 953 / 8953. policy-rc.d exit 101 = "action forbidden".
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

# --- stop and disable the system services ---------------------------------
have_systemd=0
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	have_systemd=1
fi
for svc in named bind9 unbound unbound-resolvconf; do
	if [ "$have_systemd" = 1 ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	else
		if [ -x "/etc/init.d/$svc" ]; then
			service "$svc" stop >/dev/null 2>&1 || true
			update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	fi
done
# Anything still running from the system packages (not ours: ours use -c $LAB_DIR/...)
for pidf in /run/named/named.pid /run/unbound.pid /var/run/named/named.pid /var/run/unbound.pid; do
	if [ -s "$pidf" ]; then
		pid=$(cat "$pidf")
		if kill -0 "$pid" 2>/dev/null; then
			log "stopping system daemon pid $pid ($pidf)"
			kill "$pid" 2>/dev/null || true
		fi
	fi
done

# --- Go tools --------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	log "go not found (expected /usr/local/go/bin/go)"
	exit 1
fi
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"

go_tool() { # name module version
	local name=$1 mod=$2 ver=$3 have
	if [ -x "$gobin/$name" ]; then
		have=$(go version -m "$gobin/$name" 2>/dev/null | awk '$1=="mod"{print $3; exit}')
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

for b in named named-checkconf named-checkzone tsig-keygen nsupdate dig unbound unbound-checkconf openssl ip curl; do
	command -v "$b" >/dev/null 2>&1 || { log "missing after install: $b"; exit 1; }
done
log "ok (pebble and xcaddy in $gobin)"
