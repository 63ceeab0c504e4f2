// @idem/http bench: a trivial handler behind the middleware against the same handler bare, served
// by one server process (Hono on Node), 64 requests in flight from this process, in one run.
// First requests (new keys) and replays (the same keys again) as ratios of the bare handler's
// throughput, on LMDB and, when IDEM_TEST_REDIS_URL is set, Valkey. Prints; never asserts.
//   node bench/bench.mjs [--quick]          (pnpm --filter @idem/http bench)
// Only ratios within one run mean anything on a shared machine: compare those.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const quick = process.argv.includes('--quick');
const TOTAL = quick ? 1000 : 5000;
const IN_FLIGHT = 64;
const ROUNDS = quick ? 1 : 3;

async function startServer(storeUrl) {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'server.mjs'), storeUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `http://127.0.0.1:${port.trim()}`, stop: () => child.kill() };
}

/** Requests per second of `TOTAL` requests, `IN_FLIGHT` at a time. */
async function throughput(request) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < TOTAL) {
        const res = await request(next++);
        if (res.status !== 201) throw new Error(`status ${res.status}`);
        await res.arrayBuffer();
      }
    }),
  );
  return TOTAL / ((performance.now() - t0) / 1000);
}

const post = (url, key) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) }, body: '{"amount":100}' });

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const backends = [['lmdb', `lmdb://${mkdtempSync(join(tmpdir(), 'idem-http-bench-'))}`]];
if (process.env.IDEM_TEST_REDIS_URL) backends.push(['valkey', `${process.env.IDEM_TEST_REDIS_URL}?prefix=idem-http-bench-${process.pid}:`]);
else console.log('(no IDEM_TEST_REDIS_URL: LMDB only)');

console.log(`@idem/http bench: ${TOTAL} requests per measure, ${IN_FLIGHT} in flight, median of ${ROUNDS} rounds, load ${loadavg()[0].toFixed(2)}`);
for (const [name, storeUrl] of backends) {
  const server = await startServer(storeUrl);
  await throughput(() => post(`${server.url}/bare`)); // warm-up
  const bare = [];
  const first = [];
  const replay = [];
  for (let round = 0; round < ROUNDS; round++) {
    const prefix = `r${round}-${Date.now()}`;
    bare.push(await throughput(() => post(`${server.url}/bare`)));
    first.push(await throughput((i) => post(`${server.url}/guarded`, `${prefix}-${i}`)));
    replay.push(await throughput((i) => post(`${server.url}/guarded`, `${prefix}-${i}`)));
  }
  server.stop();
  const b = median(bare);
  console.log(
    `${name.padEnd(7)} bare ${b.toFixed(0)} req/s; first request ${median(first).toFixed(0)} req/s (${(median(first) / b).toFixed(2)}x bare); replay ${median(replay).toFixed(0)} req/s (${(median(replay) / b).toFixed(2)}x bare)`,
  );
}
