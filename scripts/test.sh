#!/usr/bin/env bash
# The one test command: installs Node 24 + pnpm (cached), the workspace,
# builds, starts the real servers on loopback, runs every suite, stops them.
# Without arguments it then runs every README code block (scripts/readme-blocks.mjs)
# and the outside view of the packed packages (scripts/outside-view.sh).
# Extra arguments go to vitest (e.g. a package path to run one suite) and skip those two.
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
# The full run (no arguments) also proves the docs and the published view:
# every README code block against the same servers, then the packed tarballs
# installed outside the workspace.
extra=""
if [ "$#" -eq 0 ]; then
  node scripts/readme-blocks.mjs && extra+=", README blocks ok" || { status=1; extra+=", README blocks FAILED"; }
  bash scripts/outside-view.sh && extra+=", outside view ok" || { status=1; extra+=", outside view FAILED"; }
fi
[ -n "$extra" ] && echo "idem: ${extra#, }"
# One plain closing line, whatever the reporters printed above.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
exit "$status"
