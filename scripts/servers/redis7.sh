#!/usr/bin/env bash
# Debian's Redis 7.0 next to the Valkey 8 matrix, for the conformance suite only:
#   redis7.sh start <rundir> -> one standalone server + a 3-master cluster; prints ONLY
#                               `export IDEM_TEST_REDIS7_URL=...` and `export IDEM_TEST_REDIS7_CLUSTER=...`
#   redis7.sh stop <rundir>  -> stops them
# The same script as the Valkey servers (redis.sh), with the redis7 binary set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  start) exec bash "$here/redis.sh" start "${2:-}" redis7 ;;
  *) exec bash "$here/redis.sh" "$@" ;;
esac
