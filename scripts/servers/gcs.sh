#!/usr/bin/env bash
# fake-gcs-server on loopback for the @idem/gcs tests.
#   gcs.sh start <rundir>  -> builds once into the cache, starts it (memory
#                             backend, plain http, free 127.0.0.1 port), creates
#                             the test bucket, prints export lines on stdout only
#   gcs.sh stop <rundir>   -> stops what start started
#
# Version: v1.56.1 is the first release where every upload type honours
# ifGenerationMatch (simple/media uploads since v1.56.0, resumable since
# v1.55.0; multipart since v1.20), and the memory backend checks the
# generation and writes under one mutex, so ifGenerationMatch=0 is an atomic
# create-if-absent. Delete in this release ignores ifGenerationMatch, but a
# delete naming `generation=<g>` removes only that live generation, under
# the same mutex.
set -euo pipefail

FAKE_GCS_VERSION=v1.56.1
BUCKET=idem-test
cache="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}"
bin="$cache/bin/fake-gcs-server-$FAKE_GCS_VERSION"

log() { echo "gcs.sh: $*" >&2; }

build() {
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { log "go is required to build fake-gcs-server"; exit 1; }
  local tmp
  tmp=$(mktemp -d "$cache/gobuild.XXXXXX")
  log "building fake-gcs-server $FAKE_GCS_VERSION (once) into $bin"
  # Output goes to stderr: stdout is reserved for the export lines.
  GOBIN="$tmp" go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >&2
  mkdir -p "$cache/bin"
  mv "$tmp/fake-gcs-server" "$bin"
  rm -rf "$tmp"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  log "no free port found"; return 1
}

running_pid() {
  local rundir=$1 pid
  [ -f "$rundir/pid" ] || return 1
  pid=$(cat "$rundir/pid")
  # Only ever signal our own server, even if the pid was reused.
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "fake-gcs-server-$FAKE_GCS_VERSION" || return 1
  echo "$pid"
}

print_env() {
  echo "export STORAGE_EMULATOR_HOST=http://127.0.0.1:$(cat "$1/port")"
  echo "export IDEM_TEST_GCS_BUCKET=$BUCKET"
}

start() {
  local rundir=$1 port pid attempt i
  mkdir -p "$rundir"
  rundir=$(cd "$rundir" && pwd)
  if running_pid "$rundir" >/dev/null; then print_env "$rundir"; return 0; fi
  build
  # The seed dir holds one empty folder: fake-gcs-server turns it into a bucket.
  mkdir -p "$rundir/data/$BUCKET"
  for attempt in 1 2 3; do
    port=$(free_port)
    setsid "$bin" -backend memory -scheme http -host 127.0.0.1 -port "$port" \
      -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
      -data "$rundir/data" -log-level warn \
      </dev/null >"$rundir/fake-gcs-server.log" 2>&1 &
    pid=$!
    echo "$pid" > "$rundir/pid"
    echo "$port" > "$rundir/port"
    for i in $(seq 1 100); do
      if curl -fsS -o /dev/null 2>/dev/null "http://127.0.0.1:$port/storage/v1/b/$BUCKET"; then
        print_env "$rundir"; return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    log "attempt $attempt: server on port $port did not answer; log follows"
    cat "$rundir/fake-gcs-server.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$rundir/pid"
  done
  log "could not start fake-gcs-server"; exit 1
}

stop() {
  local rundir=$1 pid i
  pid=$(running_pid "$rundir") || { rm -f "$rundir/pid"; return 0; }
  kill "$pid"
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$rundir/pid"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { log "usage: $0 start <rundir>"; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { log "usage: $0 stop <rundir>"; exit 2; }; stop "$2" ;;
  *) log "usage: $0 start|stop <rundir>"; exit 2 ;;
esac
