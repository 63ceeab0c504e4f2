// Startup of `idem run -- true` on the embedded store: this build against another build of the
// CLI (e.g. main before a change), interleaved in one run. CPU time (user + system, from
// /usr/bin/time, 10 ms resolution) is the main figure: on a shared machine other processes
// stretch wall time far more than they change a process's own CPU. Prints figures, asserts nothing.
//   node packages/cli/bench/startup-ab.mjs --baseline=OTHER/packages/cli/dist/bin.js [runs]
// Build the baseline from a clean tree of the other revision (git archive, tsc -b of core, lmdb and cli).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const baseline = process.argv.find((a) => a.startsWith('--baseline='))?.slice('--baseline='.length);
if (baseline === undefined) throw new Error('usage: startup-ab.mjs --baseline=PATH/TO/bin.js [runs]');
const runs = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 41);
const sides = { baseline, 'this build': fileURLToPath(new URL('../dist/bin.js', import.meta.url)) };
const dir = mkdtempSync(join(tmpdir(), 'idem-startup-ab-'));
const env = { ...process.env, NO_COLOR: '1' };
const cpu = { baseline: [], 'this build': [] };
const wall = { baseline: [], 'this build': [] };
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
console.log(`load average at start: ${load()}; ${runs} runs each`);
for (let i = 0; i < runs; i++) {
  const order = i % 2 ? ['baseline', 'this build'] : ['this build', 'baseline'];
  for (const name of order) {
    const args = ['-f', '%U %S', process.execPath, sides[name], 'run', '--key', `k${i}`, '--store', `lmdb:${join(dir, name.replace(' ', '-'))}`, '--', 'true'];
    const t0 = performance.now();
    const r = spawnSync('/usr/bin/time', args, { env, encoding: 'utf8' });
    wall[name].push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${name} exited ${r.status}: ${r.stderr}`);
    const [user, sys] = r.stderr.trim().split('\n').at(-1).split(' ').map(Number);
    cpu[name].push((user + sys) * 1000);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratio = (m) => median(m['this build'].map((x, i) => x / m.baseline[i])).toFixed(3);
console.log('| measure | baseline | this build | this build / baseline (median of pairs) |');
console.log('| --- | --- | --- | --- |');
console.log(`| CPU ms (median) | ${median(cpu.baseline).toFixed(0)} | ${median(cpu['this build']).toFixed(0)} | ${ratio(cpu)} |`);
console.log(`| wall ms (median) | ${median(wall.baseline).toFixed(0)} | ${median(wall['this build']).toFixed(0)} | ${ratio(wall)} |`);
console.log(`load average at end: ${load()}`);
rmSync(dir, { recursive: true, force: true });
