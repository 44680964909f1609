#!/usr/bin/env bash
# Makes sure a nats-server binary is on PATH (tests start real servers on loopback).
# On a fresh Debian machine it installs Debian's package; elsewhere it says what to do.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then exit 0; fi
if [ -x /usr/sbin/nats-server ] || [ -x /usr/bin/nats-server ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "nats-server missing: installing Debian's package nats-server" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  exit 0
fi
echo "nats-server is required by the tests: install it (Debian: apt-get install nats-server) and retry" >&2
exit 1
