#!/usr/bin/env bash
# A real PostgreSQL 15 (Debian's) for the @idem/postgres tests.
#   postgres.sh start <rundir> -> installs Debian's postgresql-15 if missing (no system service is
#                                 started), `initdb` into a fresh data directory, starts the server on
#                                 a free loopback port (TCP only, no Unix socket), creates the test
#                                 database; prints ONLY `export IDEM_TEST_POSTGRES_URL=...`
#   postgres.sh stop <rundir>  -> stops that server and removes its data (no error if none)
#   postgres.sh kill <rundir>  -> SIGKILLs the server (the fault tests: no shutdown checkpoint)
#   postgres.sh shutdown <rundir> -> a clean shutdown (pg_ctl stop -m fast), data kept
#   postgres.sh replica <rundir> <primary-rundir> -> a streaming replica of the server started in
#                                 <primary-rundir> (pg_basebackup -R), on a port of its own; prints its URL
#   postgres.sh promote <rundir> -> the replica becomes a primary (pg_ctl promote)
#   postgres.sh restart <rundir> -> starts a shut down or killed server again on its port and data (crash recovery)
# Idempotent: a second `start` on a live <rundir> reprints the same line; `stop` twice is fine.
#
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user the Debian
# package creates. Its data directory is then a private temporary directory owned by that user
# (a test run's <rundir> is often mode 0700 and owned by root); <rundir>/datadir names it.
set -euo pipefail

PG_MAJOR=15
DB=idem_test
PG_USER=idem
PG_PASSWORD=idem-test-password

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

verb="${1:-}"
rundir="${2:-}"
[ -n "$verb" ] && [ -n "$rundir" ] || { echo "usage: $0 start|stop|kill|shutdown|restart|replica|promote <rundir>" >&2; exit 2; }

bindir=/usr/lib/postgresql/$PG_MAJOR/bin

install_postgres() {
  [ -x "$bindir/postgres" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] && return 0
  log "installing Debian's postgresql-$PG_MAJOR"
  [ "$(id -u)" = 0 ] || die "postgresql-$PG_MAJOR missing and not root: install it first (apt-get install postgresql-$PG_MAJOR)"
  # Keep Debian's own cluster service from starting during the install: we run our own server.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "postgresql-$PG_MAJOR" postgresql-client-$PG_MAJOR; } >&2 || rc=$?
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install postgresql-$PG_MAJOR failed ($rc)"
  [ -x "$bindir/postgres" ] || die "postgresql-$PG_MAJOR installed but $bindir/postgres is missing"
}

# As root, every server command runs as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
  local p i
  for i in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768+), so an outgoing socket never holds it.
    p=$(( 23000 + RANDOM % 2700 ))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

datadir() { cat "$rundir/datadir" 2>/dev/null; }
pid_of() { local d; d=$(datadir) && [ -f "$d/postmaster.pid" ] && head -n 1 "$d/postmaster.pid"; }
alive() {
  local pid
  pid=$(pid_of) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'postgres'
}
ready() { "$bindir/pg_isready" -q -h 127.0.0.1 -p "$1" -d postgres -t 1 2>/dev/null; }

start_server() { # port: pg_ctl start on the recorded data directory, waiting until it accepts connections
  local d port=$1
  d=$(datadir)
  # synchronous_commit and fsync stay on (PostgreSQL's defaults): an acknowledged commit is on disk.
  # No Unix socket: loopback TCP only.
  as_pg "$bindir/pg_ctl" -D "$d" -l "$d/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='' -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
    start >&2 || { tail -20 "$d/server.log" >&2 || true; die "PostgreSQL did not start (log: $d/server.log)"; }
  local i
  for i in $(seq 1 100); do ready "$port" && return 0; sleep 0.1; done
  die "PostgreSQL on 127.0.0.1:$port does not accept connections"
}

stop_server() {
  local d pid i
  d=$(datadir) || d=""
  if alive; then
    pid=$(pid_of)
    as_pg "$bindir/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  # The data directory is <tmp>/idem-postgres.XXXXXX/data: the whole private directory goes.
  [ -n "$d" ] && case "$d" in */idem-postgres.*/data) rm -rf "$(dirname "$d")" ;; esac
  rm -f "$rundir/datadir" "$rundir/port" "$rundir/env"
}

case "$verb" in
  start)
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    if alive && [ -f "$rundir/env" ] && ready "$(cat "$rundir/port")"; then log "already running in $rundir"; cat "$rundir/env"; exit 0; fi
    stop_server
    install_postgres
    d=$(mktemp -d "${TMPDIR:-/tmp}/idem-postgres.XXXXXX")
    echo "$d" > "$rundir/datadir"
    [ "$(id -u)" = 0 ] && chown postgres: "$d"
    printf '%s\n' "$PG_PASSWORD" > "$d.pw"
    [ "$(id -u)" = 0 ] && chown postgres: "$d.pw"
    # Password (SCRAM) over TCP, so the URL carries a secret the redaction tests can look for.
    as_pg "$bindir/initdb" -D "$d/data" -U "$PG_USER" --pwfile="$d.pw" --auth-host=scram-sha-256 --auth-local=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null 2>"$rundir/initdb.log" || { rm -rf "$d.pw" "$d"; cat "$rundir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$d.pw"
    echo "$d/data" > "$rundir/datadir"
    port=$(pick_port)
    echo "$port" > "$rundir/port"
    start_server "$port"
    PGPASSWORD=$PG_PASSWORD "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 \
      -c "CREATE DATABASE $DB" >&2 || die "CREATE DATABASE $DB failed"
    echo "export IDEM_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$DB" > "$rundir/env"
    log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $d/data"
    cat "$rundir/env"
    ;;
  stop)
    [ -d "$rundir" ] || exit 0
    rundir=$(cd "$rundir" && pwd)
    stop_server
    log "stopped PostgreSQL in $rundir"
    ;;
  kill)
    pid=$(pid_of) || die "kill: no server recorded in $rundir"
    # The postmaster and its backends at once, as a machine crash would: no shutdown checkpoint.
    pids=("$pid" $(pgrep -P "$pid" || true))
    kill -9 "${pids[@]}" 2>/dev/null || true
    for p in "${pids[@]}"; do for i in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done; done
    ;;
  shutdown)
    alive || die "shutdown: no live server in $rundir"
    as_pg "$bindir/pg_ctl" -D "$(datadir)" -m fast -w -t 60 stop >&2
    ;;
  replica)
    primary="${3:-}"
    [ -n "$primary" ] && [ -f "$primary/port" ] || die "replica: no primary recorded in ${primary:-?}"
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    stop_server
    d=$(mktemp -d "${TMPDIR:-/tmp}/idem-postgres.XXXXXX")
    [ "$(id -u)" = 0 ] && chown postgres: "$d"
    # -R: standby.signal and primary_conninfo (with this password) written into the copy.
    as_pg env PGPASSWORD="$PG_PASSWORD" "$bindir/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U "$PG_USER" \
      -D "$d/data" -R -X stream -c fast >&2 || { rm -rf "$d"; die "pg_basebackup failed"; }
    echo "$d/data" > "$rundir/datadir"
    port=$(pick_port)
    echo "$port" > "$rundir/port"
    start_server "$port"
    echo "export IDEM_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$DB" > "$rundir/env"
    cat "$rundir/env"
    ;;
  promote)
    alive || die "promote: no live server in $rundir"
    as_pg "$bindir/pg_ctl" -D "$(datadir)" -w -t 60 promote >&2
    ;;
  restart)
    [ -f "$rundir/port" ] || die "restart: no server recorded in $rundir"
    alive && die "restart: the server is still running"
    start_server "$(cat "$rundir/port")"
    ;;
  *) echo "usage: $0 start|stop|kill|shutdown|restart|replica|promote <rundir>" >&2; exit 2 ;;
esac
