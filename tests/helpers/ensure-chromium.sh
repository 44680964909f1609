#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the web UI's browser test
# (playwright-core drives it and downloads no browser of its own). Installs the package
# when missing and this runs as root with apt-get; otherwise says what to do and fails,
# so that `npm test` never runs without it.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's package for the web UI test" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] && exit 0
fi
echo "chromium: /usr/bin/chromium is missing; install it (apt-get install -y chromium) to run the web UI test" >&2
exit 1
