#!/usr/bin/env bash
# The host-services canary of the lab suite (test.sh runs it): Debian's own
# BIND, Unbound and Redis, started the way their packages start them, must
# keep running and answering through lab/install.sh, lab/lab.sh up, the
# tests and lab/lab.sh down, which may stop only what the lab started.
#
#   lab/canary.sh start   start them (or adopt the host's own, if they run)
#   lab/canary.sh check   each still runs, the same process, and answers
#   lab/canary.sh stop    stop the ones start started
#
# They run in a network namespace of their own standing in for the host's
# (CANARY_NETNS, default cdacanary-<hash of the run dir>): Debian's
# named.conf listens on every interface, and on a shared machine that would
# reach beyond loopback. Everything the lab could wrongly touch is global all
# the same: pid files under /run, process ids, init scripts. named and
# redis-server start through their init scripts (/etc/init.d/named, with
# /etc/default/named; /etc/init.d/redis-server with /etc/redis/redis.conf);
# unbound from /etc/unbound/unbound.conf included as it is, on port 5353,
# because Debian's named holds port 53 of the same namespace, as on any host
# that runs both, after what its unit and init script run before the daemon
# (unbound-helper chroot_setup and root_trust_anchor_update: on a machine
# where the package's service never ran, /var/lib/unbound/root.key, which
# Debian's unbound.conf reads, exists only once the latter has run). A
# service whose Debian pid file names a live process is the host's: it is
# watched, never started or stopped. A start that fails stops what it
# started before it exits.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_DIR="$(realpath -m "${LAB_DIR:-$HERE/../.lab}")"
CANARY_DIR="${CANARY_DIR:-${LAB_DIR%/}.canary}"
CANARY_NETNS="${CANARY_NETNS:-cdacanary-$(printf %s "$CANARY_DIR" | sha256sum | cut -c1-10)}"
export PATH="$PATH:/usr/sbin:/sbin"
UNBOUND_CANARY_PORT=5353

log() { echo "canary.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# service: name, process name, Debian's pid file
SERVICES=("named named /run/named/named.pid" "redis redis-server /run/redis/redis-server.pid" "unbound unbound /run/unbound.pid")

# alive PID COMM: the process runs (no zombie) and is COMM
alive() {
	[ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
		! grep -q '^State:[[:space:]]*[ZX]' "/proc/$1/status" 2>/dev/null
}

in_ns() { ip netns exec "$CANARY_NETNS" "$@"; }

# answers NAME: the service answers in the canary's namespace
answers() {
	case $1 in
	named) in_ns dig +time=1 +tries=1 @127.0.0.1 -p 53 localhost A 2>/dev/null | grep -q 'status: NOERROR' ;;
	unbound) in_ns dig +time=1 +tries=1 @127.0.0.1 -p "$UNBOUND_CANARY_PORT" localhost A 2>/dev/null | grep -q 'status: NOERROR' ;;
	redis) [ "$(in_ns redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] ;;
	esac
}

start_one() { # NAME
	case $1 in
	named) in_ns /etc/init.d/named start >"$CANARY_DIR/named.out" 2>&1 ;;
	redis) in_ns /etc/init.d/redis-server start >"$CANARY_DIR/redis.out" 2>&1 ;;
	unbound)
		# What unbound.service runs before the daemon (its ExecStartPre
		# lines, '-': a failure there does not stop the start), with
		# /etc/default/unbound as its EnvironmentFile.
		(
			set -a
			[ ! -r /etc/default/unbound ] || . /etc/default/unbound
			/usr/libexec/unbound-helper chroot_setup || true
			/usr/libexec/unbound-helper root_trust_anchor_update || true
		) >"$CANARY_DIR/unbound.out" 2>&1
		# The daemon's own messages go to a file of the canary's: a config
		# it cannot load is otherwise said only to syslog.
		printf 'include: "/etc/unbound/unbound.conf"\nserver:\n\tport: %s\n\tuse-syslog: no\n\tlogfile: "%s"\n' \
			"$UNBOUND_CANARY_PORT" "$CANARY_DIR/unbound.log" >"$CANARY_DIR/unbound.conf"
		touch "$CANARY_DIR/unbound.log"
		chown unbound "$CANARY_DIR/unbound.log" 2>/dev/null || true
		in_ns unbound -c "$CANARY_DIR/unbound.conf" >>"$CANARY_DIR/unbound.out" 2>&1 || {
			cat "$CANARY_DIR/unbound.log" >>"$CANARY_DIR/unbound.out"
			return 1
		}
		;;
	esac
}

# start_failed MESSAGE: stop what this start started, then fail.
start_failed() {
	log "$*"
	cmd_stop
	exit 1
}

cmd_start() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	mkdir -p "$CANARY_DIR"
	if [ ! -e "/run/netns/$CANARY_NETNS" ]; then
		ip netns add "$CANARY_NETNS"
		echo "$CANARY_NETNS" >"$CANARY_DIR/netns"
	fi
	in_ns ip link set lo up
	: >"$CANARY_DIR/pids"
	local spec name comm pidf pid i
	for spec in "${SERVICES[@]}"; do
		read -r name comm pidf <<<"$spec"
		pid=$(tr -dc 0-9 2>/dev/null <"$pidf" || true)
		if [ -n "$pid" ] && alive "$pid" "$comm"; then
			log "$name: the host's own runs (pid $pid, $pidf): watched, left alone"
			echo "$name $comm $pid host" >>"$CANARY_DIR/pids"
			continue
		fi
		start_one "$name" || {
			cat "$CANARY_DIR/$name.out" >&2
			start_failed "$name did not start"
		}
		for i in $(seq 1 50); do
			pid=$(tr -dc 0-9 2>/dev/null <"$pidf" || true)
			[ -n "$pid" ] && alive "$pid" "$comm" && answers "$name" && break
			sleep 0.2
		done
		# Recorded before the verdict, so that a failed start stops it too.
		[ -z "$pid" ] || ! alive "$pid" "$comm" || echo "$name $comm $pid started" >>"$CANARY_DIR/pids"
		answers "$name" || {
			cat "$CANARY_DIR/$name.out" "$CANARY_DIR/$name.log" 2>/dev/null >&2
			start_failed "$name (pid ${pid:-none}) does not answer in $CANARY_NETNS"
		}
		log "$name: started as Debian's package does (pid $pid, $pidf)"
	done
}

cmd_check() {
	[ -s "$CANARY_DIR/pids" ] || die "no canary: lab/canary.sh start first"
	local name comm pid how rc=0
	while read -r name comm pid how; do
		if ! alive "$pid" "$comm"; then
			log "FAIL: $name (pid $pid, $how) no longer runs"
			rc=1
		elif [ "$how" = started ] && ! answers "$name"; then
			log "FAIL: $name (pid $pid) runs but does not answer"
			rc=1
		else
			log "ok: $name (pid $pid, $how) still runs$([ "$how" = started ] && echo " and answers")"
		fi
	done <"$CANARY_DIR/pids"
	return $rc
}

cmd_stop() {
	local name comm pid how i
	if [ -s "$CANARY_DIR/pids" ]; then
		while read -r name comm pid how; do
			[ "$how" = started ] && alive "$pid" "$comm" || continue
			# only ours: the one start started, in the canary's namespace
			[ "$(readlink "/proc/$pid/ns/net")" = "$(in_ns readlink /proc/self/ns/net)" ] || continue
			kill "$pid"
			for i in $(seq 1 50); do
				alive "$pid" "$comm" || break
				sleep 0.2
			done
		done <"$CANARY_DIR/pids"
	fi
	if [ "$(cat "$CANARY_DIR/netns" 2>/dev/null)" = "$CANARY_NETNS" ] && [ -z "$(ip netns pids "$CANARY_NETNS" 2>/dev/null)" ]; then
		ip netns del "$CANARY_NETNS"
	fi
	rm -rf "$CANARY_DIR"
}

case "${1:-}" in
start) cmd_start ;;
check) cmd_check ;;
stop) cmd_stop ;;
*)
	echo "usage: $0 start | check | stop" >&2
	exit 2
	;;
esac
