#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests (the server refuses to run as root,
# so it runs as the `postgres` user when started by root).
#
#   eval "$(bash scripts/pg_throwaway.sh start DIR [PORT])"   # exports NSM_TEST_PG_DSN
#   bash scripts/pg_throwaway.sh stop DIR
# `start` on an existing DIR starts the same cluster again (the fault tests restart a killed server).
# fsync is off (tests); PG_FSYNC=on keeps it, as a real server does (the fleet benchmark).
set -euo pipefail
cmd=${1:?usage: pg_throwaway.sh start|stop DIR [PORT]}
dir=${2:?data directory}
port=${3:-55432}
pgbin=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1)
[[ -n "$pgbin" ]] || { echo "PostgreSQL server not installed: run 'bash scripts/setup.sh --test' (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
  start)
    fresh=false
    if [[ ! -d "$dir/data" ]]; then
      fresh=true
      mkdir -p "$dir"
      [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
      as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log"
    fi
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/data -c fsync=${PG_FSYNC:-off} -c max_connections=${PG_MAX_CONNECTIONS:-100}" start >/dev/null
    $fresh && as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres nsm_test
    echo "export NSM_TEST_PG_DSN=postgresql://postgres@127.0.0.1:$port/nsm_test"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    ;;
  *) echo "usage: pg_throwaway.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
