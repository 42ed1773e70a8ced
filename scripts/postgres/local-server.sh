#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for sweep storage: tests, and trying many sweep
# workers on one machine. Needs PostgreSQL's server binaries (Debian: apt-get install postgresql).
#
#   scripts/postgres/local-server.sh start   # prints the storage URL: postgresql://postgres@127.0.0.1:<port>/optuna
#   scripts/postgres/local-server.sh stop    # stops it and deletes its data
#
# Data, socket and log live in $OPTLAB_PG_DIR (default /tmp/optlab-pg); the port is
# $OPTLAB_PG_PORT (default 55432). Trust authentication on loopback only: for tests, never a
# shared server (docs/cluster.md says how to point workers at a real one).
set -euo pipefail
DIR=${OPTLAB_PG_DIR:-/tmp/optlab-pg}
PORT=${OPTLAB_PG_PORT:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$BIN" ] || BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
[ -x "$BIN/initdb" ] || { echo "local-server: PostgreSQL's initdb not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {  # initdb and postgres refuse to run as root: run them as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    "$0" stop >/dev/null 2>&1 || true
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_owner "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
      || { cat "$DIR/server.log" >&2; exit 1; }
    as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres optuna
    echo "postgresql://postgres@127.0.0.1:$PORT/optuna"
    ;;
  stop)
    if [ -d "$DIR/data" ]; then as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
