// Medians over several runs of the peers bench, as markdown tables (bench/RESULTS.md holds them):
//   node bench/medians.mjs run1.log run2.log ...   (each the output of `bench.mjs --only=peers`)
// Reads every BENCH_JSON line, groups them by server, and prints per server: the load averages of
// each run, the goal ratios per run with their median (each ratio taken within one run), the
// ops/s and server CPU of the idem rows and of the best peer, and the claim designs.
import { readFileSync } from 'node:fs';

const files = process.argv.slice(2);
if (files.length === 0) throw new Error('usage: node bench/medians.mjs run1.log run2.log ...');
const runs = files.flatMap((f) =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('BENCH_JSON '))
    .map((l) => JSON.parse(l.slice('BENCH_JSON '.length))),
);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, digits = 2) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));
const int = (x) => Math.round(x).toLocaleString('en-US').replace(/,/g, ' ');

const IDEM = ['idem runOnce (own client, URL)', 'idem runOnce (your ioredis)', 'idem runOnce (your @redis/client)'];
const DESIGN_CLIENTS = ['@redis/client', 'ioredis, corked'];
const DESIGNS = (on) => [
  `design: plain SET NX PX GET + idem's finish script (${on})`,
  `design: MULTI claim + idem's finish script (${on})`,
  `design: idem's claim script + idem's finish script (${on})`,
];
const CLAIMS = (on) => [
  `design: plain SET NX PX GET claim (${on})`,
  `design: MULTI SET NX PX GET, PEXPIRETIME, TIME claim (${on})`,
  `design: idem's claim script (${on})`,
];

for (const server of [...new Set(runs.map((r) => r.versions.server))]) {
  const mine = runs.filter((r) => r.versions.server === server);
  const unsafe = new Set(mine.flatMap((r) => r.unsafePeers ?? []));
  const peers = (r, id) =>
    Object.entries(r.scenarios[id]).filter(([name]) => (name.startsWith('Powertools') || name.startsWith('node-idempotency')) && !unsafe.has(name));
  const best = (r, id) => peers(r, id).reduce((a, b) => (b[1].rate > a[1].rate ? b : a));
  const lowestCpu = (r, id) => Math.min(...peers(r, id).map(([, m]) => m.serverCpu));
  const row = (r, id, name) => r.scenarios[id][name];
  console.log(`\n### ${server}: ${mine.length} runs, ${mine[0].rounds} rounds of ${mine[0].ops} ops (${mine[0].ops1} at 1 in flight) each\n`);
  console.log(`Load average (1, 5, 15 min) at start and end of each run: ${mine.map((r) => `${r.loadStart} → ${r.loadEnd}`).join('; ')}\n`);

  // The goals, each ratio taken within its run.
  const ratios = [
    ['first execution, 1 in flight, ops/s / best peer', '>= 1', (r, n) => row(r, 'first1', n).rate / best(r, 'first1')[1].rate],
    ['first execution, 64 in flight, ops/s / best peer', '>= 1', (r, n) => row(r, 'first64', n).rate / best(r, 'first64')[1].rate],
    ['duplicate, 1 in flight, ops/s / best peer', '> 1', (r, n) => row(r, 'dup1', n).rate / best(r, 'dup1')[1].rate],
    ['duplicate, 64 in flight, ops/s / best peer', '>= 1', (r, n) => row(r, 'dup64', n).rate / best(r, 'dup64')[1].rate],
    ['server CPU per first execution (64) / lowest peer', '<= 1.3', (r, n) => row(r, 'first64', n).serverCpu / lowestCpu(r, 'first64')],
    ['server CPU per first execution (64) / fastest peer', '<= 1.3', (r, n) => row(r, 'first64', n).serverCpu / best(r, 'first64')[1].serverCpu],
  ];
  console.log(`| goal | target | ${IDEM.map((n) => `${n.slice('idem runOnce '.length)}: median (runs)`).join(' | ')} |`);
  console.log(`| --- | --- |${IDEM.map(() => ' --- |').join('')}`);
  for (const [label, target, f] of ratios) {
    const cells = IDEM.map((n) => {
      const xs = mine.map((r) => f(r, n));
      return `**${fmt(median(xs))}** (${xs.map((x) => fmt(x)).join(', ')})`;
    });
    console.log(`| ${label} | ${target} | ${cells.join(' | ')} |`);
  }

  // Medians of ops/s and server CPU per op, idem against the best peer of each run.
  console.log(
    '\n| scenario: median ops/s (server CPU µs/op) | ' +
      IDEM.map((n) => n.slice('idem runOnce '.length)).join(' | ') +
      ' | best peer (which, in how many runs) |',
  );
  console.log(`| --- |${IDEM.map(() => ' --- |').join('')} --- |`);
  for (const id of ['first1', 'first64', 'dup1', 'dup64']) {
    const cells = IDEM.map((n) => `${int(median(mine.map((r) => row(r, id, n).rate)))} (${fmt(median(mine.map((r) => row(r, id, n).serverCpu)), 1)})`);
    const names = {};
    for (const r of mine) names[best(r, id)[0]] = (names[best(r, id)[0]] ?? 0) + 1;
    const peer = `${int(median(mine.map((r) => best(r, id)[1].rate)))} (${fmt(median(mine.map((r) => best(r, id)[1].serverCpu)), 1)}), ${Object.entries(names)
      .map(([n, k]) => `${n} ${k}`)
      .join(', ')}`;
    console.log(`| ${id} | ${cells.join(' | ')} | ${peer} |`);
  }
  const low = mine.map((r) => lowestCpu(r, 'first64'));
  console.log(`\nLowest peer server CPU per first execution (64), median: ${fmt(median(low), 1)} µs (runs: ${low.map((x) => fmt(x, 1)).join(', ')})`);

  // The claim designs, sent raw (no library work on the client).
  const m = (f) => median(mine.map(f));
  console.log(
    '\n| design, sent raw | first 1 / best peer | first 64 / best peer | server CPU per first execution (64) / lowest peer | server µs | client µs (64) |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const on of DESIGN_CLIENTS) {
    for (const n of DESIGNS(on)) {
      const cells = [
        m((r) => row(r, 'first1', n).rate / best(r, 'first1')[1].rate),
        m((r) => row(r, 'first64', n).rate / best(r, 'first64')[1].rate),
        m((r) => row(r, 'first64', n).serverCpu / lowestCpu(r, 'first64')),
      ].map((x) => fmt(x));
      console.log(
        `| ${n.slice('design: '.length)} | ${cells.join(' | ')} | ${fmt(
          m((r) => row(r, 'first64', n).serverCpu),
          1,
        )} | ${fmt(
          m((r) => row(r, 'first64', n).client),
          1,
        )} |`,
      );
    }
    const alone = mine.map((r) => (row(r, 'first64', DESIGNS(on)[0]).serverCpu - row(r, 'first64', CLAIMS(on)[0]).serverCpu) / lowestCpu(r, 'first64'));
    console.log(
      `| idem's finish script alone (${on}: the first row less its claim) | | | **${fmt(median(alone))}** (${alone.map((x) => fmt(x)).join(', ')}) | | |`,
    );
  }
  console.log(
    '\n| claim alone, sent raw | server µs per claim (64) | server µs per duplicate (64) | client µs per claim (64) | duplicate 64 ops/s / best peer |',
  );
  console.log('| --- | --- | --- | --- | --- |');
  for (const on of DESIGN_CLIENTS) {
    for (const n of CLAIMS(on)) {
      console.log(
        `| ${n.slice('design: '.length)} | ${fmt(
          m((r) => row(r, 'first64', n).serverCpu),
          1,
        )} | ${fmt(
          m((r) => row(r, 'dup64', n).serverCpu),
          1,
        )} | ${fmt(
          m((r) => row(r, 'first64', n).client),
          1,
        )} | ${fmt(m((r) => row(r, 'dup64', n).rate / best(r, 'dup64')[1].rate))} |`,
      );
    }
  }
}
