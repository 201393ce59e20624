#!/usr/bin/env bash
# Install Jaeger v2 (the all-in-one `jaeger` binary) for the trace tests and the demo,
# built by the machine's Go from the module github.com/jaegertracing/jaeger@$JAEGER_VERSION
# on the Go module proxy (`go mod download`, then `go build ./cmd/jaeger` in its source:
# `go install ...@version` refuses a module whose go.mod has replace directives).
#
# The build takes many minutes, so the binary is cached outside the checkout, where every
# checkout and CI run on this machine finds it:
#   ${PULLNIX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pullnix}/jaeger-<version>-<os>-<arch>/jaeger
# As with the system tier's Debian root, the directory is named after what it holds, is built
# beside its final name (.building) under a lock and renamed into place only once the binary
# runs, so an interrupted build is never trusted.
#
# Prints the binary's path on stdout; progress goes to stderr.
#   --path   only print where the binary is (exit 1 if it is not installed yet)
# Exit: 0 installed; 1 the build failed (its log's tail is shown); 2 no Go on this machine,
# so Jaeger cannot be installed here (the trace tests skip). PULLNIX_REQUIRE_JAEGER=1 (CI)
# turns 2 into 1: there, a missing Jaeger is a failure, never a skip.
set -euo pipefail

JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
MODULE=github.com/jaegertracing/jaeger
say() { echo "install-jaeger.sh: $*" >&2; }

go_bin=$(command -v go || true)
if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; fi
os=$(uname -s | tr '[:upper:]' '[:lower:]')
arch=$(uname -m)
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac

cache=${PULLNIX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pullnix}
key="jaeger-$JAEGER_VERSION-$os-$arch"
final="$cache/$key"
binary="$final/jaeger"

if [ "${1:-}" = "--path" ]; then
    echo "$binary"
    [ -x "$binary" ]
    exit
fi
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
if [ -z "$go_bin" ]; then
    say "no Go on this machine, so Jaeger cannot be built here; install Go 1.21 or later" \
        "(https://go.dev/dl/) and run this again"
    [ "${PULLNIX_REQUIRE_JAEGER:-}" = 1 ] && exit 1
    exit 2
fi

mkdir -p "$cache"
exec 9>"$cache/$key.lock"
flock 9
if [ -x "$binary" ]; then  # built by another run while this one waited for the lock
    echo "$binary"
    exit 0
fi
rm -rf "$cache/.$key.building"
building="$cache/.$key.building"
mkdir -p "$building"
log="$cache/$key.log"

say "building Jaeger $JAEGER_VERSION with $("$go_bin" version) (many minutes; log: $log)"
started=$(date +%s)
# `go install $MODULE/cmd/jaeger@$JAEGER_VERSION` refuses: Jaeger's go.mod has a replace
# directive. So its source comes from the module proxy (checked against go.sum's checksum
# database like any module) and is built as the main module, with its own go.mod.
if ! (
    cd "$building"
    dir=$("$go_bin" mod download -json "$MODULE@$JAEGER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { echo "go mod download named no directory"; exit 1; }
    cp -R "$dir" src
    chmod -R u+w src
    cd src
    "$go_bin" build -o "$building/jaeger" ./cmd/jaeger
) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -rf "$building"
    say "the build failed; the whole log is $log"
    exit 1
fi
rm -rf "$building/src"
say "built in $(( $(date +%s) - started ))s"
if ! "$building/jaeger" --help >/dev/null 2>&1; then
    rm -rf "$building"
    say "the Jaeger binary does not run"
    exit 1
fi
rm -rf "$final"
mv "$building" "$final"
say "installed $binary ($(du -h "$binary" | cut -f1))"
echo "$binary"
