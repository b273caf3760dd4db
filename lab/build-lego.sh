#!/usr/bin/env bash
# Builds lego, the benchmark's peer (xcaddy_test/bench/lego.go), at lab/env.sh's
# LEGO_VERSION, with only the DNS providers the lab uses: RFC 2136 (dnsupdate,
# the benchmark's peer), acme-dns and httpreq (real clients of the plugin's
# acme-dns endpoint, xcaddy_test/endpoint_test.go).
#   lab/build-lego.sh [OUTPUT]   (default: ./lego)
#
# `go install github.com/go-acme/lego/v5@$LEGO_VERSION` (v5's main package
# is the module root; there is no cmd/lego in v5) fails on these machines:
# the module proxy answers 403 for 23 of the DNS providers' SDKs and for
# gitlab.com/greyxor/slogor, lego's log colouriser. So this builds lego's
# own main package from a module that requires lego at that version, with
# lego's documented "dnslight" build tags (its Makefile's build_dnslight:
# only the named providers are compiled in) and a stand-in for slogor on
# log/slog's text handler. Everything else is lego's code as released.
set -euo pipefail
out="$(realpath -m "${1:-./lego}")"
# shellcheck source=lab/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod download "github.com/go-acme/lego/v5@$LEGO_VERSION"
src="$(go mod download -json "github.com/go-acme/lego/v5@$LEGO_VERSION" | awk -F'"' '$2 == "Dir" { print $4 }')"
mkdir slogor
cat >slogor/go.mod <<'MOD'
module gitlab.com/greyxor/slogor

go 1.21
MOD
cat >slogor/slogor.go <<'GO'
// Package slogor stands in for gitlab.com/greyxor/slogor, which the module
// proxy does not serve here: the API lego's cmd/logger.go uses, on
// log/slog's text handler (no colours).
package slogor

import (
	"io"
	"log/slog"
)

type options struct{ level slog.Leveler }

type OptionFn func(*options)

func SetLevel(l slog.Leveler) OptionFn { return func(o *options) { o.level = l } }

func SetTimeFormat(string) OptionFn { return func(*options) {} }

func DisableColor() OptionFn { return func(*options) {} }

func NewHandler(w io.Writer, opts ...OptionFn) slog.Handler {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: o.level})
}
GO
cat >go.mod <<MOD
module legobuild

go 1.26.0

require github.com/go-acme/lego/v5 $LEGO_VERSION

replace gitlab.com/greyxor/slogor => ./slogor
MOD
# lego's main package: main.go and its generated version file.
cp "$src/main.go" "$src/zz_gen_version.go" .
chmod u+w ./*.go
providers=(dnsupdate acmedns httpreq)
tags="lego_dnslight$(printf ',lego_dns_%s' "${providers[@]}")"
GOFLAGS=-mod=mod go build -tags "$tags" -trimpath \
	-ldflags "-X main.version=$LEGO_VERSION" -o "$out" .
"$out" --version
echo "lego built with the DNS providers: ${providers[*]}"
