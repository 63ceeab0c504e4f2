// @idem/http bench: handlers behind the middleware against the same handlers bare, served by one
// API server process (Hono on Node, bench/server.mjs), requests from this process with fetch, in
// one run. On LMDB and, when IDEM_TEST_REDIS_URL is set, Valkey, where node-idempotency (its core
// with its Redis adapter) runs on the same server too. Prints; never asserts.
//   node bench/bench.mjs [--quick] [--rounds=N]     (pnpm --filter @idem/http bench)
//
// Two handlers: `noop` (echo the JSON body) measures the middleware's whole cost, since the
// handler costs next to nothing; `work` (a 2 ms awaited call and 0.15-0.25 ms of CPU, see server.mjs)
// is what a replay is meant to be faster than. Each scenario: throughput at 64 in flight, as a
// ratio of its bare handler's in the same round, and the CPU it cost per request in this
// process (the client), the API server and Valkey, which explains the throughput on a machine
// whose cores all three share. Then latency at 1 in flight. Only ratios and CPU per request within
// one run mean anything on a shared machine: compare those.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';

const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = process.argv.includes('--quick');
const TOTAL = quick ? 500 : 3000;
const IN_FLIGHT = 64;
const ROUNDS = Number(arg('rounds') ?? (quick ? 1 : 3));
const SERIAL = quick ? 50 : 300;

const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');

async function startServer(storeUrl, redisUrl) {
  const args = [join(import.meta.dirname, 'server.mjs'), storeUrl, ...(redisUrl ? [redisUrl] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port.trim()}`;
  return { url, cpu: async () => await (await fetch(`${url}/cpu`)).json(), stop: () => child.kill() };
}

const post = (url, key) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) }, body: '{"amount":100}' });

/** Valkey's counters: CPU µs (user + system) so far, and calls per command. */
async function valkeyCounters(admin) {
  if (!admin) return { cpu: 0, calls: new Map() };
  const info = await admin.info('all');
  const num = (field) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  const calls = new Map([...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]));
  return { cpu: (num('used_cpu_user') + num('used_cpu_sys')) * 1e6, calls };
}

/**
 * Round trips to Valkey between two snapshots: the calls of every command but the bench's own INFO,
 * or only the scripts' when there are any (the commands a script runs inside are counted too).
 */
function roundTrips(c0, c1) {
  const delta = [...c1.calls].filter(([name]) => name !== 'info').map(([name, n]) => [name, n - (c0.calls.get(name) ?? 0)]);
  const scripts = delta.filter(([name]) => /^(eval|fcall)/.test(name));
  return (scripts.some(([, n]) => n > 0) ? scripts : delta).reduce((sum, [, n]) => sum + n, 0);
}

/**
 * `total` requests, `inFlight` at a time: requests per second, the median latency (ms), and per
 * request the CPU (µs) of the client, the API server and Valkey, and the round trips to Valkey.
 * `replayed`: whether each answer must carry the replay marker (a replay that ran is a broken scenario).
 */
async function measure(server, admin, request, { total = TOTAL, inFlight = IN_FLIGHT, replayed }) {
  const [client0, server0, valkey0] = [process.cpuUsage(), await server.cpu(), await valkeyCounters(admin)];
  const latencies = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) {
        const start = performance.now();
        const res = await request(next++);
        await res.arrayBuffer();
        latencies.push(performance.now() - start);
        if (res.status !== 201) throw new Error(`status ${res.status}`);
        const marked = res.headers.get('idempotent-replayed') === 'true';
        if (replayed !== undefined && marked !== replayed) throw new Error(replayed ? 'a replay ran the handler' : 'a first request was replayed');
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const [client1, server1, valkey1] = [process.cpuUsage(client0), await server.cpu(), await valkeyCounters(admin)];
  latencies.sort((a, b) => a - b);
  return {
    rate: total / seconds,
    p50: latencies[Math.floor(latencies.length / 2)],
    client: (client1.user + client1.system) / total,
    server: (server1.user + server1.system - server0.user - server0.system) / total,
    valkey: (valkey1.cpu - valkey0.cpu) / total,
    roundTrips: roundTrips(valkey0, valkey1) / total,
  };
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const backends = [['LMDB', `lmdb://${mkdtempSync(join(tmpdir(), 'idem-http-bench-'))}`]];
const redisUrl = process.env.IDEM_TEST_REDIS_URL;
if (redisUrl) backends.push(['Valkey', `${redisUrl}?prefix=idem-http-bench-${process.pid}:`]);
else console.log('(no IDEM_TEST_REDIS_URL: LMDB only)');

console.log(
  `@idem/http bench: ${TOTAL} requests per measure at ${IN_FLIGHT} in flight, ${SERIAL} at 1; median of ${ROUNDS} rounds; load average ${load()} (1, 5, 15 min)${quick ? ' (--quick: few requests, figures indicative only)' : ''}`,
);
for (const [name, storeUrl] of backends) {
  const admin = name === 'Valkey' ? new Redis(redisUrl, { lazyConnect: false }) : undefined;
  const server = await startServer(storeUrl, name === 'Valkey' ? redisUrl : undefined);
  const at = (path) => `${server.url}${path}`;
  /** Scenario name -> [path, key prefix for its round or undefined (no key), replayed]. */
  const scenarios = [
    ['noop bare', '/noop', undefined],
    ['noop @idem/http first', '/noop/idem', 'f', false],
    ['noop @idem/http replay', '/noop/idem', 'f', true],
    ...(admin
      ? [
          ['noop node-idempotency first', '/noop/node-idempotency', 'f', false],
          ['noop node-idempotency replay', '/noop/node-idempotency', 'f', true],
        ]
      : []),
    ['work bare', '/work', undefined],
    ['work @idem/http first', '/work/idem', 'f', false],
    ['work @idem/http replay', '/work/idem', 'f', true],
  ];
  // Warm-up: connections, scripts, JIT, every path.
  for (const [, path, prefix] of scenarios) await measure(server, admin, (i) => post(at(path), prefix && `warm-${i}`), { total: Math.min(TOTAL, 500) });
  const results = new Map(scenarios.map(([s]) => [s, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const tag = `r${round}-${Date.now()}`;
    for (const [scenario, path, prefix, replayed] of scenarios) {
      results.get(scenario).push(await measure(server, admin, (i) => post(at(path), prefix && `${tag}-${i}`), { replayed }));
    }
  }
  // Latency at 1 in flight: the handlers bare against a replay (keys completed above).
  const serial = [];
  for (const [scenario, path, prefix, replayed] of [
    ['noop bare', '/noop'],
    ['noop @idem/http replay', '/noop/idem', 'f', true],
    ['work bare', '/work'],
    ['work @idem/http replay', '/work/idem', 'f', true],
  ]) {
    const tag = `serial-${Date.now()}`;
    if (prefix) await measure(server, admin, (i) => post(at(path), `${tag}-${i}`), { total: SERIAL });
    serial.push([scenario, await measure(server, admin, (i) => post(at(path), prefix && `${tag}-${i}`), { total: SERIAL, inFlight: 1, replayed })]);
  }
  server.stop();
  admin?.disconnect();

  const pick = (scenario, field) => median(results.get(scenario).map((r) => r[field]));
  console.log(`\n${name} (load average now ${load()})`);
  console.log(
    `  ${'scenario'.padEnd(30)} ${'req/s'.padStart(6)}  ${'x bare'.padStart(6)}  CPU µs/request: ${'client'.padStart(6)} ${'server'.padStart(6)}${admin ? ` ${'valkey'.padStart(6)}` : ''} ${'sum'.padStart(6)}  x bare by CPU${admin ? '  round trips' : ''}`,
  );
  for (const [scenario] of scenarios) {
    const bare = scenario.startsWith('work') ? 'work bare' : 'noop bare';
    // The ratio within each round, then the median of the rounds: rounds run minutes apart on a shared machine.
    const ratios = results.get(scenario).map((r, i) => r.rate / results.get(bare)[i].rate);
    const fields = ['client', 'server', ...(admin ? ['valkey'] : [])];
    const cpu = fields.map((f) => pick(scenario, f).toFixed(0).padStart(6)).join(' ');
    // The CPU all three spend per request, and the throughput ratio it predicts when the cores are
    // the only limit (as here, with client, server and Valkey on two cores): bare's sum over this one's.
    const sum = (name) => median(results.get(name).map((r) => fields.reduce((a, f) => a + r[f], 0)));
    console.log(
      `  ${scenario.padEnd(30)} ${pick(scenario, 'rate').toFixed(0).padStart(6)}  ${median(ratios).toFixed(2).padStart(6)}  ${''.padEnd(16)}${cpu} ${sum(scenario).toFixed(0).padStart(6)}  ${(sum(bare) / sum(scenario)).toFixed(2).padStart(13)}${admin ? `  ${pick(scenario, 'roundTrips').toFixed(2).padStart(11)}` : ''}`,
    );
  }
  console.log('  at 1 in flight, median latency:');
  for (const [scenario, r] of serial) console.log(`  ${scenario.padEnd(30)} ${r.p50.toFixed(2).padStart(6)} ms`);
}
