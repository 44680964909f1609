#!/usr/bin/env bash
# Makes sure a current nats-server (2.10 or newer) is available to the tests, CI and the
# chaos runner, which start real servers on loopback. Debian's package is 2.9.10, whose
# restarted cluster replicas silently drop acked messages (nats-io/nats-server#4196), so
# the pinned release below is built with Go once per machine and reused after; Debian's
# package is only the last resort.
#
# Where the binary comes from, first match wins (runtime/cli/nats-server-launcher.ts looks in
# the same places, so the server this script names is the one the tests start):
#   1. $TRIBUTARY_NATS_SERVER, when set;
#   2. the pinned build in the cache folder this script owns;
#   3. a nats-server 2.10+ on PATH, in /usr/sbin or /usr/bin;
#   4. a build of the pinned release with `go install` into the cache folder;
#   5. Debian's package (apt-get, as root), with a loud warning.
# Prints exactly one line on stdout, `nats-server: <path> (v<version>)`; progress and
# warnings go to stderr. Exits non-zero when no nats-server can be provided.
set -euo pipefail

NATS_SERVER_VERSION=v2.15.2

cache_root="${TRIBUTARY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}"
cache_dir="$cache_root/nats-server-$NATS_SERVER_VERSION"
cached="$cache_dir/nats-server"

# Prints the version a binary reports (`nats-server: v2.15.2` -> `2.15.2`), or nothing.
version_of() {
  local out
  if command -v timeout >/dev/null 2>&1; then
    out=$(timeout 10 "$1" --version 2>/dev/null) || true
  else
    out=$("$1" --version 2>/dev/null) || true
  fi
  if [[ $out =~ ^nats-server:\ v?([0-9]+\.[0-9]+(\.[0-9]+)?) ]]; then echo "${BASH_REMATCH[1]}"; fi
  return 0
}

# True for versions 2.10 and newer: older servers have the cluster bug (see above).
is_current() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ -n "$major" ] && [ -n "$minor" ] && { [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }; }
}

warn_old() {
  cat >&2 <<EOF
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: using nats-server $2 ($1), older than 2.10.
!! nats-server 2.9.x before 2.9.18 has the cluster data-loss bug
!! nats-io/nats-server#4196: a restarted replica silently drops acked messages.
!! Tributary refuses clustered (replicas > 1) checkpoints on this server;
!! single-server tests still run, cluster tests may fail.
!! With Go installed (https://go.dev/dl/) and TRIBUTARY_NATS_SERVER unset,
!! this script builds nats-server $NATS_SERVER_VERSION into $cache_dir.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
}

# Names the chosen binary (the one stdout line), warns if it is old, and ends the script.
use() {
  local version
  version=$(version_of "$1")
  if [ -z "$version" ]; then
    echo "$1 does not report a nats-server version (\`$1 --version\`)" >&2
    exit 1
  fi
  is_current "$version" || warn_old "$1" "$version"
  echo "nats-server: $1 (v$version)"
  exit 0
}

# The binaries outside the cache: PATH first, then where Debian installs it.
installed() {
  command -v nats-server 2>/dev/null || true
  for file in /usr/sbin/nats-server /usr/bin/nats-server; do
    [ -x "$file" ] && echo "$file"
  done
  return 0
}

# Builds the pinned release into a temporary folder beside the cache, then moves it in:
# a rename within one file system, so an interrupted build never leaves half a binary.
build_tmp=""
trap '[ -z "$build_tmp" ] || rm -rf "$build_tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
build_pinned() {
  mkdir -p "$cache_root"
  build_tmp=$(mktemp -d "$cache_root/.nats-server-build.XXXXXX")
  local tmp=$build_tmp
  echo "building nats-server $NATS_SERVER_VERSION with $(go version) into $cache_dir (once per machine, about a minute)" >&2
  if GOBIN="$tmp" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" >&2 && [ -x "$tmp/nats-server" ]; then
    mkdir -p "$cache_dir"
    mv -f "$tmp/nats-server" "$cached"
    rm -rf "$tmp"
    return 0
  fi
  rm -rf "$tmp"
  echo "building nats-server $NATS_SERVER_VERSION with Go failed (output above)" >&2
  return 1
}

if [ -n "${TRIBUTARY_NATS_SERVER:-}" ]; then
  if [ -x "$TRIBUTARY_NATS_SERVER" ] && [ -f "$TRIBUTARY_NATS_SERVER" ]; then use "$TRIBUTARY_NATS_SERVER"; fi
  echo "TRIBUTARY_NATS_SERVER=$TRIBUTARY_NATS_SERVER is not an executable file: unset it or point it at a nats-server 2.10+" >&2
  exit 1
fi

if [ -x "$cached" ] && [ "$(version_of "$cached")" = "${NATS_SERVER_VERSION#v}" ]; then use "$cached"; fi

old=""
while IFS= read -r file; do
  [ -n "$file" ] || continue
  version=$(version_of "$file")
  if [ -n "$version" ] && is_current "$version"; then use "$file"; fi
  [ -n "$old" ] || [ -z "$version" ] || old="$file"
done < <(installed)

why="no Go toolchain here"
if command -v go >/dev/null 2>&1; then
  if build_pinned; then use "$cached"; fi
  why="the Go build failed"
fi

if [ -n "$old" ]; then use "$old"; fi

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "$why, so no nats-server $NATS_SERVER_VERSION: installing Debian's package nats-server (2.9.x) as a last resort" >&2
  if apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; then
    file=$(installed | head -n 1) || true
    if [ -n "$file" ]; then use "$file"; fi
  fi
  echo "installing Debian's package nats-server failed" >&2
fi

cat >&2 <<EOF
no nats-server could be provided, and the tests need one (2.10 or newer). Either:
  - install Go (https://go.dev/dl/) and run this script again (it builds $NATS_SERVER_VERSION), or
  - put a nats-server 2.10+ on PATH, or set TRIBUTARY_NATS_SERVER to its path.
EOF
exit 1
