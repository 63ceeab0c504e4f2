# Sourced by the server scripts built from Go modules (minio.sh, versitygw.sh):
# a one-off pinned build into the cache outside the clone, and a free loopback port.
# The sourcing script defines log() and die() first.

idem_cache="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}"

# go_server_build <binary path> <module> <version> <command name>: builds once; parallel starts
# wait for the first build (flock) instead of racing it.
go_server_build() {
  local bin=$1 module=$2 version=$3 name=$4 tmp
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || die "go is needed to build $name (Go >= 1.24)"
  mkdir -p "$idem_cache/bin"
  exec 9> "$idem_cache/bin/.$name-build.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    tmp=$(mktemp -d "$idem_cache/bin/.$name-build.XXXXXX")
    log "building $module@$version (one-off, a few minutes on 2 cores)"
    # GOTOOLCHAIN=local: build with the installed Go instead of fetching the go.mod toolchain.
    if ! GOTOOLCHAIN=local GOBIN="$tmp" go install "$module@$version" >&2; then
      rm -rf "$tmp"; die "go install $module@$version failed"
    fi
    mv "$tmp/$name" "$bin" && rm -rf "$tmp"
  fi
  flock -u 9
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# pick_port [avoid]: a free loopback port, never `avoid`.
pick_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 25000 ))
    port_in_use "$p" || [ "$p" = "${1:-}" ] || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}
