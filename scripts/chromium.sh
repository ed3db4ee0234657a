#!/usr/bin/env bash
# Make Debian's Chromium available to hptune's browser tests and print where it is.
#
#   eval "$(bash scripts/chromium.sh)"     # exports HPTUNE_TEST_CHROMIUM
#
# Installs Debian's chromium package if it is not on the machine (root only), as
# scripts/postgres.sh does for PostgreSQL. The tests drive it with Playwright for Python,
# pointed at this executable; Playwright's own browser downloads are never used.
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }

BIN=$(command -v chromium || true)
if [ -z "$BIN" ]; then
  if [ "$(id -u)" != 0 ]; then
    say "chromium.sh: no chromium found and not root to install one (apt-get install chromium)"
    exit 1
  fi
  say "chromium.sh: installing Chromium from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
  BIN=$(command -v chromium)
fi
test -x "$BIN"
echo "export HPTUNE_TEST_CHROMIUM=$BIN"
