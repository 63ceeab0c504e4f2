#!/usr/bin/env bash
# Real Redis servers for the @idem/valkey tests (Redis 7.0 from Debian stands in for Valkey).
#   redis.sh start <rundir>  -> one standalone server + a 3-master cluster on free loopback ports;
#                               prints ONLY the `export IDEM_TEST_REDIS_*` lines on stdout
#   redis.sh stop <rundir>   -> shuts down every server started in <rundir> (no error if none)
# Idempotent: a second `start` on a live <rundir> reprints the same lines; `stop` twice is fine.
set -euo pipefail

log() { echo "redis.sh: $*" >&2; }
die() { log "$*"; exit 1; }

verb="${1:-}"
rundir="${2:-}"
[ -n "$verb" ] && [ -n "$rundir" ] || { echo "usage: $0 start|stop <rundir>" >&2; exit 2; }

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  log "installing Debian's redis-server and redis-tools"
  [ "$(id -u)" = 0 ] || die "redis-server missing and not root: install redis-server redis-tools first"
  # Keep Debian's own service from starting during the install: we run our own servers.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools; } >&2 || rc=$?
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install redis-server redis-tools failed ($rc)"
}

# A port is free when nothing listens on it nor on its cluster bus port (+10000).
port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
  local p i
  for i in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768+), bus port included, so outgoing sockets never hold it.
    p=$(( 20000 + RANDOM % 2700 ))
    port_in_use "$p" || port_in_use $((p + 10000)) || grep -qx "$p" "$rundir/ports" 2>/dev/null || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

alive() { # pidfile -> true if that pid is a live redis-server
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q redis-server
}

start_one() { # port [extra args...]
  local port=$1; shift
  mkdir -p "$rundir/$port"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$rundir/$port.pid" --logfile "$rundir/$port.log" --dir "$rundir/$port" \
    --enable-debug-command local "$@" >&2
}

wait_ping() { # port
  local i
  for i in $(seq 1 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  die "server on port $1 did not answer PING (see $rundir/$1.log)"
}

stop_all() {
  local f pid port i
  for f in "$rundir"/*.pid; do
    [ -e "$f" ] || continue
    port=$(basename "$f" .pid)
    if alive "$f"; then
      pid=$(cat "$f")
      redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  # A stale nodes.conf would make a reused port believe it is already in a cluster.
  if [ -f "$rundir/ports" ]; then
    while read -r port; do [ -n "$port" ] && rm -rf "${rundir:?}/$port" "$rundir/$port.log"; done < "$rundir/ports"
  fi
  rm -f "$rundir/env" "$rundir/ports"
}

all_alive() {
  local p
  [ -f "$rundir/env" ] && [ -f "$rundir/ports" ] || return 1
  while read -r p; do
    alive "$rundir/$p.pid" || return 1
    [ "$(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null)" = PONG ] || return 1
  done < "$rundir/ports"
}

cluster_ready() { # ports...: every node says ok, and --cluster check finds them in agreement
  local p
  for p in "$@"; do
    redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
  redis-cli --cluster check "127.0.0.1:$1" 2>/dev/null | grep -q 'All nodes agree about slots configuration' || return 1
}

case "$verb" in
  start)
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    if all_alive; then log "already running in $rundir"; cat "$rundir/env"; exit 0; fi
    stop_all
    install_redis
    : > "$rundir/ports"
    standalone=$(pick_port); echo "$standalone" >> "$rundir/ports"
    start_one "$standalone"
    nodes=()
    for i in 1 2 3; do
      p=$(pick_port); echo "$p" >> "$rundir/ports"; nodes+=("$p")
      start_one "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 5000
    done
    for p in "$standalone" "${nodes[@]}"; do wait_ping "$p"; done
    addrs=(); for p in "${nodes[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >&2 ||
      die "redis-cli --cluster create failed"
    ok=""
    for i in $(seq 1 150); do
      if cluster_ready "${nodes[@]}"; then ok=1; break; fi
      sleep 0.2
    done
    [ -n "$ok" ] || { stop_all; die "cluster did not reach cluster_state:ok in 30 s"; }
    cluster=$(IFS=,; echo "${addrs[*]}")
    {
      echo "export IDEM_TEST_REDIS_URL=redis://127.0.0.1:$standalone"
      echo "export IDEM_TEST_REDIS_CLUSTER=$cluster"
    } > "$rundir/env"
    log "standalone on $standalone, cluster on ${nodes[*]} ($(redis-server --version | sed 's/ sha=.*//'))"
    cat "$rundir/env"
    ;;
  stop)
    [ -d "$rundir" ] || exit 0
    stop_all
    log "stopped servers in $rundir"
    ;;
  *) echo "usage: $0 start|stop <rundir>" >&2; exit 2 ;;
esac
