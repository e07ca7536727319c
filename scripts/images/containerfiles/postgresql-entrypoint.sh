#!/bin/sh
# Development PostgreSQL: initdb an empty data directory on first start, then exec postgres.
#   PGDATA                     data directory (default /var/lib/postgresql/data/pgdata: a
#                              subdirectory, so the volume mounted above it may be root-owned)
#   POSTGRES_USER / _DB        superuser and database created on first start
#   POSTGRES_PASSWORD          the superuser's password (required unless auth is trust)
#   POSTGRES_HOST_AUTH_METHOD  scram-sha-256 (default), md5 or trust, for TCP connections
# Extra arguments go to postgres (e.g. -c max_connections=200).
set -eu
PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
say() { echo "postgresql-entrypoint: $*" >&2; }

case "$method" in
  trust | md5 | scram-sha-256) ;;
  *) say "POSTGRES_HOST_AUTH_METHOD must be trust, md5 or scram-sha-256, not '$method'"; exit 64 ;;
esac
for name in "$user" "$db"; do
  case "$name" in
    "" | [0-9]* | *[!a-z0-9_]*) say "'$name': names are lower-case letters, digits, _"; exit 64 ;;
  esac
done

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=""
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile="$(dirname "$PGDATA")/.pwfile.$$"
    (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile")
  elif [ "$method" != trust ]; then
    say "POSTGRES_PASSWORD is required unless POSTGRES_HOST_AUTH_METHOD=trust"
    exit 64
  fi
  say "initdb $PGDATA (superuser $user, database $db, host auth $method)"
  # Local socket connections are trusted (only processes inside the pod reach the socket).
  initdb --pgdata="$PGDATA" --username="$user" ${pwfile:+--pwfile="$pwfile"} \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$method" >/dev/null
  [ -z "$pwfile" ] || rm -f "$pwfile"
  # initdb allows host connections from loopback only; other pods connect over the network.
  printf 'host all all 0.0.0.0/0 %s\nhost all all ::/0 %s\n' "$method" "$method" \
    >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
