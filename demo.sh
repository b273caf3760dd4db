#!/usr/bin/env bash
# Builds Caddy with this plugin, starts the local DNS + ACME lab (BIND,
# Unbound, Redis, Pebble on loopback, in a network namespace of its own),
# publishes one CNAME delegation the way a domain owner would, and serves a
# page over a certificate Caddy just obtained through it. Run as root on
# Debian 12. Nothing of it listens in the host's namespace, and it stops no
# process it did not start.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=lab/env.sh
. lab/env.sh
LAB_DIR="$(realpath -m "${LAB_DIR:-$PWD/.lab}")"
export LAB_DIR
admin=127.0.0.1:12019

bash lab/install.sh
bash lab/lab.sh up
# shellcheck disable=SC1091
. "$LAB_DIR/lab.env"
inside() { bash lab/lab.sh exec "$@"; }

demo="$LAB_DIR/demo"
mkdir -p "$demo"
# the demo's own Caddy of an earlier run, if it still runs
if [ -f "$demo/caddy.pid" ]; then
	old=$(cat "$demo/caddy.pid")
	if [ "$(cat "/proc/$old/comm" 2>/dev/null)" = caddy ] && [ "$(readlink "/proc/$old/exe")" = "$demo/caddy" ]; then
		kill "$old"
		while [ -d "/proc/$old" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$old/status" 2>/dev/null; do sleep 0.2; done
	fi
fi
rm -rf "$demo/storage"

if [ -n "${CADDY_BIN:-}" ]; then
	cp "$CADDY_BIN" "$demo/caddy" # a binary lab/build-caddy.sh made from this tree
else
	echo "== building Caddy with xcaddy (a few minutes)"
	bash lab/build-caddy.sh "$demo/caddy"
fi

domain=demo.example.com
record="_acme-challenge.$domain. 60 IN CNAME _acme-challenge.$domain.$ALIAS_ZONE."
echo "== publishing the delegation in the production zone example.com:"
echo "   $record"
printf 'server %s %s\nzone example.com\nupdate add %s\nsend\n' "${AUTH_A%:*}" "${AUTH_A#*:}" "$record" |
	inside nsupdate -k "$ADMIN_KEY_FILE"

sed -e "s|@STORAGE@|$demo/storage|" -e "s|@PEBBLE_DIR@|$PEBBLE_DIR|" -e "s|@PEBBLE_CA@|$PEBBLE_CA_PEM|" \
	-e "s|@DOMAIN@|$domain|" -e "s|@ZONE@|$ALIAS_ZONE|g" -e "s|@KEY_NAME@|$CADDY_KEY_NAME|" \
	-e "s|@SERVER@|$AUTH_A|" -e "s|@RESOLVER@|$RESOLVER|g" -e "s|@ADMIN@|$admin|" >"$demo/Caddyfile" <<'CADDYFILE'
{
	admin @ADMIN@
	storage file_system @STORAGE@
	email demo@example.com
	acme_ca @PEBBLE_DIR@
	acme_ca_root @PEBBLE_CA@
	http_port 18080
	https_port 18443
}

@DOMAIN@ {
	tls {
		dns alias _acme-challenge.{domain}.@ZONE@ {
			provider rfc2136 {
				key_name @KEY_NAME@
				key {env.TSIG_SECRET}
				key_alg hmac-sha256
				server @SERVER@
			}
			zone @ZONE@
			resolvers @RESOLVER@
			private_nameservers
		}
		resolvers @RESOLVER@
	}
	respond "Hello from Caddy: this certificate came through CNAME delegation to @ZONE@"
}
CADDYFILE

echo "== starting Caddy in the lab's namespace $LAB_NETNS (config: $demo/Caddyfile, log: $demo/caddy.log)"
# lab.sh exec execs (ip netns exec, env, caddy): $! is Caddy's pid
TSIG_SECRET="$CADDY_KEY_SECRET" nohup bash lab/lab.sh exec "$demo/caddy" run --config "$demo/Caddyfile" >"$demo/caddy.log" 2>&1 &
echo $! >"$demo/caddy.pid"

# Pebble signs with a root that changes at every Pebble start: fetch it.
inside curl -fsS --cacert "$PEBBLE_CA_PEM" "$PEBBLE_MGMT/roots/0" >"$demo/pebble-root.pem"
curl_cmd=(curl -sS --resolve "$domain:18443:127.0.0.1" --cacert "$demo/pebble-root.pem" "https://$domain:18443/")
for _ in $(seq 1 120); do
	if out=$(inside "${curl_cmd[@]}" 2>/dev/null); then
		echo "== $domain is served over a certificate issued through the delegation:"
		echo "   \$ lab/lab.sh exec ${curl_cmd[*]}"
		echo "   $out"
		echo
		check_cmd=(curl -sS "$admin/dns-alias/check?domain=$domain")
		echo "== Caddy's admin API listens on $admin (in the lab's namespace); it checks the delegation as the running config sees it:"
		echo "   \$ lab/lab.sh exec curl -sS '$admin/dns-alias/check?domain=$domain'"
		report=$(inside "${check_cmd[@]}")
		echo "   $report"
		[[ $report == *'"ok":true'* ]] || {
			echo "the admin API's check does not report the delegation ok" >&2
			exit 1
		}
		echo
		echo "Caddy keeps running (pid $(cat "$demo/caddy.pid")). Stop it and the lab with:"
		echo "   kill \$(cat $demo/caddy.pid); lab/lab.sh down"
		echo "Restarting the lab (down, then up) rebuilds its zones without this CNAME: the check then"
		echo "reports FAIL (no CNAME) for $domain until ./demo.sh runs again and publishes it."
		exit 0
	fi
	sleep 0.5
done
echo "no certificate after 60 s; Caddy's log:" >&2
tail -n 30 "$demo/caddy.log" >&2
exit 1
