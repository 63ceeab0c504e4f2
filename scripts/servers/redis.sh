#!/usr/bin/env bash
# Real servers for the @idem/valkey tests: Valkey 8.0 (from Debian bookworm-backports, unpacked
# into the cache by valkey-install.sh) and Debian's Redis 7.0 (installed with apt as before).
#   redis.sh start <rundir> [valkey]
#                            -> on Valkey 8: one standalone server + a 3-master cluster on free
#                               loopback ports; for the failover tests also a primary + replica
#                               watched by three sentinels (master name idem-ha) and a 3-master
#                               cluster with one replica per master; prints ONLY the
#                               `export IDEM_TEST_REDIS_*` lines (IDEM_TEST_REDIS_SERVER_BIN: the
#                               valkey-server the tests' private servers run; IDEM_TEST_REDIS_POWERLOSS_LIB:
#                               the power-cut shim of the power-loss test, powerloss.sh)
#   redis.sh start <rundir> redis7
#                            -> on Redis 7.0: one standalone server + a 3-master cluster; prints ONLY
#                               `export IDEM_TEST_REDIS7_URL=...` and `export IDEM_TEST_REDIS7_CLUSTER=...`
#   redis.sh stop <rundir>   -> shuts down every server started in <rundir> (no error if none)
#   redis.sh restart-node <rundir> <port> -> starts a killed server again with its first arguments
#                               (the failover tests SIGKILL a primary and bring it back as a replica)
# Idempotent: a second `start` on a live <rundir> reprints the same lines; `stop` twice is fine.
set -euo pipefail

log() { echo "redis.sh: $*" >&2; }
die() { log "$*"; exit 1; }

verb="${1:-}"
rundir="${2:-}"
[ -n "$verb" ] && [ -n "$rundir" ] || { echo "usage: $0 start <rundir> [valkey|redis7], stop <rundir> or restart-node <rundir> <port>" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-sentinel >/dev/null && return 0
  log "installing Debian's redis-server, redis-sentinel and redis-tools"
  [ "$(id -u)" = 0 ] || die "redis-server missing and not root: install redis-server redis-tools first"
  # Keep Debian's own service from starting during the install: we run our own servers.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-sentinel redis-tools; } >&2 || rc=$?
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install redis-server redis-sentinel redis-tools failed ($rc)"
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

# The binary set a start uses: Valkey 8 from the cache, or Debian's Redis 7.0 on PATH. The cli is
# recorded in <rundir>/cli so that stop and restart-node talk to the servers with their own.
use_binaries() { # valkey|redis7
  case "$1" in
    valkey)
      local bin
      bin=$(bash "$here/valkey-install.sh") || die "Valkey 8 install failed"
      server="$bin/valkey-server"; sentinel="$bin/valkey-sentinel"; cli="$bin/valkey-cli" ;;
    redis7)
      server=$(command -v redis-server); sentinel=$(command -v redis-sentinel); cli=$(command -v redis-cli) ;;
    *) die "unknown server set '$1' (valkey or redis7)" ;;
  esac
  echo "$cli" > "$rundir/cli"
}
cli() { "${cli:=$(cat "$rundir/cli" 2>/dev/null || command -v redis-cli)}" "$@"; }

alive() { # pidfile -> true if that pid is a live redis-/valkey-server or -sentinel
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -Eq '(redis|valkey)-(server|sentinel)'
}

# Each server's arguments are kept (one a line) so that restart-node can bring a killed one back.
run_saved() { # port
  local args=()
  mapfile -t args < "$rundir/$1.args"
  "${args[@]}" >&2
}

start_one() { # port [extra args...]
  local port=$1; shift
  mkdir -p "$rundir/$port"
  printf '%s\n' "$server" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$rundir/$port.pid" --logfile "$rundir/$port.log" --dir "$rundir/$port" \
    --enable-debug-command local "$@" > "$rundir/$port.args"
  run_saved "$port"
}

start_sentinel() { # port primary-port
  local port=$1
  mkdir -p "$rundir/$port"
  # Sentinel rewrites its config file (it records what it learns), so each has its own.
  # down-after 1 s: a killed primary is replaced within a few seconds, which keeps the tests short.
  printf '%s\n' "bind 127.0.0.1" "port $port" "daemonize yes" "pidfile $rundir/$port.pid" \
    "logfile $rundir/$port.log" "dir $rundir/$port" "sentinel monitor idem-ha 127.0.0.1 $2 2" \
    "sentinel down-after-milliseconds idem-ha 1000" "sentinel failover-timeout idem-ha 10000" \
    "sentinel parallel-syncs idem-ha 1" > "$rundir/$port/sentinel.conf"
  printf '%s\n' "$sentinel" "$rundir/$port/sentinel.conf" > "$rundir/$port.args"
  run_saved "$port"
}

wait_for() { # seconds description command...: polls the command every 0.2 s
  local secs=$1 what=$2 i; shift 2
  for i in $(seq 1 $((secs * 5))); do "$@" && return 0; sleep 0.2; done
  die "$what not reached in $secs s"
}

sentinels_ready() { # sentinel ports...: each knows the primary, its replica and the two other sentinels
  local p info
  for p in "$@"; do
    info=$(cli -h 127.0.0.1 -p "$p" sentinel master idem-ha 2>/dev/null | paste -sd' ') || return 1
    echo " $info " | grep -q ' num-slaves 1 ' || return 1
    echo " $info " | grep -q ' num-other-sentinels 2 ' || return 1
  done
}

replica_synced() { # port: a replica whose link to its primary is up
  cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | grep -q '^master_link_status:up'
}

wait_ping() { # port
  local i
  for i in $(seq 1 100); do
    [ "$(cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ] && return 0
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
      cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  # A stale nodes.conf would make a reused port believe it is already in a cluster.
  if [ -f "$rundir/ports" ]; then
    while read -r port; do [ -n "$port" ] && rm -rf "${rundir:?}/$port" "$rundir/$port.log" "$rundir/$port.args"; done < "$rundir/ports"
  fi
  rm -f "$rundir/env" "$rundir/ports" "$rundir/cli"
}

all_alive() {
  local p
  [ -f "$rundir/env" ] && [ -f "$rundir/ports" ] || return 1
  while read -r p; do
    alive "$rundir/$p.pid" || return 1
    [ "$(cli -h 127.0.0.1 -p "$p" ping 2>/dev/null)" = PONG ] || return 1
  done < "$rundir/ports"
}

cluster_ready() { # ports...: every node says ok, and --cluster check finds them in agreement
  local p
  for p in "$@"; do
    cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
  cli --cluster check "127.0.0.1:$1" 2>/dev/null | grep -q 'All nodes agree about slots configuration' || return 1
}

case "$verb" in
  start)
    set_name="${3:-valkey}"
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    if all_alive; then log "already running in $rundir"; cat "$rundir/env"; exit 0; fi
    stop_all
    # Debian's Redis 7.0 is installed as before (its redis-tools also brings the shared libraries
    # Valkey's binaries need); Valkey 8 is unpacked into the cache by valkey-install.sh.
    install_redis
    use_binaries "$set_name"
    : > "$rundir/ports"
    standalone=$(pick_port); echo "$standalone" >> "$rundir/ports"
    start_one "$standalone"
    nodes=()
    for i in 1 2 3; do
      p=$(pick_port); echo "$p" >> "$rundir/ports"; nodes+=("$p")
      start_one "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 5000
    done
    ha_nodes=(); sentinels=()
    if [ "$set_name" = valkey ]; then
      # Failover servers: a primary, its replica and three sentinels; a cluster with a replica per master.
      ha_primary=$(pick_port); echo "$ha_primary" >> "$rundir/ports"
      # No 5 s pause before a full sync: a node back after a failover is a replica again at once.
      start_one "$ha_primary" --repl-diskless-sync-delay 0
      ha_replica=$(pick_port); echo "$ha_replica" >> "$rundir/ports"
      start_one "$ha_replica" --repl-diskless-sync-delay 0 --replicaof 127.0.0.1 "$ha_primary"
      for i in 1 2 3 4 5 6; do
        p=$(pick_port); echo "$p" >> "$rundir/ports"; ha_nodes+=("$p")
        start_one "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 3000 --repl-diskless-sync-delay 0
      done
    fi
    for p in "$standalone" "${nodes[@]}" ${ha_primary:+"$ha_primary" "$ha_replica"} "${ha_nodes[@]}"; do wait_ping "$p"; done
    if [ "$set_name" = valkey ]; then
      for i in 1 2 3; do
        p=$(pick_port); echo "$p" >> "$rundir/ports"; sentinels+=("$p")
        start_sentinel "$p" "$ha_primary"
      done
      for p in "${sentinels[@]}"; do wait_ping "$p"; done
    fi
    addrs=(); for p in "${nodes[@]}"; do addrs+=("127.0.0.1:$p"); done
    cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >&2 ||
      die "$cli --cluster create failed"
    ok=""
    for i in $(seq 1 150); do
      if cluster_ready "${nodes[@]}"; then ok=1; break; fi
      sleep 0.2
    done
    [ -n "$ok" ] || { stop_all; die "cluster did not reach cluster_state:ok in 30 s"; }
    cluster=$(IFS=,; echo "${addrs[*]}")
    version=$("$server" --version | sed 's/ sha=.*//')
    if [ "$set_name" = redis7 ]; then
      {
        echo "export IDEM_TEST_REDIS7_URL=redis://127.0.0.1:$standalone"
        echo "export IDEM_TEST_REDIS7_CLUSTER=$cluster"
      } > "$rundir/env"
      log "standalone on $standalone, cluster on ${nodes[*]} ($version)"
      cat "$rundir/env"
      exit 0
    fi
    ha_addrs=(); for p in "${ha_nodes[@]}"; do ha_addrs+=("127.0.0.1:$p"); done
    cli --cluster create "${ha_addrs[@]}" --cluster-replicas 1 --cluster-yes >&2 ||
      die "$cli --cluster create (with replicas) failed"
    wait_for 30 "replicated cluster_state:ok" cluster_ready "${ha_nodes[@]}"
    wait_for 30 "primary's replica in sync" replica_synced "$ha_replica"
    for p in "${ha_nodes[@]}"; do
      if cli -h 127.0.0.1 -p "$p" info replication | grep -q '^role:slave'; then
        wait_for 30 "cluster replica $p in sync" replica_synced "$p"
      fi
    done
    wait_for 60 "three sentinels agreeing on idem-ha" sentinels_ready "${sentinels[@]}"
    sentinel_addrs=$(printf '127.0.0.1:%s,' "${sentinels[@]}"); sentinel_addrs=${sentinel_addrs%,}
    ha_cluster=$(IFS=,; echo "${ha_addrs[*]}")
    powerloss=$(bash "$here/powerloss.sh") || die "building the power-loss shim failed"
    {
      echo "export IDEM_TEST_REDIS_URL=redis://127.0.0.1:$standalone"
      echo "export IDEM_TEST_REDIS_CLUSTER=$cluster"
      echo "export IDEM_TEST_REDIS_SENTINEL=redis+sentinel://$sentinel_addrs/idem-ha"
      echo "export IDEM_TEST_REDIS_HA_CLUSTER=$ha_cluster"
      echo "export IDEM_TEST_REDIS_RUNDIR=$rundir"
      echo "export IDEM_TEST_REDIS_SERVER_BIN=$server"
      echo "export IDEM_TEST_REDIS_POWERLOSS_LIB=$powerloss"
    } > "$rundir/env"
    log "standalone on $standalone, cluster on ${nodes[*]}, primary $ha_primary + replica $ha_replica + sentinels ${sentinels[*]}, replicated cluster on ${ha_nodes[*]} ($version)"
    cat "$rundir/env"
    ;;
  stop)
    [ -d "$rundir" ] || exit 0
    stop_all
    log "stopped servers in $rundir"
    ;;
  restart-node)
    port="${3:-}"
    [ -n "$port" ] && [ -f "$rundir/$port.args" ] || die "restart-node: no server of port ${port:-?} in $rundir"
    alive "$rundir/$port.pid" && die "restart-node: the server on $port is still running"
    run_saved "$port"
    wait_ping "$port"
    ;;
  *) echo "usage: $0 start|stop <rundir> or restart-node <rundir> <port>" >&2; exit 2 ;;
esac
