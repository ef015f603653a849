#!/usr/bin/env bash
# Run the whole test suite (after `bash scripts/setup.sh --test`). Extra args go to pytest.
# Uses the PostgreSQL server named by NSM_TEST_PG_DSN, or starts a throwaway one on 127.0.0.1.
# ROS 2 traffic stays on this machine: discovery is limited to localhost on a random domain.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${NSM_VENV:-$root/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((100 + RANDOM % 100))}

if [[ -z "${NSM_TEST_PG_DSN:-}" ]]; then
  pgdir=$(mktemp -d /tmp/nsm-pg.XXXXXX)
  trap 'bash "$root/scripts/pg_throwaway.sh" stop "$pgdir"; rm -rf "$pgdir"' EXIT
  eval "$(bash "$root/scripts/pg_throwaway.sh" start "$pgdir" $((56000 + RANDOM % 1000)))"
fi
cd "$root"
"$venv/bin/python" -m pytest "$@"
