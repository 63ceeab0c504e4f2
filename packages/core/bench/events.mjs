// Events bench: what the idem:* diagnostics channels cost runOnce, in one run. Prints ratios;
// never asserts (speed is measured here, not in tests).
//   node bench/events.mjs [--rounds=N] [--baseline=DIR]      (pnpm --filter @idem/core bench)
// On the in-memory store, where runOnce's own CPU is all there is, so that any cost shows:
//   - no subscriber: the channels exist, nobody listens (what every user without telemetry runs);
//   - baseline (--baseline=DIR): runOnce of another build of core's dist/ (e.g. one from before
//     the channels), the "channels absent" side;
//   - no-op subscriber: a subscriber on every channel that does nothing (the events' own cost).
// Rounds interleave the sides and rotate their order; the median of the rounds' ratios is printed.
// Rates are per second of this process's CPU time (see rate()).
import { tracingChannel } from 'node:diagnostics_channel';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as core from '@idem/core';
import * as memory from '@idem/core/memory';

const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const rounds = Number(arg('rounds') ?? 7);
const baselineDir = arg('baseline');
const N = 20_000;

/**
 * runOnce per second of this process's CPU time, for `lib`'s runOnce over its own memory store: N
 * fresh keys, one at a time. CPU time rather than wall time: on a shared machine the other
 * processes' load stretches wall time far more than this process's own CPU use.
 */
async function rate(lib, mem) {
  const store = mem.createMemoryStore();
  const work = () => 1;
  // Warm up the code paths before timing.
  for (let i = 0; i < 500; i++) await lib.runOnce(store, `warm-${i}`, work);
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) await lib.runOnce(store, `k-${i}`, work);
  const cpu = process.cpuUsage(c0);
  return N / ((cpu.user + cpu.system) / 1e6);
}

const OPERATIONS = ['claim', 'complete', 'fail', 'renew', 'release', 'runOnce', 'list', 'sweep'];
const noop = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
const subscribed = async (fn) => {
  for (const op of OPERATIONS) tracingChannel(`idem:${op}`).subscribe(noop);
  try {
    return await fn();
  } finally {
    for (const op of OPERATIONS) tracingChannel(`idem:${op}`).unsubscribe(noop);
  }
};

const sides = { 'no subscriber': () => rate(core, memory), 'no-op subscriber': () => subscribed(() => rate(core, memory)) };
if (baselineDir !== undefined) {
  const dir = pathToFileURL(`${resolve(baselineDir)}/`);
  const [lib, mem] = await Promise.all([import(new URL('index.js', dir).href), import(new URL('memory.js', dir).href)]);
  sides['baseline build'] = () => rate(lib, mem);
}

console.log(
  `load average at start: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; ${rounds} rounds of ${N} runOnce each`,
);
const names = Object.keys(sides);
const results = Object.fromEntries(names.map((n) => [n, []]));
for (let r = 0; r < rounds; r++) {
  const order = names.map((_, i) => names[(i + r) % names.length]);
  for (const name of order) results[name].push(await sides[name]());
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratios = (name, ref) => results[name].map((x, i) => x / results[ref][i]);
const spread = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
const ref = baselineDir !== undefined ? 'baseline build' : 'no subscriber';
console.log(`| side | runOnce per CPU second (median) | ratio to ${ref} (median, rounds) |`);
console.log('| --- | --- | --- |');
for (const name of names) {
  const rs = ratios(name, ref);
  console.log(`| ${name} | ${Math.round(median(results[name]))} | ${median(rs).toFixed(3)} (${spread(rs)}) |`);
}
// The whole cost the channels add without a subscriber is one `hasSubscribers` read per
// operation (runOnce, its claim, its complete): measured alone, as a bound the ratios cannot
// resolve on a shared machine.
const guards = 10_000_000;
let seen = 0;
const g0 = process.cpuUsage();
for (let i = 0; i < guards; i++) if (core.idemChannels.claim.hasSubscribers) seen++;
const g = process.cpuUsage(g0);
const perGuardNs = ((g.user + g.system) * 1000) / guards;
const perRunNs = 1e9 / median(results['no subscriber']);
const share = (3 * perGuardNs * 100) / perRunNs;
console.log(
  `hasSubscribers read: ${perGuardNs.toFixed(1)} ns; 3 per runOnce: ${share.toFixed(2)}% of a runOnce (${Math.round(perRunNs)} ns)${seen ? '; a subscriber was attached!' : ''}`,
);
const load = loadavg().map((x) => x.toFixed(2));
console.log(`load average at end: ${load.join(' ')}`);
