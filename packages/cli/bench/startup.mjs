// Startup cost of `idem run -- true` on the embedded store against `node -e 0`,
// paired in one run (interleaved, median of many): the ratio of wall times is the
// figure (goal <= 1.8), with the machine's load average. It runs the
// installed bin as users do (dist/bin.js, this package's real dependencies):
// build first (pnpm build). Not a timed test: prints figures, asserts nothing.
//   node packages/cli/bench/startup.mjs [runs]      (pnpm --filter @idem/cli bench)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const RUNS = Number(process.argv[2] ?? 31);
const GOAL_RATIO = 1.8;
const dir = mkdtempSync(join(tmpdir(), 'idem-bench-'));
const store = `lmdb:${join(dir, 'store')}`;
const env = { ...process.env, NO_COLOR: '1' };

const phases = [];
function wall(args, cwd) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  if (args.includes('--json')) phases.push(JSON.parse(r.stdout).timings);
  return ms;
}

// Peak RSS and CPU time of the child, reported by the child itself at exit
// (no /usr/bin/time needed). CPU time suffers less than wall time from a busy machine.
const USAGE_HOOK = `data:text/javascript,${encodeURIComponent(
  `import{writeSync,openSync}from'node:fs';process.on('exit',()=>{const u=process.resourceUsage();writeSync(openSync(process.env.IDEM_BENCH_USAGE,'w'),JSON.stringify(u))})`,
)}`;
function usage(args) {
  const file = join(dir, 'usage');
  const r = spawnSync(process.execPath, ['--import', USAGE_HOOK, ...args], { env: { ...env, IDEM_BENCH_USAGE: file }, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
  const u = JSON.parse(readFileSync(file, 'utf8'));
  return { rssKiB: u.maxRSS, cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

let n = 0;
const cases = {
  'node -e 0': () => ['-e', '0'],
  // A fresh key each time: the full path (open, claim, spawn, complete, close).
  'idem run -- true (executes)': () => [BIN, 'run', '-q', '--json', '--store', store, '--key', `bench-${n++}`, '--', 'true'],
  // The same key: claim answers completed, nothing is spawned.
  'idem run -- true (skipped)': () => [BIN, 'run', '-q', '--store', store, '--key', 'bench-0', '--', 'true'],
  'idem key (no store)': () => [BIN, 'key', 'bench'],
};
// A reference, not idem: node loading lmdb-js alone (as @idem/lmdb loads it), the part of
// the startup idem does not own. Run from @idem/lmdb's directory, where lmdb resolves.
const LMDB_DIR = dirname(createRequire(import.meta.url).resolve('@idem/lmdb/package.json'));
const REFERENCE = "node + require('lmdb') alone";
const cwdOf = { [REFERENCE]: LMDB_DIR };
cases[REFERENCE] = () => ['-e', "require('node:module').enableCompileCache?.(); require('lmdb')"];
// The raw primitive of `idem run -- true`, with none of idem: lmdb-js opens a store file, a
// conditional put is fsynced, `true` is spawned and awaited, a second put is fsynced, exit. What
// it leaves out is idem's own part: the CLI and core, key hashing and run ids (node:crypto), the
// cross-process write turn, records, checks and reports.
const RAW = 'raw lmdb-js run (no idem)';
cwdOf[RAW] = LMDB_DIR;
const RAW_SCRIPT = `require('node:module').enableCompileCache?.();
const { open } = require('lmdb');
const { spawn } = require('node:child_process');
const env = open({ path: process.argv[1], overlappingSync: false });
const db = env.openDB({ name: 'records', encoding: 'binary' });
const key = process.argv[2];
(async () => {
  await db.ifNoExists(key, () => db.put(key, Buffer.from('in_flight')));
  await env.flushed;
  await new Promise((resolve, reject) => spawn('true', { stdio: 'inherit' }).on('exit', resolve).on('error', reject));
  await db.put(key, Buffer.from('succeeded'));
  await env.flushed;
  process.exit(0);
})();`;
cases[RAW] = () => ['-e', RAW_SCRIPT, join(dir, 'raw.mdb'), `raw-${n++}`];

try {
  for (const [name, make] of Object.entries(cases)) wall(make(), cwdOf[name]); // warm the page cache and the compile cache
  const times = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
  // Interleaved and rotated, so a noisy moment or the order hurts every case alike.
  const names = Object.keys(cases);
  for (let i = 0; i < RUNS; i++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length];
      times[name].push(wall(cases[name](), cwdOf[name]));
    }
  }
  const base = median(times['node -e 0']);
  console.log(`idem CLI startup, ${RUNS} runs each, median wall time (node ${process.version}, ${process.platform}/${process.arch}):`);
  for (const [name, xs] of Object.entries(times)) {
    const m = median(xs);
    console.log(`  ${name.padEnd(30)} ${m.toFixed(1).padStart(7)} ms${name === 'node -e 0' ? '' : `   (+${(m - base).toFixed(1)} ms over node -e 0)`}`);
  }
  const phase = (name) => median(phases.map((p) => p[name])).toFixed(1);
  console.log(
    `  inside idem run (executes), medians: load adapter + open ${phase('open_ms')} ms, claim ${phase('claim_ms')}, command ${phase('command_ms')}, complete ${phase('finish_ms')}` +
      ' (the rest of the wall time: node boot, loading the CLI and core, exit)',
  );
  const ratio = median(times['idem run -- true (executes)']) / base;
  console.log(
    `idem run -- true / node -e 0: ${ratio.toFixed(2)} (goal <= ${GOAL_RATIO}: ${ratio <= GOAL_RATIO ? 'met' : 'NOT met'}); reference: node + lmdb-js alone / node -e 0: ${(median(times[REFERENCE]) / base).toFixed(2)}`,
  );
  const raw = median(times[RAW]);
  console.log(
    `raw lmdb-js run / node -e 0: ${(raw / base).toFixed(2)} (the floor of any run wrapper on lmdb-js); idem run -- true / raw lmdb-js run: ${(median(times['idem run -- true (executes)']) / raw).toFixed(2)}`,
  );
  const samples = { idem: [], node: [] };
  for (let i = 0; i < Math.min(RUNS, 15); i++) {
    samples.idem.push(usage(cases['idem run -- true (executes)']()));
    samples.node.push(usage(['-e', '0']));
  }
  const m = (side, field) => median(samples[side].map((u) => u[field]));
  console.log(
    `CPU time (user+sys) of idem run -- true minus node -e 0: ${(m('idem', 'cpuMs') - m('node', 'cpuMs')).toFixed(1)} ms (${m('idem', 'cpuMs').toFixed(1)} vs ${m('node', 'cpuMs').toFixed(1)})`,
  );
  console.log(`peak RSS: idem run -- true ${(m('idem', 'rssKiB') / 1024).toFixed(1)} MiB (node -e 0: ${(m('node', 'rssKiB') / 1024).toFixed(1)} MiB)`);
  console.log(
    `machine load average while measuring: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
