#!/usr/bin/env bash
# Runs a command as it would run on a machine where the lab's packages were
# installed but their services never ran: in a private mount namespace with
# empty tmpfs over /run and over the state directories that the packages'
# services fill at their first start (/var/lib/unbound: root.key). Nothing
# of it is seen outside, and the host's own /run and state stay as they are.
#
#   lab/fresh-machine.sh COMMAND [ARGS...]
#
# test.sh runs lab/canary.sh through it, so that a service started without
# what its unit runs before it fails here, as it would on a new machine,
# and not only on a machine where the package's service never ran.
set -euo pipefail
[ "$(id -u)" = 0 ] || {
	echo "fresh-machine.sh: must run as root" >&2
	exit 1
}
[ $# -gt 0 ] || {
	echo "usage: $0 COMMAND [ARGS...]" >&2
	exit 2
}
# shellcheck disable=SC2016
exec unshare -m --propagation private bash -c '
	set -e
	mount -t tmpfs -o mode=0755 fresh-run /run
	for d in /var/lib/unbound; do
		[ -d "$d" ] || continue
		owner=$(stat -c %u:%g "$d")
		mode=$(stat -c %a "$d")
		mount -t tmpfs -o "mode=$mode" fresh-state "$d"
		chown "$owner" "$d"
	done
	exec "$@"
' fresh-machine "$@"
