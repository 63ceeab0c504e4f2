#!/usr/bin/env bash
# Builds powerloss.c (the power cut of the @idem/valkey power-loss test: LD_PRELOAD into
# valkey-server, it keeps append-only-file writes in memory until they are fsynced) once into the
# cache outside the clone, and prints the path of the shared library:
#   powerloss.sh   -> e.g. ~/.cache/idem/powerloss/<sha256 of the source>.so
# Needs a C compiler: gcc and libc6-dev are installed with apt when missing (as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "powerloss.sh: $*" >&2; }

cache="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}/powerloss"
mkdir -p "$cache"
lib="$cache/$(sha256sum "$here/powerloss.c" | cut -c1-16).so"
if [ -f "$lib" ]; then echo "$lib"; exit 0; fi

if ! command -v gcc >/dev/null; then
  [ "$(id -u)" = 0 ] || { log "gcc missing and not root: install gcc libc6-dev first"; exit 1; }
  log "installing gcc and libc6-dev"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev; } >&2
fi
gcc -O2 -Wall -shared -fPIC -o "$lib.tmp.$$" "$here/powerloss.c" -ldl -lpthread >&2
mv "$lib.tmp.$$" "$lib"
echo "$lib"
