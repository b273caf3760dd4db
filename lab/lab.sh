#!/usr/bin/env bash
# The project's DNS/ACME lab, loopback only, in a network namespace of its
# own. See lab/README.md.
#
#   lab/lab.sh up            create the lab's namespace if needed and start
#                            everything that is not running (idempotent)
#   lab/lab.sh down          stop everything; remove the namespace if up made
#                            it and nothing else runs in it
#   lab/lab.sh down --purge  same, and delete $LAB_DIR (keys included)
#   lab/lab.sh status        what runs
#   lab/lab.sh exec CMD...   run CMD inside the lab's namespace (GOPROXY=off:
#                            no module proxy there; build outside first)
#   lab/lab.sh netns         print the namespace's name
#
# Knobs (environment): LAB_DIR (the checkout's .lab), LAB_NETNS (the
# namespace the caller is in, if it is a named one; else cdalab-<hash of
# LAB_DIR>), UNBOUND_PORT (15353), REDIS_PORT (16379), PEBBLE_PORT (14000),
# PEBBLE_MGMT_PORT (15000), PEBBLE_RETRY_AFTER (unset: Pebble's sample
# config, authz 3 s / order 5 s; 0 for fast), PEBBLE_CERT_VALIDITY (seconds;
# unset: Pebble's default 90 days), MOTO_PORT (15005: moto's Route53 API).
# up installs nothing: run lab/install.sh first. Nothing of the lab listens
# in the caller's namespace, and the lab stops only processes it started
# (their pid files in $LAB_DIR, checked to run in the lab's namespace).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_DIR="$(realpath -m "${LAB_DIR:-$HERE/../.lab}")"
UNBOUND_PORT="${UNBOUND_PORT:-15353}"
REDIS_PORT="${REDIS_PORT:-16379}"
PEBBLE_PORT="${PEBBLE_PORT:-14000}"
PEBBLE_MGMT_PORT="${PEBBLE_MGMT_PORT:-15000}"
# shellcheck source=lab/env.sh
. "$HERE/env.sh" # Go and its bin directory (pebble) on PATH
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "lab.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# ---------------------------------------------------------------------------
# the namespace

# current_netns: the name of the named network namespace this process is
# in, or nothing (the host's, or an unnamed one)
current_netns() { ip netns identify "$$" 2>/dev/null || true; }
if [ -z "${LAB_NETNS:-}" ]; then
	# A caller inside a named namespace (a test the lab suite runs there,
	# or `ip netns exec NAME lab/lab.sh up`) means that one.
	LAB_NETNS=$(current_netns)
	[ -n "$LAB_NETNS" ] || LAB_NETNS="cdalab-$(printf %s "$LAB_DIR" | sha256sum | cut -c1-10)"
fi
export LAB_DIR LAB_NETNS
# Beside $LAB_DIR (down --purge deletes that): present when up created the
# namespace, so that down removes only a namespace of its own.
NETNS_MARK="${LAB_DIR%/}.netns"

netns_exists() { [ -e "/run/netns/$LAB_NETNS" ]; }
in_lab_netns() { [ "$(current_netns)" = "$LAB_NETNS" ]; }

# From outside its namespace, lab.sh enters it (creating it for up) and
# runs the command there; everything below the dispatch runs inside.
if ! in_lab_netns; then
	cmd=${1:-}
	case $cmd in
	up)
		[ "$(id -u)" = 0 ] || die "must run as root (creates the network namespace $LAB_NETNS)"
		if ! netns_exists; then
			log "creating network namespace $LAB_NETNS"
			ip netns add "$LAB_NETNS"
			mkdir -p "$(dirname "$LAB_DIR")"
			echo "$LAB_NETNS" >"$NETNS_MARK"
		fi
		ip netns exec "$LAB_NETNS" ip link set lo up
		exec ip netns exec "$LAB_NETNS" bash "$0" "$@"
		;;
	down)
		if netns_exists; then
			ip netns exec "$LAB_NETNS" bash "$0" "$@"
			if [ "$(cat "$NETNS_MARK" 2>/dev/null)" = "$LAB_NETNS" ]; then
				pids=$(ip netns pids "$LAB_NETNS")
				if [ -z "$pids" ]; then
					log "removing network namespace $LAB_NETNS"
					ip netns del "$LAB_NETNS"
					rm -f "$NETNS_MARK"
				else
					log "leaving network namespace $LAB_NETNS: processes the lab did not start run in it ($(echo $pids))"
				fi
			fi
		else
			log "no network namespace $LAB_NETNS: nothing runs"
			[ "${2:-}" = --purge ] && rm -rf "$LAB_DIR"
			rm -f "$NETNS_MARK" "$LAB_DIR/lab.env"
		fi
		exit 0
		;;
	status)
		if ! netns_exists; then
			echo "netns      $LAB_NETNS absent: the lab is down"
			echo "LAB_DIR    $LAB_DIR"
			exit 1
		fi
		exec ip netns exec "$LAB_NETNS" bash "$0" "$@"
		;;
	exec)
		shift
		netns_exists || die "no network namespace $LAB_NETNS: lab/lab.sh up first"
		exec ip netns exec "$LAB_NETNS" env GOPROXY=off "$@"
		;;
	netns)
		echo "$LAB_NETNS"
		exit 0
		;;
	esac
fi

ADDR_A=127.0.0.2
ADDR_B=127.0.0.3
# acme-dns: no server of the lab listens here; tests start their stand-in
# acme-dns (internal/acmednstest) on $ADDR_ACMEDNS:53, and Unbound has a stub
# zone for $ACMEDNS_ZONE pointing at it.
ADDR_ACMEDNS=127.0.0.4
ACMEDNS_ZONE=acme-dns.example
ALIAS_ZONE=validation.example.org
ALIAS_ZONE2=alias2.example
# PowerDNS Authoritative (the lab's own pdns_server, sqlite backend): serves
# PDNS_ZONE on $ADDR_PDNS:53, delegated from "example" like the BIND zones,
# and its HTTP API on $ADDR_PDNS:$PDNS_API_PORT with the key
# $LAB_DIR/keys/pdns-api.secret.
ADDR_PDNS=127.0.0.5
PDNS_ZONE=pdns.example
PDNS_API_PORT=8081
# An alias zone with two nameservers: ns1, BIND A, and ns2 at
# $ADDR_SILENT, where no server of the lab listens; a test binds a
# nameserver there that reads every query and answers none (the acme-dns
# endpoint's bounded /update). Unbound's stub zone names BIND A only, so
# that Pebble and clients resolve it at once.
ADDR_SILENT=127.0.0.6
SILENT_NS_ZONE=silentns.example
# the loopback addresses up adds (labelled) and down removes
LAB_ADDRS=("$ADDR_A" "$ADDR_B" "$ADDR_ACMEDNS" "$ADDR_PDNS" "$ADDR_SILENT")
# moto's Route53 API (no DNS): a hosted zone named like the alias zone, so
# that a challenge written there passes the delegation check that BIND's
# copy answers, and is then never served (see start_moto).
MOTO_PORT="${MOTO_PORT:-15005}"
ROUTE53_ZONE=$ALIAS_ZONE
# libdns's provider conformance suite (xcaddy_test/conformance) writes
# every record type into a zone of its own: a copy on BIND A (with
# check-integrity off: the suite's MX target has no address), one on
# PowerDNS and a hosted zone in moto. Nothing delegates to it.
CONFORMANCE_ZONE=libdnstest.example
# Zones served by each authoritative server. drift.example is on both.
ZONES_A=(example.com example.net example.org hop.example notours.example validation.example.org drift.example "$SILENT_NS_ZONE")
ZONES_B=(alias2.example drift.example)
# The top-level domains above the lab's zones, served by A as a registry
# would (SOA, NS, a delegation with glue for each lab zone below): without
# them Unbound asks the root servers, which no namespace of the lab can
# reach, and the CA-side CAA lookup of "com" ends in SERVFAIL.
TLDS=(com net org example)
# Zones the caddy keys may write (TXT only).
declare -A ALIAS_KEY=([validation.example.org]=caddy-key [alias2.example]=caddy-key-2 [$SILENT_NS_ZONE]=caddy-key)

# ---------------------------------------------------------------------------
# helpers

# pid_running PIDFILE COMM: true if the pid in PIDFILE is alive, is COMM and
# runs in the lab's namespace (a stale pid file whose number the host gave
# to its own named is not ours)
pid_running() {
	local f=$1 comm=$2 pid
	[ -s "$f" ] || return 1
	pid=$(tr -dc '0-9' <"$f")
	[ -n "$pid" ] || return 1
	[ -r "/proc/$pid/comm" ] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
	[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] || return 1
	# a zombie (exited, not yet reaped) does not count
	! grep -q '^State:[[:space:]]*[ZX]' "/proc/$pid/status" 2>/dev/null
}

# stop_pid PIDFILE COMM NAME
stop_pid() {
	local f=$1 comm=$2 name=$3 pid i
	if ! pid_running "$f" "$comm"; then
		rm -f "$f"
		return 0
	fi
	pid=$(tr -dc '0-9' <"$f")
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		[ -d "/proc/$pid" ] || break
		# a zombie child of ours counts as gone
		if grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then break; fi
		sleep 0.1
	done
	if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
		log "$name did not stop in 10 s, killing"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$f"
}

# wait_for DESCRIPTION SECONDS CMD...
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for i in $(seq 1 $((secs * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	log "timed out waiting for $what"
	return 1
}

tail_log() {
	local f=$1
	if [ -f "$f" ]; then
		echo "----- tail of $f -----" >&2
		tail -n 40 "$f" >&2
		echo "-----" >&2
	fi
}

find_pebble() {
	local p
	p=$(command -v pebble 2>/dev/null || true) # lab/env.sh put Go's bin directory on PATH
	[ -z "$p" ] && [ -x "$HOME/go/bin/pebble" ] && p="$HOME/go/bin/pebble"
	[ -z "$p" ] && [ -x /root/go/bin/pebble ] && p=/root/go/bin/pebble
	echo "$p"
}

tools_present() {
	local b
	for b in named named-checkconf dig nsupdate unbound unbound-checkconf redis-server redis-cli openssl ip curl flock sha256sum pdns_server pdnsutil sqlite3; do
		command -v "$b" >/dev/null 2>&1 || return 1
	done
	[ -n "$(find_pebble)" ]
}

# With pipefail, `ip ... | grep -q` fails at random: grep -q exits at its
# first match, and ip, still writing, dies of SIGPIPE, which then is the
# pipeline's status. So every command's output is taken whole first, and
# only then searched.

# lo_addrs [LABEL]: the `ip -4 -o addr` lines of lo (only LABEL's, if given)
lo_addrs() {
	if [ $# -gt 0 ]; then
		ip -4 -o addr show dev lo label "$1"
	else
		ip -4 -o addr show dev lo
	fi
}
has_addr() {
	local out
	out=$(lo_addrs) || die "ip addr show dev lo failed"
	[[ $out == *" inet $1/"* ]]
}
# Addresses the lab adds carry this label, so down removes exactly those.
ADDR_LABEL=lo:cdalab
our_addr() {
	local out
	out=$(lo_addrs "$ADDR_LABEL") || die "ip addr show dev lo label $ADDR_LABEL failed"
	[[ $out == *" inet $1/32 "* ]]
}

# answers STATUS CMD...: true if CMD's output (a dig) contains "status: STATUS"
answers() {
	local want=$1 out
	shift
	out=$("$@" 2>&1) || return 1
	[[ $out == *"status: $want"* ]]
}

# The lock lives beside $LAB_DIR so that down --purge does not delete it
# under a waiting lab.sh.
lock() {
	exec 9>"${LAB_DIR%/}.lock"
	flock -w 300 9 || die "could not lock ${LAB_DIR%/}.lock"
}

# ---------------------------------------------------------------------------
# keys

# make_key NAME: $LAB_DIR/keys/NAME.key (named.conf syntax, usable by nsupdate -k)
make_key() (
	name=$1
	f="$LAB_DIR/keys/$1.key"
	[ -s "$f" ] && exit 0
	secret=$(openssl rand -base64 32)
	umask 077
	cat >"$f.tmp" <<EOF
key "$name" {
	algorithm hmac-sha256;
	secret "$secret";
};
EOF
	mv "$f.tmp" "$f"
)

key_secret() { sed -n 's/^[[:space:]]*secret "\(.*\)";/\1/p' "$LAB_DIR/keys/$1.key"; }

# ---------------------------------------------------------------------------
# zones

# write_zone FILE ZONE NS_SPEC... where NS_SPEC is label=addr (in-zone NS with glue)
write_zone() {
	local file=$1 zone=$2
	shift 2
	local first=${1%%=*}
	{
		echo "\$ORIGIN $zone."
		echo "\$TTL 60"
		# serial refresh retry expire minimum(negative TTL)
		echo "@ IN SOA $first.$zone. hostmaster.$zone. ( 1 30 10 3600 1 )"
		local spec
		for spec in "$@"; do echo "@ IN NS ${spec%%=*}"; done
		for spec in "$@"; do echo "${spec%%=*} IN A ${spec#*=}"; done
		if [[ $zone == *.* ]]; then
			echo "@ IN A 127.0.0.1"
			echo "www IN A 127.0.0.1"
		else
			write_delegations "$zone"
		fi
		if [ "$zone" = example.org ]; then
			# delegation of the alias zone, with glue
			echo "validation IN NS ns1.validation"
			echo "ns1.validation IN A $ADDR_A"
		fi
	} >"$file"
}

# write_delegations TLD: NS and glue for every lab zone directly below TLD
write_delegations() {
	local tld=$1 z spec label seen=" "
	for z in "${ZONES_A[@]}" "${ZONES_B[@]}" "$ACMEDNS_ZONE" "$PDNS_ZONE"; do
		[ "${z#*.}" = "$tld" ] || continue
		case $seen in *" $z "*) continue ;; esac
		seen="$seen$z "
		label=${z%%.*}
		if [ "$z" = "$ACMEDNS_ZONE" ]; then
			echo "$label IN NS ns1.$label"
			echo "ns1.$label IN A $ADDR_ACMEDNS"
			continue
		fi
		# shellcheck disable=SC2046
		for spec in $(zone_ns_specs "$z"); do
			echo "$label IN NS ${spec%%=*}.$label"
			echo "${spec%%=*}.$label IN A ${spec#*=}"
		done
	done
}

zone_ns_specs() { # ZONE -> NS specs
	case $1 in
	drift.example) echo "ns1=$ADDR_A ns2=$ADDR_B" ;;
	alias2.example) echo "ns1=$ADDR_B" ;;
	"$SILENT_NS_ZONE") echo "ns1=$ADDR_A ns2=$ADDR_SILENT" ;;
	"$PDNS_ZONE") echo "ns1=$ADDR_PDNS" ;;
	*) echo "ns1=$ADDR_A" ;;
	esac
}

# write_named INSTANCE ADDR ZONES...
write_named() {
	local inst=$1 addr=$2 d="$LAB_DIR/$1"
	shift 2
	mkdir -p "$d/zones"
	rm -f "$d"/zones/* "$d"/named.log "$d"/queries.log
	local z
	{
		cat <<EOF
// generated by lab/lab.sh; regenerated (with fresh zones) whenever this instance starts
include "$LAB_DIR/keys/caddy-key.key";
include "$LAB_DIR/keys/caddy-key-2.key";
include "$LAB_DIR/keys/lab-admin.key";

options {
	directory "$d";
	pid-file "$d/named.pid";
	session-keyfile "$d/session.key";
	managed-keys-directory "$d";
	listen-on port 53 { $addr; };
	listen-on-v6 { none; };
	recursion no;
	allow-recursion { none; };
	allow-query { 127.0.0.0/8; };
	allow-transfer { 127.0.0.0/8; };
	notify no;
	dnssec-validation no;
	minimal-responses no;
	max-journal-size 10M;
	// every query is logged to queries.log: the benchmarks count them
	querylog yes;
};

// no rndc channel (the default would read /etc/bind/rndc.key and take 127.0.0.1:953)
controls { };

logging {
	channel lab_file {
		file "$d/named.log";
		severity info;
		print-time yes;
		print-category yes;
		print-severity yes;
	};
	category default { lab_file; };
	category update { lab_file; };
	category update-security { lab_file; };
	category security { lab_file; };
	category xfer-out { lab_file; };
	category lame-servers { null; };
	channel lab_queries {
		file "$d/queries.log";
		print-time yes;
	};
	category queries { lab_queries; };
};
EOF
		for z in "$@"; do
			# shellcheck disable=SC2046
			write_zone "$d/zones/$z.zone" "$z" $(zone_ns_specs "$z")
			echo
			echo "zone \"$z\" {"
			echo "	type primary;"
			echo "	file \"$d/zones/$z.zone\";"
			echo "	journal \"$d/zones/$z.zone.jnl\";"
			[ "$z" = "$CONFORMANCE_ZONE" ] && echo "	check-integrity no;"
			echo "	update-policy {"
			if [ -n "${ALIAS_KEY[$z]:-}" ]; then
				echo "		grant ${ALIAS_KEY[$z]} zonesub TXT;"
			fi
			echo "		grant lab-admin zonesub ANY;"
			echo "	};"
			echo "};"
		done
	} >"$d/named.conf"
}

start_named() { # INSTANCE ADDR ZONES...
	local inst=$1 addr=$2 d="$LAB_DIR/$1"
	if pid_running "$d/named.pid" named; then
		return 0
	fi
	write_named "$@"
	if ! named-checkconf -z "$d/named.conf" >"$d/checkconf.out" 2>&1; then
		cat "$d/checkconf.out" >&2
		die "named-checkconf failed for instance $inst"
	fi
	log "starting named $inst on $addr:53"
	if ! named -4 -c "$d/named.conf" >"$d/named.stderr" 2>&1 9>&-; then
		cat "$d/named.stderr" >&2
		tail_log "$d/named.log"
		die "named $inst failed to start"
	fi
	if ! wait_for "named $inst pid file" 10 pid_running "$d/named.pid" named; then
		cat "$d/named.stderr" >&2
		tail_log "$d/named.log"
		die "named $inst did not come up"
	fi
}

# ---------------------------------------------------------------------------
# unbound

# write_unbound [FILE]: the config (default $LAB_DIR/unbound/unbound.conf)
write_unbound() {
	local d="$LAB_DIR/unbound" z
	local out=${1:-$d/unbound.conf}
	mkdir -p "$d"
	{
		cat <<EOF
# generated by lab/lab.sh
server:
	interface: 127.0.0.1@$UNBOUND_PORT
	port: $UNBOUND_PORT
	do-ip4: yes
	do-ip6: no
	do-udp: yes
	do-tcp: yes
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	do-daemonize: yes
	chroot: ""
	username: ""
	directory: "$d"
	pidfile: "$d/unbound.pid"
	use-syslog: no
	logfile: "$d/unbound.log"
	log-time-ascii: no
	verbosity: 1
	log-queries: yes
	log-replies: yes
	log-servfail: yes
	num-threads: 1
	module-config: "iterator"
	cache-min-ttl: 0
	cache-max-ttl: 5
	cache-max-negative-ttl: 1
	infra-host-ttl: 5
	prefetch: no
	minimal-responses: no
	qname-minimisation: no
	harden-referral-path: no
	val-log-level: 0

remote-control:
	control-enable: yes
	control-interface: "$d/control.sock"
EOF
		# stub-zone for every lab zone (longest first is not required by unbound)
		local all=("${ZONES_A[@]}" "${ZONES_B[@]}" "${TLDS[@]}")
		local seen=" "
		for z in "${all[@]}"; do
			case $seen in *" $z "*) continue ;; esac
			seen="$seen$z "
			echo
			echo "stub-zone:"
			echo "	name: \"$z\""
			case " ${ZONES_A[*]} ${TLDS[*]} " in *" $z "*) echo "	stub-addr: $ADDR_A@53" ;; esac
			case " ${ZONES_B[*]} " in *" $z "*) echo "	stub-addr: $ADDR_B@53" ;; esac
			echo "	stub-prime: no"
			echo "	stub-first: no"
		done
		# the tests' stand-in acme-dns server (only while a test runs it)
		echo
		echo "stub-zone:"
		echo "	name: \"$ACMEDNS_ZONE\""
		echo "	stub-addr: $ADDR_ACMEDNS@53"
		echo "	stub-prime: no"
		echo "	stub-first: no"
		echo
		echo "stub-zone:"
		echo "	name: \"$PDNS_ZONE\""
		echo "	stub-addr: $ADDR_PDNS@53"
		echo "	stub-prime: no"
		echo "	stub-first: no"
	} >"$out"
}

start_unbound() {
	local d="$LAB_DIR/unbound"
	if pid_running "$d/unbound.pid" unbound; then
		# restart it alone when its config changed (e.g. a new stub zone)
		write_unbound "$d/unbound.conf.new"
		if cmp -s "$d/unbound.conf.new" "$d/unbound.conf"; then
			rm -f "$d/unbound.conf.new"
			return 0
		fi
		rm -f "$d/unbound.conf.new"
		log "unbound.conf changed, restarting unbound"
		stop_pid "$d/unbound.pid" unbound unbound
	fi
	write_unbound
	if ! unbound-checkconf "$d/unbound.conf" >"$d/checkconf.out" 2>&1; then
		cat "$d/checkconf.out" >&2
		die "unbound-checkconf failed"
	fi
	: >"$d/unbound.log"
	log "starting unbound on 127.0.0.1:$UNBOUND_PORT"
	if ! unbound -c "$d/unbound.conf" >"$d/unbound.stderr" 2>&1 9>&-; then
		cat "$d/unbound.stderr" >&2
		tail_log "$d/unbound.log"
		die "unbound failed to start"
	fi
	if ! wait_for "unbound pid file" 10 pid_running "$d/unbound.pid" unbound; then
		cat "$d/unbound.stderr" >&2
		tail_log "$d/unbound.log"
		die "unbound did not come up"
	fi
}

# ---------------------------------------------------------------------------
# redis: the shared storage of the cluster tests (caddy-storage-redis)

write_redis() {
	local d="$LAB_DIR/redis"
	mkdir -p "$d"
	# Loopback only, no password (nothing but loopback reaches it); an
	# append-only file, so that a restart (lab.sh up after a SHUTDOWN or
	# a crash) keeps what Caddy stored, as an operator's Redis does.
	cat >"$d/redis.conf" <<EOF
# generated by lab/lab.sh
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile $d/redis.pid
logfile $d/redis.log
loglevel notice
dir $d
dbfilename dump.rdb
save ""
appendonly yes
appendfsync everysec
databases 1
EOF
}

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

start_redis() {
	local d="$LAB_DIR/redis"
	if pid_running "$d/redis.pid" redis-server; then
		return 0
	fi
	write_redis
	log "starting redis on 127.0.0.1:$REDIS_PORT"
	if ! redis-server "$d/redis.conf" >"$d/redis.stderr" 2>&1 9>&-; then
		cat "$d/redis.stderr" >&2
		tail_log "$d/redis.log"
		die "redis failed to start"
	fi
	if ! wait_for "redis pid file" 10 pid_running "$d/redis.pid" redis-server; then
		cat "$d/redis.stderr" >&2
		tail_log "$d/redis.log"
		die "redis did not come up"
	fi
}

# ---------------------------------------------------------------------------
# pebble

make_pebble_certs() {
	local d="$LAB_DIR/pebble"
	mkdir -p "$d"
	[ -s "$d/ca.pem" ] && [ -s "$d/cert.pem" ] && [ -s "$d/key.pem" ] && return 0
	log "generating the CA and certificate for Pebble's HTTPS"
	(
		cd "$d"
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout ca.key -out ca.pem -days 3650 -subj "/CN=caddy-dns-alias lab CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout key.pem -out cert.csr -subj "/CN=localhost" 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=serverAuth" \
			"subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" >cert.ext
		openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out cert.pem -days 3650 -extfile cert.ext 2>/dev/null
		rm -f cert.csr cert.ext
		chmod 644 ca.pem cert.pem
	)
}

# desired knob value: explicitly set in the environment, or what runs now, or the default
pebble_knobs() {
	local d="$LAB_DIR/pebble" ra cv
	local cur_ra="" cur_cv=""
	if [ -s "$d/knobs" ] && pid_running "$d/pebble.pid" pebble; then
		cur_ra=$(sed -n 's/^RETRY_AFTER=//p' "$d/knobs")
		cur_cv=$(sed -n 's/^CERT_VALIDITY=//p' "$d/knobs")
	fi
	if [ -n "${PEBBLE_RETRY_AFTER+x}" ]; then ra=$PEBBLE_RETRY_AFTER; else ra=${cur_ra:-default}; fi
	if [ -n "${PEBBLE_CERT_VALIDITY+x}" ]; then cv=$PEBBLE_CERT_VALIDITY; else cv=${cur_cv:-default}; fi
	[ -n "$ra" ] || ra=default
	[ -n "$cv" ] || cv=default
	printf 'RETRY_AFTER=%s\nCERT_VALIDITY=%s\nPORT=%s\nMGMT_PORT=%s\nDNS=127.0.0.1:%s\n' \
		"$ra" "$cv" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$UNBOUND_PORT"
}

write_pebble_config() {
	local d="$LAB_DIR/pebble" ra=$1 cv=$2 authz order profile
	if [ "$ra" = default ]; then
		# the values of Pebble's own sample config (test/config/pebble-config.json)
		authz=3
		order=5
	else
		case $ra in *[!0-9]*) die "PEBBLE_RETRY_AFTER must be a number of seconds" ;; esac
		authz=$ra
		order=$ra
	fi
	if [ "$cv" = default ]; then
		profile='"default": { "description": "lab default profile", "validityPeriod": 0 }'
	else
		case $cv in *[!0-9]*) die "PEBBLE_CERT_VALIDITY must be a number of seconds" ;; esac
		profile="\"default\": { \"description\": \"lab default profile\", \"validityPeriod\": $cv }"
	fi
	# pebble v2.10.3 cmd/pebble config struct; certificateValidityPeriod is
	# deprecated and ignored there, profiles.*.validityPeriod is what counts
	# (0 = the CA default, 7776000 s).
	cat >"$d/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$d/cert.pem",
    "privateKey": "$d/key.pem",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "domainBlocklist": ["blocked-domain.example"],
    "retryAfter": { "authz": $authz, "order": $order },
    "keyAlgorithm": "ecdsa",
    "profiles": { $profile }
  }
}
EOF
}

start_pebble() {
	local d="$LAB_DIR/pebble" bin want
	mkdir -p "$d"
	want=$(pebble_knobs)
	if pid_running "$d/pebble.pid" pebble; then
		if [ "$want" = "$(cat "$d/knobs" 2>/dev/null)" ]; then
			return 0
		fi
		log "pebble settings changed, restarting pebble"
		stop_pid "$d/pebble.pid" pebble pebble
	fi
	bin=$(find_pebble)
	[ -n "$bin" ] || die "pebble not found (run lab/install.sh)"
	make_pebble_certs
	local ra cv
	ra=$(echo "$want" | sed -n 's/^RETRY_AFTER=//p')
	cv=$(echo "$want" | sed -n 's/^CERT_VALIDITY=//p')
	write_pebble_config "$ra" "$cv"
	log "starting pebble on 127.0.0.1:$PEBBLE_PORT (management :$PEBBLE_MGMT_PORT), retryAfter=$ra, validity=$cv"
	# start in its own session so it survives the caller; PEBBLE_VA_ALWAYS_VALID
	# must not leak in from the caller's environment
	(
		unset PEBBLE_VA_ALWAYS_VALID
		cd "$d"
		PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
			setsid "$bin" -config "$d/pebble-config.json" -dnsserver "127.0.0.1:$UNBOUND_PORT" \
			</dev/null >>"$d/pebble.log" 2>&1 9>&- &
		echo $! >"$d/pebble.pid"
	)
	echo "$want" >"$d/knobs"
}

# ---------------------------------------------------------------------------
# PowerDNS Authoritative: an HTTP API provider that also serves DNS
# (caddy-dns/powerdns writes through its API; Unbound and Pebble resolve
# what it serves). The Debian service stays as install.sh left it: this is
# the lab's own pdns_server, with its config, database and socket in
# $LAB_DIR/pdns.

PDNS_SCHEMA=/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql

pdns_secret() { cat "$LAB_DIR/keys/pdns-api.secret"; }

write_pdns() {
	local d="$LAB_DIR/pdns"
	mkdir -p "$d"
	rm -f "$d/pdns.sqlite3" "$d/pdns.log"
	(
		umask 077 # the API key is in it
		cat >"$d/pdns.conf" <<EOF
# generated by lab/lab.sh; regenerated (with a fresh database) whenever it starts
launch=gsqlite3
gsqlite3-database=$d/pdns.sqlite3
local-address=$ADDR_PDNS
local-port=53
socket-dir=$d
daemon=no
guardian=no
disable-syslog=yes
loglevel=5
# every API request is logged: the benchmarks count them
webserver=yes
webserver-address=$ADDR_PDNS
webserver-port=$PDNS_API_PORT
webserver-allow-from=127.0.0.0/8
webserver-loglevel=normal
api=yes
api-key=$(pdns_secret)
# no caches, so that a record written through the API is served at once
# (the negative TTL of the SOA below is 1 s, as in the BIND zones)
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
default-ttl=60
default-soa-content=ns1.@ hostmaster.@ 1 30 10 3600 1
EOF
	)
	sqlite3 "$d/pdns.sqlite3" <"$PDNS_SCHEMA" || die "creating the PowerDNS database from $PDNS_SCHEMA failed"
	local z
	for z in "$PDNS_ZONE" "$CONFORMANCE_ZONE"; do
		if ! { pdnsutil --config-dir="$d" create-zone "$z" "ns1.$PDNS_ZONE" &&
			# what a zone created through the API has: each API change
			# raises the SOA serial (without it the API refuses changes)
			pdnsutil --config-dir="$d" set-meta "$z" SOA-EDIT-API DEFAULT; } >"$d/pdnsutil.out" 2>&1; then
			cat "$d/pdnsutil.out" >&2
			die "pdnsutil could not create $z"
		fi
	done
	pdnsutil --config-dir="$d" add-record "$PDNS_ZONE" ns1 A 60 "$ADDR_PDNS" >"$d/pdnsutil.out" 2>&1 || {
		cat "$d/pdnsutil.out" >&2
		die "pdnsutil could not add ns1.$PDNS_ZONE"
	}
}

start_pdns() {
	local d="$LAB_DIR/pdns"
	if pid_running "$d/pdns_server.pid" pdns_server; then
		return 0
	fi
	write_pdns
	log "starting pdns_server on $ADDR_PDNS:53 (API on $ADDR_PDNS:$PDNS_API_PORT)"
	(
		cd "$d"
		setsid pdns_server --config-dir="$d" </dev/null >>"$d/pdns.log" 2>&1 9>&- &
		echo $! >"$d/pdns_server.pid"
	)
	if ! wait_for "pdns_server" 15 answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_PDNS" SOA "$PDNS_ZONE"; then
		tail_log "$d/pdns.log"
		die "pdns_server does not answer SOA $PDNS_ZONE"
	fi
}

stop_pdns() {
	stop_pid "$LAB_DIR/pdns/pdns_server.pid" pdns_server pdns_server
}

# ---------------------------------------------------------------------------
# moto: Route53's API on loopback, no DNS. Python (pip), not in Debian:
# install.sh cannot install it, so up starts it when it is there and says
# so when it is not; the Route53 tests then fail naming it (MOTO_URL empty
# in lab.env).

find_moto() { command -v moto_server 2>/dev/null || true; }

moto_url() { echo "http://127.0.0.1:$MOTO_PORT"; }

# moto_route53 CURL_ARGS...: a request to moto's Route53 API. moto picks the
# service by the credential scope of the Authorization header (it checks no
# signature); without one it answers as S3.
moto_route53() {
	curl -fsS --max-time 10 -H "Authorization: AWS4-HMAC-SHA256 Credential=lab/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0" "$@"
}

# moto_zone_id ZONE: the id of the hosted zone ZONE, or nothing
moto_zone_id() {
	local out
	out=$(moto_route53 "$(moto_url)/2013-04-01/hostedzonesbyname?dnsname=$1.") || return 1
	out=$(grep -o "<Id>/hostedzone/[^<]*</Id><Name>$1.</Name>" <<<"$out" || true)
	out=${out%%$'\n'*}
	out=${out#<Id>/hostedzone/}
	echo "${out%%<*}"
}

start_moto() {
	local d="$LAB_DIR/moto" bin id
	mkdir -p "$d"
	bin=$(find_moto)
	if [ -z "$bin" ]; then
		log "moto_server not found on PATH (pip install 'moto[server]'): no Route53 API in this lab; the Route53 tests fail"
		return 0
	fi
	if ! pid_running "$d/moto.pid" moto_server; then
		log "starting moto_server (Route53 API) on 127.0.0.1:$MOTO_PORT"
		(
			cd "$d"
			setsid "$bin" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >>"$d/moto.log" 2>&1 9>&- &
			echo $! >"$d/moto.pid"
		)
		if ! wait_for "moto_server" 30 curl -fsS --max-time 1 "$(moto_url)/moto-api/"; then
			tail_log "$d/moto.log"
			die "moto_server does not answer on $(moto_url)"
		fi
	fi
	local z
	for z in "$ROUTE53_ZONE" "$CONFORMANCE_ZONE"; do
		id=$(moto_zone_id "$z") || die "moto_server: listing hosted zones failed"
		[ -z "$id" ] || continue
		log "creating the Route53 hosted zone $z in moto"
		moto_route53 -X POST "$(moto_url)/2013-04-01/hostedzone" -H 'Content-Type: application/xml' \
			--data "<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>$z.</Name><CallerReference>cdalab-$RANDOM$RANDOM</CallerReference></CreateHostedZoneRequest>" \
			>"$d/create-zone.out" || die "moto_server: creating the hosted zone $z failed"
		id=$(moto_zone_id "$z")
		[ -n "$id" ] || die "moto_server: the hosted zone $z is not listed after its creation"
	done
}

stop_moto() {
	stop_pid "$LAB_DIR/moto/moto.pid" moto_server moto_server
}

# moto_env: lab.env's lines for Route53 on moto (empty values without moto)
moto_env() {
	if pid_running "$LAB_DIR/moto/moto.pid" moto_server; then
		echo "MOTO_URL=$(moto_url)"
		echo "ROUTE53_ZONE_ID=$(moto_zone_id "$ROUTE53_ZONE")"
		echo "ROUTE53_CONFORMANCE_ZONE_ID=$(moto_zone_id "$CONFORMANCE_ZONE")"
	else
		echo "MOTO_URL="
		echo "ROUTE53_ZONE_ID="
		echo "ROUTE53_CONFORMANCE_ZONE_ID="
	fi
	echo "ROUTE53_ZONE=$ROUTE53_ZONE"
	echo "MOTO_LOG=$LAB_DIR/moto/moto.log"
}

# ---------------------------------------------------------------------------
# lab.env

write_env() {
	local f="$LAB_DIR/lab.env"
	local zb zall
	zb=$(
		IFS=,
		echo "${ZONES_B[*]}"
	)
	zall=$(
		IFS=,
		echo "${ZONES_A[*]}"
	)
	umask 077
	cat >"$f.tmp" <<EOF
# generated by lab/lab.sh up; KEY=value, no quoting needed
LAB_DIR=$LAB_DIR
LAB_NETNS=$LAB_NETNS
AUTH_A=$ADDR_A:53
AUTH_B=$ADDR_B:53
ZONES_A=$zall
ZONES_B=$zb
RESOLVER=127.0.0.1:$UNBOUND_PORT
UNBOUND_CONF=$LAB_DIR/unbound/unbound.conf
UNBOUND_LOG=$LAB_DIR/unbound/unbound.log
NAMED_A_LOG=$LAB_DIR/a/named.log
NAMED_B_LOG=$LAB_DIR/b/named.log
REDIS_ADDR=127.0.0.1:$REDIS_PORT
REDIS_LOG=$LAB_DIR/redis/redis.log
PEBBLE_DIR=https://127.0.0.1:$PEBBLE_PORT/dir
PEBBLE_MGMT=https://127.0.0.1:$PEBBLE_MGMT_PORT
PEBBLE_CA_PEM=$LAB_DIR/pebble/ca.pem
PEBBLE_LOG=$LAB_DIR/pebble/pebble.log
ALIAS_ZONE=$ALIAS_ZONE
ALIAS_ZONE2=$ALIAS_ZONE2
SILENT_NS_ZONE=$SILENT_NS_ZONE
SILENT_NS_ADDR=$ADDR_SILENT:53
ACMEDNS_ADDR=$ADDR_ACMEDNS:53
ACMEDNS_ZONE=$ACMEDNS_ZONE
CADDY_KEY_NAME=caddy-key
CADDY_KEY_SECRET=$(key_secret caddy-key)
CADDY_KEY_ALG=hmac-sha256.
CADDY_KEY_FILE=$LAB_DIR/keys/caddy-key.key
CADDY_KEY2_NAME=caddy-key-2
CADDY_KEY2_SECRET=$(key_secret caddy-key-2)
CADDY_KEY2_ALG=hmac-sha256.
CADDY_KEY2_FILE=$LAB_DIR/keys/caddy-key-2.key
ADMIN_KEY_NAME=lab-admin
ADMIN_KEY_SECRET=$(key_secret lab-admin)
ADMIN_KEY_ALG=hmac-sha256.
ADMIN_KEY_FILE=$LAB_DIR/keys/lab-admin.key
PDNS_ADDR=$ADDR_PDNS:53
PDNS_ZONE=$PDNS_ZONE
PDNS_API=http://$ADDR_PDNS:$PDNS_API_PORT
PDNS_API_KEY=$(pdns_secret)
PDNS_LOG=$LAB_DIR/pdns/pdns.log
CONFORMANCE_ZONE=$CONFORMANCE_ZONE
$(moto_env)
EOF
	mv "$f.tmp" "$f"
	chmod 600 "$f"
}

# ---------------------------------------------------------------------------
# commands

check_all() { # quiet health check; prints what fails
	local ok=0
	answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_A" -p 53 SOA example.com || {
		echo "named A ($ADDR_A:53) does not answer SOA example.com"
		ok=1
	}
	answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_B" -p 53 SOA alias2.example || {
		echo "named B ($ADDR_B:53) does not answer SOA alias2.example"
		ok=1
	}
	answers NOERROR dig +time=2 +tries=1 @127.0.0.1 -p "$UNBOUND_PORT" SOA "$ALIAS_ZONE" || {
		echo "unbound (127.0.0.1:$UNBOUND_PORT) does not resolve SOA $ALIAS_ZONE"
		ok=1
	}
	answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_PDNS" -p 53 SOA "$PDNS_ZONE" || {
		echo "pdns_server ($ADDR_PDNS:53) does not answer SOA $PDNS_ZONE"
		ok=1
	}
	redis_answers || {
		echo "redis (127.0.0.1:$REDIS_PORT) does not answer PING"
		ok=1
	}
	if [ -s "$LAB_DIR/pebble/ca.pem" ]; then
		curl -fsS --max-time 2 --cacert "$LAB_DIR/pebble/ca.pem" "https://127.0.0.1:$PEBBLE_PORT/dir" >/dev/null 2>&1 || {
			echo "pebble (https://127.0.0.1:$PEBBLE_PORT/dir) does not answer"
			ok=1
		}
	else
		echo "pebble CA missing"
		ok=1
	fi
	return $ok
}

cmd_up() {
	[ "$(id -u)" = 0 ] || die "must run as root (binds port 53 on 127.0.0.2/3/5, adds loopback addresses ${LAB_ADDRS[*]})"
	# up installs nothing and touches no system service: that is
	# lab/install.sh's job (test.sh and demo.sh run it first).
	tools_present || die "tools missing: run lab/install.sh as root first"
	lock
	mkdir -p "$LAB_DIR"/{keys,a,b,unbound,redis,pebble,pdns,moto}
	chmod 700 "$LAB_DIR/keys"

	# loopback addresses (labelled, see our_addr)
	local a
	for a in "${LAB_ADDRS[@]}"; do
		if ! has_addr "$a"; then
			log "adding $a/32 to lo"
			ip addr add "$a/32" dev lo label "$ADDR_LABEL"
		fi
	done

	make_key caddy-key
	make_key caddy-key-2
	make_key lab-admin
	[ -s "$LAB_DIR/keys/pdns-api.secret" ] || (umask 077 && openssl rand -hex 24 >"$LAB_DIR/keys/pdns-api.secret")

	start_named a "$ADDR_A" "${ZONES_A[@]}" "${TLDS[@]}" "$CONFORMANCE_ZONE"
	start_named b "$ADDR_B" "${ZONES_B[@]}"
	start_unbound
	start_redis
	start_pebble
	start_pdns
	start_moto
	write_env

	# wait for every server to answer
	if ! wait_for "named A" 15 answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_A" SOA example.com; then
		tail_log "$LAB_DIR/a/named.log"
		die "named A does not answer"
	fi
	if ! wait_for "named B" 15 answers NOERROR dig +time=1 +tries=1 +norec @"$ADDR_B" SOA alias2.example; then
		tail_log "$LAB_DIR/b/named.log"
		die "named B does not answer"
	fi
	if ! wait_for "unbound" 15 answers NOERROR dig +time=1 +tries=1 @127.0.0.1 -p "$UNBOUND_PORT" SOA "$ALIAS_ZONE"; then
		tail_log "$LAB_DIR/unbound/unbound.log"
		die "unbound does not resolve $ALIAS_ZONE"
	fi
	if ! wait_for "redis" 15 redis_answers; then
		tail_log "$LAB_DIR/redis/redis.log"
		die "redis does not answer"
	fi
	if ! wait_for "pebble" 20 curl -fsS --max-time 1 --cacert "$LAB_DIR/pebble/ca.pem" "https://127.0.0.1:$PEBBLE_PORT/dir"; then
		tail_log "$LAB_DIR/pebble/pebble.log"
		die "pebble does not answer"
	fi
	if ! wait_for "pebble management" 10 curl -fsS --max-time 1 --cacert "$LAB_DIR/pebble/ca.pem" "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0"; then
		tail_log "$LAB_DIR/pebble/pebble.log"
		die "pebble management interface does not answer"
	fi
	log "up; environment in $LAB_DIR/lab.env"
}

cmd_down() {
	local purge=0
	[ "${1:-}" = --purge ] && purge=1
	lock
	if [ -d "$LAB_DIR" ]; then
		stop_pid "$LAB_DIR/pebble/pebble.pid" pebble pebble
		rm -f "$LAB_DIR/pebble/knobs"
		stop_pid "$LAB_DIR/unbound/unbound.pid" unbound unbound
		stop_pid "$LAB_DIR/redis/redis.pid" redis-server redis
		# a clean slate at the next up, as the zones are (Caddy's storage
		# in it survives a restart of redis alone, not a down)
		rm -rf "$LAB_DIR/redis/appendonlydir" "$LAB_DIR/redis/dump.rdb"
		stop_pdns
		stop_moto
		stop_pid "$LAB_DIR/b/named.pid" named "named B"
		stop_pid "$LAB_DIR/a/named.pid" named "named A"
		rm -f "$LAB_DIR/lab.env"
		if [ $purge = 1 ]; then
			log "deleting $LAB_DIR"
			rm -rf "$LAB_DIR"
		fi
	fi
	local a
	for a in "${LAB_ADDRS[@]}"; do
		if our_addr "$a"; then
			log "removing $a/32 from lo"
			ip addr del "$a/32" dev lo || true
		elif has_addr "$a"; then
			log "leaving $a on lo: the lab did not add it (no label $ADDR_LABEL)"
		fi
	done
	log "down"
}

cmd_status() {
	local rc=0 line
	st() { # NAME PIDFILE COMM
		if pid_running "$2" "$3"; then
			printf '%-10s running (pid %s)\n' "$1" "$(tr -dc '0-9' <"$2")"
		else
			printf '%-10s stopped\n' "$1"
			rc=1
		fi
	}
	st "named A" "$LAB_DIR/a/named.pid" named
	st "named B" "$LAB_DIR/b/named.pid" named
	st unbound "$LAB_DIR/unbound/unbound.pid" unbound
	st redis "$LAB_DIR/redis/redis.pid" redis-server
	st pebble "$LAB_DIR/pebble/pebble.pid" pebble
	st pdns "$LAB_DIR/pdns/pdns_server.pid" pdns_server
	if [ -n "$(find_moto)" ]; then st moto "$LAB_DIR/moto/moto.pid" moto_server; else printf '%-10s moto_server not installed\n' moto; fi
	local a
	for a in "${LAB_ADDRS[@]}"; do
		if our_addr "$a"; then
			printf '%-10s on lo (added by the lab)\n' "$a"
		elif has_addr "$a"; then
			printf '%-10s on lo (not added by the lab)\n' "$a"
		else
			printf '%-10s absent\n' "$a"
		fi
	done
	if [ $rc = 0 ]; then
		local out
		if out=$(check_all); then
			printf '%-10s every server answers\n' checks
		else
			while IFS= read -r line; do
				[ -n "$line" ] && printf '%-10s %s\n' check "$line"
			done <<<"$out"
			rc=1
		fi
	fi
	echo "netns      $LAB_NETNS"
	echo "LAB_DIR    $LAB_DIR"
	return $rc
}

case "${1:-}" in
up) cmd_up ;;
down)
	shift
	cmd_down "$@"
	;;
status) cmd_status ;;
exec)
	shift
	export GOPROXY=off
	exec "$@"
	;;
netns) echo "$LAB_NETNS" ;;
*)
	echo "usage: $0 up | down [--purge] | status | exec CMD... | netns" >&2
	exit 2
	;;
esac
