#!/usr/bin/env bash
# The outside view: every package as a user gets it from the registry.
# Packs each package from a clean tree (git archive of HEAD: committed files
# only, no dist/; commit what you want checked), installs the tarballs with npm into throwaway projects
# outside the workspace, and checks:
#   - each tarball has its dist/, LICENSE, CHANGELOG.md, maps that resolve to its src/;
#     publint --strict and attw --profile esm-only are clean (why esm-only: see lint below)
#   - ESM import and CommonJS require() of each package (Node >= 22.12)
#   - tsc: strict, exactOptionalPropertyTypes, skipLibCheck false, under nodenext (ESM and CJS files) and bundler
#   - the installed `idem` bin runs; @idem/cli's JSON Schemas are exported
#   - each single-adapter install pulls no other backend's SDK and one copy of @idem/core;
#     @idem/valkey with ioredis pulls no Valkey GLIDE, and with GLIDE (or node-redis) no ioredis
#   - an adapter written outside the repo in TypeScript passes @idem/conformance, multi-process race included
# Output: one line per check; a failing check prints the tail of its log and the step exits 1 at the end.
# Needs the npm registry (or npm's cache) for third-party packages. Runs alone too: bash scripts/outside-view.sh
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/env.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/idem-outside.XXXXXX")
[ -n "${IDEM_KEEP_OUTSIDE:-}" ] || trap 'rm -rf "$work"' EXIT
export NO_COLOR=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false npm_config_loglevel=error
started=$SECONDS
failures=0
logs="$work/logs"
mkdir -p "$logs"

# check NAME CMD...: runs CMD quietly; on failure prints the last lines of its output.
check() {
  local name=$1 log t0=$SECONDS
  shift
  log="$logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_').log"
  if "$@" >"$log" 2>&1; then
    echo "outside-view: ok   $name ($((SECONDS - t0))s)"
  else
    echo "outside-view: FAIL $name ($((SECONDS - t0))s; last lines of its output follow)"
    tail -n 40 "$log" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
# spawn NAME CMD...: a check in the background; join waits for them and prints their lines in order.
pids=() results=()
spawn() {
  local out="$logs/result.${#results[@]}"
  (check "$@" >"$out"; [ "$failures" -eq 0 ]) &
  pids+=($!) results+=("$out")
}
join() {
  local i
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failures=$((failures + 1))
    cat "${results[$i]}"
  done
  pids=() results=()
}
# fatal NAME CMD...: like check, but nothing after it can run without it.
fatal() {
  check "$@"
  if [ "$failures" -gt 0 ]; then echo "outside-view: FAILED at \"$1\" after $((SECONDS - started))s" >&2; exit 1; fi
}

pkgs=(core lmdb valkey s3 gcs postgres conformance cli otel http)
src="$work/src" tarballs="$work/tarballs"
mkdir -p "$src" "$tarballs"

# A publisher's checkout: committed files only, no dist/, no node_modules.
fatal "clean tree from git HEAD" bash -c "git -C '$repo' archive HEAD | tar -x -C '$src'"
fatal "pnpm install (clean tree)" bash -c "cd '$src' && pnpm install --frozen-lockfile --prefer-offline --reporter=silent"
# prepack builds each package (tsc -b), as pnpm publish would.
pack_all() {
  for p in "${pkgs[@]}"; do (cd "$src/packages/$p" && pnpm pack --pack-destination "$tarballs") || return 1; done
}
fatal "pnpm pack of ${#pkgs[@]} packages" pack_all
tgz() { ls "$tarballs"/idem-"$1"-*.tgz; }
contents() {
  for p in "${pkgs[@]}"; do
    local list
    list=$(tar -tzf "$(tgz "$p")") || return 1
    for f in package/dist/index.js package/dist/index.d.ts package/LICENSE package/CHANGELOG.md package/README.md; do
      grep -qx "$f" <<<"$list" || { echo "$p: $f missing from the tarball"; return 1; }
    done
    if grep -E 'tsbuildinfo|/test/|\.test\.' <<<"$list"; then echo "$p: ships build or test files"; return 1; fi
    # src/ ships so that source and declaration maps lead to it: every map's sources must be in the tarball.
    mkdir -p "$work/unpacked/$p" && tar -xzf "$(tgz "$p")" -C "$work/unpacked/$p" || return 1
    node -e '
      const { existsSync, globSync, readFileSync } = require("node:fs"), { dirname, resolve } = require("node:path");
      const maps = globSync(process.argv[1] + "/package/dist/**/*.map");
      const broken = maps.flatMap((m) => JSON.parse(readFileSync(m, "utf8")).sources.map((s) => resolve(dirname(m), s)).filter((s) => !existsSync(s)));
      if (maps.length === 0 || broken.length) { console.log(`${maps.length} maps; missing sources: ${broken.join(" ")}`); process.exit(1); }
    ' "$work/unpacked/$p" || { echo "$p: a source or declaration map points outside the tarball"; return 1; }
  done
}
spawn "tarballs hold dist, LICENSE, CHANGELOG, no tests; every map resolves to shipped src" contents

# publint: the exports, files and fields of what is published. attw --profile esm-only:
# the packages are ESM only; CommonJS callers load them through Node's require(esm)
# (>= 22.12), which attw's node16-cjs mode does not model (it reports every
# ESM-only package there), and node10 resolution ignores `exports` (subpaths).
# The CommonJS path is proven below for real: require() at run time and tsc's
# nodenext resolution from a .cts file.
lint() {
  for p in "${pkgs[@]}"; do
    "$src/node_modules/.bin/publint" run --strict "$(tgz "$p")" || return 1
    "$src/node_modules/.bin/attw" --profile esm-only --format ascii "$(tgz "$p")" || return 1
  done
}
spawn "publint --strict and attw --profile esm-only, ${#pkgs[@]} packages" lint

# Versions of the third-party packages, as the workspace tests them.
version() { node -e 'const [f, n] = process.argv.slice(1); const j = require(f); console.log(n + "@" + ({...j.dependencies, ...j.devDependencies, ...j.peerDependencies})[n].replace(/^[\^~]/, ""))' "$src/$1" "$2"; }
s3sdk=$(version packages/s3/package.json @aws-sdk/client-s3)
gcssdk=$(version packages/gcs/package.json @google-cloud/storage)
ioredis=$(version packages/valkey/package.json ioredis | sed 's/@.*|| \^/@/')
redisclient=$(version packages/valkey/package.json @redis/client)
glide=$(version packages/valkey/package.json @valkey/valkey-glide)
pgsdk=$(version packages/postgres/package.json pg)
typespg=$(version packages/postgres/package.json @types/pg)
# The version the CLI depends on (the SDK it ships needs it); @idem/otel accepts it as its peer.
otelapi=$(version packages/cli/package.json @opentelemetry/api)
typescript=$(version package.json typescript)
vitest=$(version package.json vitest)
typesnode=$(version package.json @types/node)
http_frameworks="$(version packages/http/package.json express) $(version packages/http/package.json fastify) $(version packages/http/package.json hono) $(version packages/http/package.json @hono/node-server)"

# Single-adapter installs (resolved as npm would install them): no other backend's SDK, one @idem/core.
lean() {
  local name=$1 allowed=$2
  shift 2
  local dir="$work/lean-$name"
  mkdir -p "$dir" && cd "$dir" && echo '{"name":"lean-'"$name"'","private":true}' >package.json || return 1
  npm install --package-lock-only --prefer-offline "$@" || return 1
  node -e '
    const lock = require("./package-lock.json");
    const allowed = process.argv[1];
    // glide and redis: the clients an app may give @idem/valkey instead of the ioredis it opens itself.
    const sdks = { lmdb: /^node_modules\/lmdb$/, valkey: /^node_modules\/(ioredis|iovalkey)$/, glide: /^node_modules\/@valkey\/valkey-glide/, redis: /^node_modules\/@redis\/client$/, s3: /^node_modules\/@aws-sdk\//, gcs: /^node_modules\/@google-cloud\//, postgres: /^node_modules\/pg$/ };
    const names = Object.keys(lock.packages).map((k) => k.replace(/^.*(?=node_modules\/)/, ""));
    const bad = Object.entries(sdks).filter(([b, re]) => b !== allowed && names.some((n) => re.test(n))).map(([b]) => b);
    const cores = names.filter((n) => n === "node_modules/@idem/core").length;
    console.log(`${names.length} packages; other backends: ${bad.join(", ") || "none"}; copies of @idem/core: ${cores}`);
    if (bad.length || cores !== 1) process.exit(1);
  ' "$allowed"
}
spawn "lean install: @idem/lmdb" lean lmdb lmdb "$(tgz core)" "$(tgz lmdb)"
spawn "lean install: @idem/valkey with ioredis (no GLIDE, no node-redis)" lean valkey valkey "$(tgz core)" "$(tgz valkey)" "$ioredis"
spawn "lean install: @idem/valkey with Valkey GLIDE (no ioredis)" lean valkey-glide glide "$(tgz core)" "$(tgz valkey)" "$glide"
spawn "lean install: @idem/valkey with node-redis (no ioredis)" lean valkey-node-redis redis "$(tgz core)" "$(tgz valkey)" "$redisclient"
spawn "lean install: @idem/s3" lean s3 s3 "$(tgz core)" "$(tgz s3)" "$s3sdk"
spawn "lean install: @idem/gcs" lean gcs gcs "$(tgz core)" "$(tgz gcs)" "$gcssdk"
spawn "lean install: @idem/postgres" lean postgres postgres "$(tgz core)" "$(tgz postgres)"
spawn "lean install: @idem/cli (LMDB only)" lean cli lmdb "$(tgz core)" "$(tgz lmdb)" "$(tgz otel)" "$(tgz cli)"

spawn "lean install: @idem/http (no framework, no backend SDK)" lean http none "$(tgz core)" "$(tgz http)"

# One application with everything, outside the workspace.
app="$work/app"
mkdir -p "$app" && echo '{"name":"outside-app","private":true}' >"$app/package.json"
install_app() {
  cd "$app" && npm install --prefer-offline $(for p in "${pkgs[@]}"; do tgz "$p"; done) \
    "$s3sdk" "$gcssdk" "$ioredis" "$redisclient" "$glide" "$pgsdk" "$typespg" "$otelapi" "$typescript" "$vitest" "$typesnode" $http_frameworks "$(version packages/http/package.json @types/express)"
}
spawn "npm install of the tarballs into a project outside the workspace" install_app
# Installs wait on the network, lint on the CPU: they run side by side.
join
[ -x "$app/node_modules/.bin/tsc" ] || { echo "outside-view: FAILED (no app install) after $((SECONDS - started))s" >&2; exit 1; }
cp -r "$repo/scripts/outside-view/app/." "$app/"
cp -r "$repo/scripts/outside-view/file-adapter" "$app/file-adapter"
# The adapter guide's template, as a reader would copy it: its sources, tests and vitest config
# (not its workspace package.json or node_modules: here it resolves the installed tarballs).
mkdir -p "$app/sqlite-adapter"
cp -r "$repo/examples/sqlite-adapter/src" "$repo/examples/sqlite-adapter/test" "$repo/examples/sqlite-adapter/vitest.config.ts" "$app/sqlite-adapter/"
echo '{"name":"idem-sqlite-example","private":true,"type":"module"}' >"$app/sqlite-adapter/package.json"

check "ESM: import() of every entry point" bash -c "cd '$app' && node esm.mjs"
check "CommonJS: require() of every entry point" bash -c "cd '$app' && node cjs.cjs"
check "idem:* events read with node:diagnostics_channel alone (no @idem/otel)" bash -c "cd '$app' && node events.mjs"
# @idem/valkey on a caller's node-redis client (@redis/client installed by the app, not by @idem/valkey):
# one claim and complete against the test server, when there is one (scripts/test.sh starts it).
node_redis_claim() {
  if [ -z "${IDEM_TEST_REDIS_URL:-}" ]; then
    [ "${CI:-}" = true ] && { echo "CI=true and IDEM_TEST_REDIS_URL is not set"; return 1; }
    echo "no IDEM_TEST_REDIS_URL: not run (scripts/test.sh sets it)"; return 0
  fi
  cd "$app" && node node-redis.mjs
}
check "@idem/valkey on a node-redis client (@redis/client): a claim against the test server" node_redis_claim
glide_claim() {
  [ -n "${IDEM_TEST_REDIS_URL:-}" ] || { echo "no IDEM_TEST_REDIS_URL: not run"; return 0; }
  cd "$app" && node glide.mjs
}
check "@idem/valkey on a Valkey GLIDE client: a claim against the test server" glide_claim
# nodenext: the app's .mts and .cts files and the outside adapter; then the compiled CommonJS file runs.
spawn "tsc nodenext (ESM .mts, CJS .cts, outside adapter; strict, exactOptionalPropertyTypes, skipLibCheck false), run the CJS output" \
  bash -c "cd '$app' && npx tsc -p tsconfig.nodenext.json && node out/types.cjs"
spawn "tsc bundler (strict, exactOptionalPropertyTypes, skipLibCheck false)" bash -c "cd '$app' && npx tsc -p tsconfig.bundler.json"
# The JSON Schemas of the --json outputs: in the tarball, exported, each pinning its schema field.
spawn "@idem/cli/schemas/*.schema.json: exported, each pins its schema" bash -c "cd '$app' && node -e '
  const subpaths = Object.keys(require(\"@idem/cli/package.json\").exports).filter((p) => p.startsWith(\"./schemas/\"));
  for (const subpath of subpaths) {
    const command = subpath.slice(\"./schemas/\".length, -\".schema.json\".length);
    const pinned = require(\"@idem/cli\" + subpath.slice(1)).properties.schema.const;
    if (!String(pinned).startsWith(\"idem.\" + command + \"/\")) throw new Error(subpath + \": \" + pinned);
  }
  if (subpaths.length < 7) throw new Error(\"only \" + subpaths.length + \" schemas\");
  console.log(subpaths.length + \" schemas\");
'"
spawn "idem bin: run, then skip" bash -c "cd '$app' && npx idem run --key outside -- true && npx idem run --json --key outside -- false | grep -q skipped_idempotent"
outside_conformance() {
  cd "$app/file-adapter" && npx vitest run --reporter=dot --reporter=json --outputFile.json=report.json || return 1
  # The race must have run, not been skipped.
  node -e '
    const r = require("./report.json");
    const race = r.testResults.flatMap((f) => f.assertionResults).filter((t) => /OS processes/.test(t.title));
    console.log(`${r.numPassedTests} passed, ${r.numPendingTests} skipped; race: ${race.map((t) => t.status).join(", ") || "absent"}`);
    if (race.length === 0 || race.some((t) => t.status !== "passed")) process.exit(1);
  '
}
check "outside TypeScript adapter passes @idem/conformance (multi-process race included)" outside_conformance
# The SQLite example: the whole suite (race, forced windows), and its sweep delete broken on
# purpose must fail the forced sweep windows (test/unconditional-delete.test.ts).
check "examples/sqlite-adapter passes @idem/conformance from the tarballs, and fails it with an unconditional sweep delete" \
  bash -c "cd '$app/sqlite-adapter' && npx vitest run --reporter=dot"
# @idem/http's README examples (Hono, Express, Fastify on Valkey) as written, in a project that
# installs only @idem/core, @idem/http and @idem/valkey from the tarballs, and the frameworks.
http_examples() {
  if [ -z "${IDEM_TEST_REDIS_URL:-}" ]; then
    [ "${CI:-}" = true ] && { echo "CI=true and IDEM_TEST_REDIS_URL is not set"; return 1; }
    echo "no IDEM_TEST_REDIS_URL: not run (scripts/test.sh sets it)"; return 0
  fi
  local dir="$work/http-app"
  mkdir -p "$dir" && cd "$dir" && echo '{"name":"outside-http","private":true,"type":"module"}' >package.json || return 1
  npm install --prefer-offline "$(tgz core)" "$(tgz http)" "$(tgz valkey)" "$ioredis" $http_frameworks || return 1
  # Each ts block of the README becomes example-N.mts, run by Node's type stripping.
  node -e '
    const text = require("node:fs").readFileSync(process.argv[1], "utf8");
    const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]);
    blocks.forEach((code, i) => require("node:fs").writeFileSync(`example-${i}.mts`, code));
    console.log(`${blocks.length} examples`);
    if (blocks.length < 3) process.exit(1);
  ' "$src/packages/http/README.md" || return 1
  for f in example-*.mts; do
    echo "== $f" && REDIS_URL=$IDEM_TEST_REDIS_URL node "$f" || return 1
  done
}
check "@idem/http README examples (Hono, Express, Fastify) from the tarballs of core, http and valkey" http_examples
join

echo "outside-view: $([ "$failures" -eq 0 ] && echo passed || echo "$failures FAILED") in $((SECONDS - started))s"
[ "$failures" -eq 0 ]
