#!/usr/bin/env bash
# PostgreSQL for the tests, without root where possible.
#
#   scripts/ensure-postgres.sh            installs if missing; prints the directory of initdb/pg_ctl
#   scripts/ensure-postgres.sh start      starts a throwaway cluster on a free loopback port and prints
#                                         "URL DIR": a postgres:// URL (user fleetbench, a fresh random
#                                         password, database fleetbench) and the cluster's directory
#   scripts/ensure-postgres.sh stop DIR   stops that cluster and removes its directory
#
# Where the server programs come from, in order: $FLEETBENCH_PG_BINDIR, an installed PostgreSQL
# (Debian's /usr/lib/postgresql/*/bin), or Debian's packages fetched with `apt-get download` and
# unpacked with `dpkg -x` under $FLEETBENCH_CACHE/postgres/root (no root needed; libraries the system
# lacks are unpacked beside them and found through LD_LIBRARY_PATH). As root with no PostgreSQL,
# `apt-get install postgresql` is used instead.
#
# The cluster lives under $FLEETBENCH_CACHE/postgres/clusters. PostgreSQL refuses to run as root: as
# root the cluster is run by the user `nobody`, in a directory under /tmp (a root home directory is
# closed to other users). It listens on 127.0.0.1 only, with password (SCRAM) authentication and
# fsync off: it is for tests and is thrown away.
set -euo pipefail
cache=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/postgres

find_bindir() {
  local d
  for d in "${FLEETBENCH_PG_BINDIR:-}" /usr/lib/postgresql/*/bin "$cache"/root/usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/createdb" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Libraries unpacked beside a downloaded PostgreSQL.
export LD_LIBRARY_PATH="$(printf '%s:' "$cache"/root/usr/lib/x86_64-linux-gnu "$cache"/root/usr/lib/postgresql/*/lib)${LD_LIBRARY_PATH:-}"

install_pg() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" = 0 ] && [ "${FLEETBENCH_PG_NO_ROOT:-0}" != 1 ]; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    return
  fi
  command -v apt-get >/dev/null || { echo "no PostgreSQL and no apt-get to fetch it: install PostgreSQL or set FLEETBENCH_PG_BINDIR" >&2; exit 1; }
  local server
  server=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: \(postgresql-[0-9][0-9]*\)$/\1/p' | head -n1)
  [ -n "$server" ] || { echo "apt-cache knows no postgresql package (apt lists missing? run apt-get update as root once)" >&2; exit 1; }
  # The server and its client programs (createdb) always; their libraries where the system lacks them.
  local client=${server/postgresql-/postgresql-client-}
  local pkgs=("$server" "$client") p
  for p in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$server" | grep '^[a-z0-9]' | sort -u); do
    case "$p" in
      libllvm*|libz3-*|locales-all|*-perl|perl*|libperl*) continue ;;  # the JIT and the wrapper scripts: unused
    esac
    [ "$p" = "$server" ] || [ "$p" = "$client" ] || dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
  done
  mkdir -p "$cache/debs" "$cache/root"
  (cd "$cache/debs" && apt-get download -qq "${pkgs[@]}" >/dev/null)
  for p in "$cache"/debs/*.deb; do dpkg -x "$p" "$cache/root"; done
}

bindir=$(find_bindir || { install_pg >&2; find_bindir; }) || { echo "PostgreSQL's programs are still missing after installing" >&2; exit 1; }
"$bindir/postgres" --version >/dev/null || { echo "$bindir/postgres does not run (missing libraries?)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; else "$@"; fi
}

case "${1:-}" in
  "")
    echo "$bindir"
    ;;
  start)
    if [ "$(id -u)" = 0 ]; then
      dir=$(mktemp -d /tmp/fleetbench-pg.XXXXXX)
    else
      mkdir -p "$cache/clusters"
      dir=$(mktemp -d "$cache/clusters/pg.XXXXXX")
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    (umask 077; printf '%s\n' "$password" >"$dir/password")
    [ "$(id -u)" = 0 ] && chown -R nobody:nogroup "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U fleetbench --auth=scram-sha-256 --pwfile="$dir/password" \
      -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    PGPASSWORD=$password "$bindir/createdb" -h 127.0.0.1 -p "$port" -U fleetbench fleetbench \
      || { as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1; exit 1; }
    echo "postgres://fleetbench:$password@127.0.0.1:$port/fleetbench $dir"
    ;;
  stop)
    dir=${2:?usage: ensure-postgres.sh stop DIR}
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: ensure-postgres.sh [start | stop DIR]" >&2
    exit 2
    ;;
esac
