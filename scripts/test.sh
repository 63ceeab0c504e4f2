#!/usr/bin/env bash
# The one test command: installs Node 24 + pnpm (cached), the workspace,
# builds, starts the real servers on loopback, runs every suite, stops them.
# Without arguments it also prints a coverage summary of @idem/core and @idem/conformance
# (vitest.config.ts; no threshold), then runs every README code block (scripts/readme-blocks.mjs),
# the outside view of the packed packages (scripts/outside-view.sh), the core, LMDB and CLI
# suites again on Node 22 (the oldest that `engines` allows), the linter and the format check.
# Extra arguments go to vitest (e.g. a package path to run one suite) and skip all of those.
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
coverage=()
[ "$#" -eq 0 ] && coverage=(--coverage)
pnpm test --reporter=default --reporter=json --outputFile.json="$report" "${coverage[@]}" "$@" || status=$?
# The full run (no arguments) also proves the docs and the published view:
# every README code block against the same servers, then the packed tarballs
# installed outside the workspace.
extra=""
if [ "$#" -eq 0 ]; then
  node scripts/readme-blocks.mjs && extra+=", README blocks ok" || { status=1; extra+=", README blocks FAILED"; }
  bash scripts/outside-view.sh && extra+=", outside view ok" || { status=1; extra+=", outside view FAILED"; }
  # Node 22 runs vitest itself (not only the code under test); the servers are still up for the CLI suite.
  { node22=$(idem_node22) && PATH="$node22:$PATH" node node_modules/vitest/vitest.mjs run packages/core packages/lmdb packages/cli; } \
    && extra+=", Node 22 ok" || { status=1; extra+=", Node 22 FAILED"; }
  pnpm lint && extra+=", lint ok" || { status=1; extra+=", lint FAILED"; }
  # The format check: `pnpm format` fixes what it finds. This line alone switches it on or off.
  pnpm format:check && extra+=", format ok" || { status=1; extra+=", format FAILED"; }
fi
[ -n "$extra" ] && echo "idem: ${extra#, }"
# One plain closing line, whatever the reporters printed above, after the name of each failed
# test: the end of a long log is what a reader sees first.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  const root = process.cwd() + "/";
  for (const file of r.testResults)
    for (const t of file.assertionResults)
      if (t.status === "failed") console.log(`FAILED ${file.name.replace(root, "")} > ${t.fullName}`);
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
exit "$status"
