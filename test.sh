#!/usr/bin/env bash
# Runs every test of caddy-dns-alias on a fresh Debian machine: installs the
# lab's servers and tools (lab/install.sh), starts the lab if it is not up,
# runs gofmt, vet, the race-enabled unit and lab tests, then the end-to-end
# suite (xcaddy_test) with one line per scenario. Stops the lab afterwards
# only if it started it. Needs root (the lab binds port 53 on 127.0.0.2 and
# 127.0.0.3). Arguments go to `go test` (e.g. -v, -run).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=lab/env.sh
. lab/env.sh
# The lab suite's switch: without it the tests that need the lab skip.
export CADDY_DNS_ALIAS_LAB=1

# What the end-to-end suite takes on the project's 2-core test machine
# (measured: 8m40s with Go's caches warm, 3 minutes of it the four
# cluster-on-Redis scenarios, while another lab ran beside it), for the
# progress line; the last run's time here is shown too, when known.
E2E_EXPECTED="about 8 minutes, plus up to 3 for a first xcaddy build"

bash lab/install.sh

# A lab that already runs (a demo, someone's session) is left running.
lab_before=$(bash lab/lab.sh status 2>&1 || true)
if [[ $lab_before == *running* ]]; then
	echo "== the lab is already running: it is left running afterwards"
else
	trap 'bash lab/lab.sh down || true' EXIT
fi
bash lab/lab.sh up

test -z "$(gofmt -l .)" || {
	echo "gofmt would change:"
	gofmt -l .
	exit 1
}
go vet ./...

echo "== unit, in-process and lab tests (every package but xcaddy_test)"
mapfile -t pkgs < <(go list ./... | grep -v '/xcaddy_test$')
go test -race -count=1 -timeout 15m "${pkgs[@]}" "$@"

# libdns's provider conformance suite (libdnstest, libdns v1.2.0-alpha.1)
# against rfc2136 on BIND, powerdns and route53 on moto: a module of its
# own, so that its libdns stays out of the plugin's go.mod.
echo "== libdns conformance suite (xcaddy_test/conformance)"
go -C xcaddy_test/conformance vet ./...
go -C xcaddy_test/conformance test -count=1 -timeout 5m ./...

# The end-to-end suite: its full output goes to a log; the terminal gets one
# line per scenario (go test -v's top-level results) with its time.
log="${LAB_DIR:-/tmp/caddy-dns-alias-lab}.e2e.log"
last_file="${LAB_DIR:-/tmp/caddy-dns-alias-lab}.e2e.seconds"
scenarios=$(cat xcaddy_test/*_test.go | grep -c '^func Test[A-Z][A-Za-z0-9_]*(t \*testing\.T)') || true
expected="$E2E_EXPECTED"
if [ -s "$last_file" ]; then expected="$expected; the last run here took $(($(cat "$last_file") / 60))m$(($(cat "$last_file") % 60))s"; fi
echo "== end-to-end suite (xcaddy_test): $scenarios scenarios, $expected; full output: $log"
start=$SECONDS
set +e
go test -race -count=1 -timeout 25m -v ./xcaddy_test "$@" 2>&1 | tee "$log" | {
	re='^--- (PASS|FAIL|SKIP): (Test[^ ]+) \(([0-9.]+)s\)'
	while IFS= read -r line; do
		if [[ $line =~ $re ]]; then
			e=$((SECONDS - start))
			printf '   %-4s %-44s %8ss   (%dm%02ds in)\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" $((e / 60)) $((e % 60))
		elif [[ $line == "xcaddy build took "* || $line == ok* || $line == FAIL* ]]; then
			echo "   $line"
		fi
	done
}
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
	echo "== the end-to-end suite failed (exit $rc); its output:"
	cat "$log"
	exit "$rc"
fi
case " $* " in
*" -run"*) ;; # a part of the suite says nothing of the whole
*) echo $((SECONDS - start)) >"$last_file" ;;
esac
echo "== every test passed; the end-to-end suite took $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
