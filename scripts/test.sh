#!/usr/bin/env bash
# The one test command: installs Node 24 + pnpm (cached), the workspace,
# builds, starts the real servers on loopback, runs every suite, stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install.sh
export IDEM_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/idem-run.XXXXXX")"
trap 'bash scripts/servers.sh stop; rm -rf "$IDEM_RUN_DIR"' EXIT
eval "$(bash scripts/servers.sh start)"
pnpm test "$@"
