#!/usr/bin/env bash
# The one test command: installs Node 24 + pnpm (cached), the workspace,
# builds, starts the real servers on loopback, runs every suite, stops them.
# Extra arguments go to vitest (e.g. a package path to run one suite).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install.sh
export IDEM_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/idem-run.XXXXXX")"
trap 'bash scripts/servers.sh stop; rm -rf "$IDEM_RUN_DIR"' EXIT
server_env=$(bash scripts/servers.sh start)
eval "$server_env"
report="$IDEM_RUN_DIR/vitest.json"
status=0
pnpm test --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line, whatever the reporter printed above.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
exit "$status"
