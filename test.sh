#!/usr/bin/env bash
# Runs every test of caddy-dns-alias on a fresh Debian machine: installs the
# lab's servers and tools, starts the lab, runs vet and the race-enabled test
# suite, and stops the lab again. Needs root (the lab binds port 53 on
# 127.0.0.2 and 127.0.0.3).
set -euo pipefail
cd "$(dirname "$0")"

# A fresh machine's shell may not have Go's directory on PATH yet.
export PATH="/usr/local/go/bin:$PATH"
export GONOSUMDB="${GONOSUMDB:-github.com/caddy-dns/*,github.com/libdns/*}"
export PATH="$PATH:$(go env GOPATH)/bin"

bash lab/install.sh
trap 'bash lab/lab.sh down || true' EXIT
bash lab/lab.sh up

test -z "$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
go vet ./...
go test -race -count=1 -timeout 25m ./... "$@"
