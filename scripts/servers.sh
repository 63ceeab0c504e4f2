#!/usr/bin/env bash
# Start or stop every real test server on loopback.
#   scripts/servers.sh start   -> starts them, writes $IDEM_RUN_DIR/servers.env, prints its export lines
#   scripts/servers.sh stop    -> stops what start started
# Each backend has its own scripts/servers/<name>.sh with the same two verbs;
# it builds or installs its server once into the cache outside the clone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
export IDEM_RUN_DIR="${IDEM_RUN_DIR:-$IDEM_CACHE/run}"
mkdir -p "$IDEM_RUN_DIR"
servers=(redis redis7 minio versitygw gcs postgres)

case "${1:-}" in
  start)
    : > "$IDEM_RUN_DIR/servers.env"
    for s in "${servers[@]}"; do
      echo "idem: starting $s" >&2
      bash "$here/servers/$s.sh" start "$IDEM_RUN_DIR/$s" >> "$IDEM_RUN_DIR/servers.env"
    done
    cat "$IDEM_RUN_DIR/servers.env"
    ;;
  stop)
    for s in "${servers[@]}"; do bash "$here/servers/$s.sh" stop "$IDEM_RUN_DIR/$s" || true; done
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
