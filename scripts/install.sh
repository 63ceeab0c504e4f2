#!/usr/bin/env bash
# Install everything the repo needs to run: Node 24 + pnpm (cached outside the
# clone), the workspace's packages, and the build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
pnpm install --frozen-lockfile --reporter=append-only
pnpm build
echo "idem: installed; try: scripts/idem --help" >&2
