#!/usr/bin/env bash
# A real MinIO server for the @idem/s3 tests.
#   minio.sh start <rundir>  -> builds MinIO once (cached), starts it on a free loopback port with its
#                               data in <rundir>, creates the test bucket; prints ONLY the
#                               `export IDEM_TEST_S3_*` lines on stdout
#   minio.sh stop <rundir>   -> stops that server and removes its data (no error if none)
# Idempotent: a second `start` on a live <rundir> reprints the same lines; `stop` twice is fine.
#
# Version: the MinIO community edition is source-only and its repository is archived; the Go module
# proxy here serves only its final commit (the release-tag pseudo-versions are refused), which is the
# documented `go install github.com/minio/minio@latest` and holds every conditional-write fix
# (If-Match on a missing key -> 404, conditional PUT under lock). Pinned so every run builds the same.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
ACCESS_KEY=idemtest
SECRET_KEY=idemtest-secret-key-0123
BUCKET=idem-test
REGION=us-east-1

log() { echo "minio.sh: $*" >&2; }
die() { log "$*"; exit 1; }

verb="${1:-}"
rundir="${2:-}"
[ -n "$verb" ] && [ -n "$rundir" ] || { echo "usage: $0 start|stop <rundir>" >&2; exit 2; }

. "$(dirname "$0")/go-server.sh"
cache="$idem_cache"
bin="$cache/bin/minio-$MINIO_VERSION"

build_minio() { go_server_build "$bin" "$MINIO_MODULE" "$MINIO_VERSION" minio; }

alive() {
  local pid
  [ -f "$rundir/minio.pid" ] || return 1
  pid=$(cat "$rundir/minio.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "minio-.* server"
}

healthy() { curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$1/minio/health/live"; }

# Signed S3 request with curl's built-in SigV4, so no S3 client is needed here.
s3curl() { # method path -> prints the HTTP status
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$port$2"
}

stop_server() {
  local pid i
  if alive; then
    pid=$(cat "$rundir/minio.pid")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "${rundir:?}/data" "$rundir/minio.pid" "$rundir/env"
}

case "$verb" in
  start)
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    if alive && [ -f "$rundir/env" ]; then
      port=$(sed -n 's|.*IDEM_TEST_S3_ENDPOINT=http://127.0.0.1:||p' "$rundir/env")
      if healthy "$port"; then log "already running in $rundir"; cat "$rundir/env"; exit 0; fi
    fi
    stop_server
    build_minio
    port=$(pick_port)
    console=$(pick_port "$port")
    mkdir -p "$rundir/data"
    # setsid + nohup: the server outlives this script; the console is off and bound to loopback anyway.
    MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY MINIO_BROWSER=off MINIO_UPDATE=off \
      MINIO_REGION=$REGION MINIO_CI_CD=on \
      setsid nohup "$bin" server --quiet --anonymous \
        --address "127.0.0.1:$port" --console-address "127.0.0.1:$console" "$rundir/data" \
        > "$rundir/minio.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$rundir/minio.pid"
    ok=""
    for i in $(seq 1 300); do
      # kill -0, not alive(): until setsid has exec'd minio its cmdline is still this script's.
      kill -0 "$pid" 2>/dev/null || { tail -20 "$rundir/minio.log" >&2; die "minio exited during start (log: $rundir/minio.log)"; }
      if healthy "$port"; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { stop_server; die "minio not healthy on 127.0.0.1:$port after 30 s"; }
    code=$(s3curl PUT "/$BUCKET") || code=000
    case "$code" in
      200|409) ;;
      *) stop_server; die "creating bucket $BUCKET answered HTTP $code" ;;
    esac
    {
      echo "export IDEM_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
      echo "export IDEM_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
      echo "export IDEM_TEST_S3_SECRET_KEY=$SECRET_KEY"
      echo "export IDEM_TEST_S3_BUCKET=$BUCKET"
      echo "export IDEM_TEST_S3_REGION=$REGION"
    } > "$rundir/env"
    log "MinIO $MINIO_VERSION on 127.0.0.1:$port, bucket $BUCKET, data in $rundir/data"
    cat "$rundir/env"
    ;;
  stop)
    [ -d "$rundir" ] || exit 0
    rundir=$(cd "$rundir" && pwd)
    stop_server
    log "stopped minio in $rundir"
    ;;
  *) echo "usage: $0 start|stop <rundir>" >&2; exit 2 ;;
esac
