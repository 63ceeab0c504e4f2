#!/usr/bin/env bash
# A real versitygw (Versity S3 gateway, posix backend) for the @idem/s3 tests: a second S3
# implementation beside MinIO, so the adapter is not proven on one server's quirks only.
#   versitygw.sh start <rundir>  -> builds versitygw once (cached), starts it on a free loopback port
#                                   with its posix backend in <rundir>, creates the test bucket; prints
#                                   ONLY the `export IDEM_TEST_VERSITYGW_*` lines on stdout
#   versitygw.sh stop <rundir>   -> stops that server and removes its data (no error if none)
# Idempotent: a second `start` on a live <rundir> reprints the same lines; `stop` twice is fine.
# Pinned to a tagged release so every run builds the same server.
set -euo pipefail

VGW_MODULE=github.com/versity/versitygw/cmd/versitygw
VGW_VERSION=v1.8.0
ACCESS_KEY=idemtest
SECRET_KEY=idemtest-secret-key-0123
BUCKET=idem-test
REGION=us-east-1

log() { echo "versitygw.sh: $*" >&2; }
die() { log "$*"; exit 1; }

verb="${1:-}"
rundir="${2:-}"
[ -n "$verb" ] && [ -n "$rundir" ] || { echo "usage: $0 start|stop <rundir>" >&2; exit 2; }

. "$(dirname "$0")/go-server.sh"
cache="$idem_cache"
bin="$cache/bin/versitygw-$VGW_VERSION"

build_versitygw() { go_server_build "$bin" "$VGW_MODULE" "$VGW_VERSION" versitygw; }

alive() {
  local pid
  [ -f "$rundir/versitygw.pid" ] || return 1
  pid=$(cat "$rundir/versitygw.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "versitygw-.* posix"
}

# Signed S3 request with curl's built-in SigV4, so no S3 client is needed here. versitygw
# (unlike MinIO) answers 400 unless the payload hash header is present.
s3curl() { # method path -> prints the HTTP status
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$port$2"
}
# versitygw has no health endpoint: a signed ListBuckets answering 200 means it serves.
healthy() { [ "$(s3curl GET / 2>/dev/null)" = 200 ]; }

stop_server() {
  local pid i
  if alive; then
    pid=$(cat "$rundir/versitygw.pid")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "${rundir:?}/data" "$rundir/versitygw.pid" "$rundir/env"
}

case "$verb" in
  start)
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    if alive && [ -f "$rundir/env" ]; then
      port=$(sed -n 's|.*IDEM_TEST_VERSITYGW_ENDPOINT=http://127.0.0.1:||p' "$rundir/env")
      if healthy; then log "already running in $rundir"; cat "$rundir/env"; exit 0; fi
    fi
    stop_server
    build_versitygw
    port=$(pick_port)
    mkdir -p "$rundir/data"
    # setsid + nohup: the server outlives this script. The root account is the test's only account.
    ROOT_ACCESS_KEY=$ACCESS_KEY ROOT_SECRET_KEY=$SECRET_KEY VGW_REGION=$REGION \
      setsid nohup "$bin" --port "127.0.0.1:$port" posix "$rundir/data" \
        > "$rundir/versitygw.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$rundir/versitygw.pid"
    ok=""
    for i in $(seq 1 300); do
      # kill -0, not alive(): until setsid has exec'd the server its cmdline is still this script's.
      kill -0 "$pid" 2>/dev/null || { tail -20 "$rundir/versitygw.log" >&2; die "versitygw exited during start (log: $rundir/versitygw.log)"; }
      if healthy; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { stop_server; die "versitygw not serving on 127.0.0.1:$port after 30 s"; }
    code=$(s3curl PUT "/$BUCKET") || code=000
    case "$code" in
      200|409) ;;
      *) stop_server; die "creating bucket $BUCKET answered HTTP $code" ;;
    esac
    {
      echo "export IDEM_TEST_VERSITYGW_ENDPOINT=http://127.0.0.1:$port"
      echo "export IDEM_TEST_VERSITYGW_ACCESS_KEY=$ACCESS_KEY"
      echo "export IDEM_TEST_VERSITYGW_SECRET_KEY=$SECRET_KEY"
      echo "export IDEM_TEST_VERSITYGW_BUCKET=$BUCKET"
      echo "export IDEM_TEST_VERSITYGW_REGION=$REGION"
    } > "$rundir/env"
    log "versitygw $VGW_VERSION on 127.0.0.1:$port, bucket $BUCKET, data in $rundir/data"
    cat "$rundir/env"
    ;;
  stop)
    [ -d "$rundir" ] || exit 0
    rundir=$(cd "$rundir" && pwd)
    stop_server
    log "stopped versitygw in $rundir"
    ;;
  *) echo "usage: $0 start|stop <rundir>" >&2; exit 2 ;;
esac
