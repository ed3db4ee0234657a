#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for hptune's tests, on 127.0.0.1, and print its URL.
#
#   eval "$(bash scripts/postgres.sh)"     # exports HPTUNE_TEST_POSTGRES_URL
#   bash scripts/postgres.sh stop
#
# Installs Debian's postgresql package if no server is on the machine (root only). The server
# lives in $HPTUNE_PG_DIR (default /tmp/hptune-postgres), listens on $HPTUNE_PG_PORT (default
# 54329) and trusts local connections: it is for tests, never for data.
set -euo pipefail

PG_DIR=${HPTUNE_PG_DIR:-/tmp/hptune-postgres}
PG_PORT=${HPTUNE_PG_PORT:-54329}
URL="postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"

say() { printf '%s\n' "$*" >&2; }

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
  if [ "$(id -u)" != 0 ]; then
    say "postgres.sh: no PostgreSQL server found and not root to install one (apt-get install postgresql)"
    exit 1
  fi
  say "postgres.sh: installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
fi

# PostgreSQL refuses to run as root: run it as the 'postgres' user the package creates.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$*"
  else
    bash -c "$*"
  fi
}

if [ "${1:-start}" = stop ]; then
  [ -d "$PG_DIR/data" ] && as_owner "'$BIN/pg_ctl' -D '$PG_DIR/data' -m fast stop" >&2 || true
  exit 0
fi

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    as_owner "'$BIN/initdb' -D '$PG_DIR/data' -U postgres -A trust --no-sync" >/dev/null
  fi
  as_owner "'$BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 60 \
    -o \"-h 127.0.0.1 -p $PG_PORT -k '$PG_DIR' -c fsync=off -c max_connections=200\" start" >&2
fi
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { say "postgres.sh: the server did not start; see $PG_DIR/server.log"; exit 1; }
echo "export HPTUNE_TEST_POSTGRES_URL=$URL"
