#!/usr/bin/env bash
# Runs every test of caddy-dns-alias on a Debian machine, as root:
#   1. installs the lab's servers and tools (lab/install.sh);
#   2. starts the host-services canary (lab/canary.sh: Debian's own BIND,
#      Unbound and Redis, started as their packages start them), once as a
#      machine where they never ran sees it (lab/fresh-machine.sh) and once
#      for the whole run, and runs lab/install.sh once more, which must
#      leave them running;
#   3. outside the lab's namespace, where the module proxy is: gofmt, go vet
#      (which compiles every package and test), Caddy built with xcaddy
#      (lab/build-caddy.sh --lab; CADDY_BIN=... skips it) and lego
#      (lab/build-lego.sh; LEGO_BIN=... skips it);
#   4. brings the lab up in its own network namespace (lab/lab.sh up) unless
#      it runs, and inside it: the race-enabled unit and lab tests, then the
#      end-to-end suite (xcaddy_test), one line per scenario; on a failure,
#      the failed scenarios' own output;
#   5. stops the lab if it started it, and checks that the canary's services
#      still run and answer.
# Arguments go to both `go test` runs (e.g. -run, -count).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=lab/env.sh
. lab/env.sh
# The lab suite's switch: without it the tests that need the lab skip.
export CADDY_DNS_ALIAS_LAB=1
LAB_DIR="$(realpath -m "${LAB_DIR:-$PWD/.lab}")"
export LAB_DIR

# What the end-to-end suite takes on the project's 2-core test machine, for
# the progress line (docs/testing.md has the measurements); the last run's
# time here is shown too, when known.
E2E_EXPECTED="about 13 minutes (13m17s measured on a quiet machine)"

lab_started=0
# Every exit, a failure included, stops what this script started (the
# canary's stop stops only what its start started).
cleanup() {
	[ "$lab_started" = 1 ] && bash lab/lab.sh down >/dev/null 2>&1
	bash lab/canary.sh stop || true
}
trap cleanup EXIT

bash lab/install.sh
echo "== the host-services canary on a machine where their services never ran (lab/fresh-machine.sh: empty /run and /var/lib/unbound)"
fresh="$(mktemp -d)"
LAB_DIR="$fresh/lab" CANARY_DIR="$fresh/canary" bash lab/fresh-machine.sh \
	bash -c 'bash lab/canary.sh start && bash lab/canary.sh check; rc=$?; bash lab/canary.sh stop; exit $rc'
rm -rf "$fresh"
echo "== the host-services canary: Debian's BIND, Unbound and Redis, as their packages run them"
bash lab/canary.sh start
bash lab/install.sh # again, now that they run: it must leave them alone

test -z "$(gofmt -l .)" || {
	echo "gofmt would change:"
	gofmt -l .
	exit 1
}
go vet ./...
# The lab harness, the benchmark and the end-to-end suite: a module of
# their own (xcaddy_test/go.mod), so that the plugin's go.mod lists only
# what the plugin needs; vetting it outside downloads its modules.
go -C xcaddy_test vet ./...
bin="$LAB_DIR.bin"
mkdir -p "$bin"
go build -o "$bin/testreport" ./internal/testreport
if [ -z "${CADDY_BIN:-}" ]; then
	echo "== building Caddy with xcaddy (lab/build-caddy.sh --lab)"
	start=$SECONDS
	bash lab/build-caddy.sh --lab "$bin/caddy" >"$bin/build.log" 2>&1 || {
		cat "$bin/build.log"
		exit 1
	}
	echo "   built in $((SECONDS - start))s"
	CADDY_BIN="$bin/caddy"
fi
export CADDY_BIN
if [ -z "${LEGO_BIN:-}" ]; then
	# The acme-dns endpoint's real client (xcaddy_test/endpoint_test.go).
	echo "== building lego (lab/build-lego.sh)"
	bash lab/build-lego.sh "$bin/lego" >"$bin/build-lego.log" 2>&1 || {
		cat "$bin/build-lego.log"
		exit 1
	}
	LEGO_BIN="$bin/lego"
fi
export LEGO_BIN

# A lab that already runs (a demo, someone's session) is left running.
if bash lab/lab.sh status >/dev/null 2>&1; then
	echo "== the lab is already running (namespace $(bash lab/lab.sh netns)): it is left running afterwards"
else
	lab_started=1
	bash lab/lab.sh up
fi
# Everything below runs inside the lab's namespace.
inside() { bash lab/lab.sh exec "$@"; }

echo "== unit, in-process and lab tests (the plugin's module, and the lab harness and benchmark of xcaddy_test's), in namespace $(bash lab/lab.sh netns)"
inside go test -race -count=1 -timeout 15m ./... "$@"
inside go -C xcaddy_test test -race -count=1 -timeout 15m ./internal/... ./bench "$@"

# libdns's provider conformance suite (libdnstest, libdns v1.2.0-alpha.1)
# against rfc2136 on BIND, powerdns and route53 on moto: a module of its
# own, so that its libdns stays out of the plugin's go.mod.
echo "== libdns conformance suite (xcaddy_test/conformance)"
go -C xcaddy_test/conformance vet ./... # outside: downloads its modules for the run inside
inside go -C xcaddy_test/conformance test -count=1 -timeout 5m ./...

# The end-to-end suite: its full output goes to a log; the terminal gets one
# line per scenario with its time and, on failure, the failed ones' output.
log="$LAB_DIR.e2e.log"
last_file="$LAB_DIR.e2e.seconds"
scenarios=$(cat xcaddy_test/*_test.go | grep -c '^func Test[A-Z][A-Za-z0-9_]*(t \*testing\.T)') || true
expected="$E2E_EXPECTED"
if [ -s "$last_file" ]; then expected="$expected; the last run here took $(($(cat "$last_file") / 60))m$(($(cat "$last_file") % 60))s"; fi
echo "== end-to-end suite (xcaddy_test): $scenarios scenarios, $expected; full output: $log"
start=$SECONDS
set +e
inside go -C xcaddy_test test -race -count=1 -timeout 25m -json . "$@" 2>&1 | "$bin/testreport" -log "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
	echo "== the end-to-end suite failed (exit $rc); the whole output is in $log"
	exit "$rc"
fi
case " $* " in
*" -run"*) ;; # a part of the suite says nothing of the whole
*) echo $((SECONDS - start)) >"$last_file" ;;
esac
echo "== the end-to-end suite took $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"

if [ "$lab_started" = 1 ]; then
	bash lab/lab.sh down
	lab_started=0
fi
echo "== the host-services canary after install.sh, lab.sh up, the tests and lab.sh down:"
bash lab/canary.sh check
echo "== every test passed"
