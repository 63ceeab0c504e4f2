// GCS bench: HTTP requests per claim / duplicate / complete, counted by a
// loopback proxy that sees every request on the wire, and claim latency
// against a raw preconditioned insert (ifGenerationMatch=0), in one run.
// Uses STORAGE_EMULATOR_HOST + IDEM_TEST_GCS_BUCKET when set, else starts
// fake-gcs-server with scripts/servers/gcs.sh (and stops it). Prints figures; never asserts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Storage } from '@google-cloud/storage';
import { serializeRecord, storageName } from '@idem/core/adapter';
import { createGcsStore } from '@idem/gcs';
import { newStorage } from '@idem/gcs/url';

const quick = process.argv.includes('--quick');
const N = quick ? 100 : 500;
const script = fileURLToPath(new URL('../../../scripts/servers/gcs.sh', import.meta.url));

let env = process.env;
let rundir;
if (!env.STORAGE_EMULATOR_HOST || !env.IDEM_TEST_GCS_BUCKET) {
  rundir = mkdtempSync(join(tmpdir(), 'idem-gcs-bench-'));
  const out = execFileSync('bash', [script, 'start', rundir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  env = { ...env, ...Object.fromEntries([...out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1], m[2]])) };
}
const endpoint = env.STORAGE_EMULATOR_HOST;
const bucketName = env.IDEM_TEST_GCS_BUCKET;

/** Forwards to the emulator and counts requests by method and path kind. */
function countingProxy() {
  const counts = new Map();
  const server = createServer((req, res) => {
    const kind = `${req.method} ${req.url.startsWith('/upload/') ? 'upload' : req.url.includes('alt=media') ? 'media' : 'json'}`;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
    const up = request(new URL(req.url, endpoint), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  return { server, counts };
}

const proxy = countingProxy();
await new Promise((r) => proxy.server.listen(0, '127.0.0.1', r));
try {
  const counted = newStorage(Storage, { apiEndpoint: `http://127.0.0.1:${proxy.server.address().port}`, projectId: 'idem-bench' });
  const direct = newStorage(Storage, { apiEndpoint: endpoint, projectId: 'idem-bench' });
  const run = `bench/${Date.now().toString(36)}`;
  const measure = async (fn) => {
    proxy.counts.clear();
    await fn();
    return { n: [...proxy.counts.values()].reduce((a, b) => a + b, 0), detail: Object.fromEntries(proxy.counts) };
  };

  // 1. Requests per operation, averaged over K keys.
  const K = 50;
  const store = await createGcsStore({ bucket: counted.bucket(bucketName), prefix: `${run}/count/` });
  const leases = [];
  const claim = await measure(async () => {
    for (let i = 0; i < K; i++) leases.push((await store.claim(`count-${i}`)).lease);
  });
  const dupInFlight = await measure(async () => {
    for (let i = 0; i < K; i++) await store.claim(`count-${i}`);
  });
  const complete = await measure(async () => {
    for (const lease of leases) await store.complete(lease, { result: { ok: true } });
  });
  const dupCompleted = await measure(async () => {
    for (let i = 0; i < K; i++) await store.claim(`count-${i}`);
  });
  proxy.server.close();

  // 2. Latency: the adapter's claim against the raw primitive it is built on, interleaved so drift hits both.
  const idem = await createGcsStore({ bucket: direct.bucket(bucketName), prefix: `${run}/idem/` });
  const rawBucket = direct.bucket(bucketName);
  const body = (k) =>
    serializeRecord({
      v: 1,
      key: k,
      status: 'in_flight',
      runId: crypto.randomUUID(),
      fence: 1,
      attempt: 1,
      claimedAt: Date.now(),
      leaseExpiresAt: Date.now() + 300_000,
    });
  const raw = (k) =>
    rawBucket
      .file(`${run}/raw/${storageName(k)}`)
      .save(body(k), { resumable: false, validation: false, metadata: { contentType: 'application/json' }, preconditionOpts: { ifGenerationMatch: 0 } });
  const timeOf = async (fn) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  for (let i = 0; i < 20; i++) {
    await raw(`warm-${i}`);
    await idem.claim(`warm-${i}`);
  }
  const tRaw = [];
  const tIdem = [];
  for (let i = 0; i < N; i++) {
    tRaw.push(await timeOf(() => raw(`lat-${i}`)));
    tIdem.push(await timeOf(() => idem.claim(`lat-${i}`)));
  }
  const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)];

  // 3. Throughput at 64 in flight (server and bench share the machine: indicative only).
  const throughput = async (op, total) => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < total) await op(next++);
      }),
    );
    return total / ((performance.now() - t0) / 1000);
  };
  // Alternating rounds: fake-gcs-server scans the whole bucket on every insert, so whoever ran later would pay for a fuller bucket.
  const T = quick ? 250 : 1000;
  const rawRounds = [];
  const idemRounds = [];
  for (let round = 0; round < 4; round++) {
    // Swap the order every round, so neither side always meets the fuller bucket.
    const pair = [
      async () => rawRounds.push(await throughput((i) => raw(`tp-${round}-${i}`), T)),
      async () => idemRounds.push(await throughput((i) => idem.claim(`tp-${round}-${i}`), T)),
    ];
    if (round % 2 === 1) pair.reverse();
    for (const step of pair) await step();
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rawOps = mean(rawRounds);
  const idemOps = mean(idemRounds);

  const f = (x) => x.toFixed(2);
  console.log(`gcs bench (node ${process.version}, @google-cloud/storage, fake-gcs-server at ${endpoint}${quick ? ', --quick' : ''})`);
  console.log(`requests per uncontended claim:     ${f(claim.n / K)}  (goal 1)    ${JSON.stringify(claim.detail)}`);
  console.log(`requests per duplicate (in flight): ${f(dupInFlight.n / K)}  (goal <= 2) ${JSON.stringify(dupInFlight.detail)}`);
  console.log(`requests per duplicate (completed): ${f(dupCompleted.n / K)}  (goal <= 2) ${JSON.stringify(dupCompleted.detail)}`);
  console.log(`requests per complete:              ${f(complete.n / K)}  (goal 1)    ${JSON.stringify(complete.detail)}`);
  console.log(
    `claim latency p50: idem ${f(pct(tIdem, 0.5))} ms, raw insert ${f(pct(tRaw, 0.5))} ms, ratio ${f(pct(tIdem, 0.5) / pct(tRaw, 0.5))}x (goal <= 1.1x)`,
  );
  console.log(`claim latency p99: idem ${f(pct(tIdem, 0.99))} ms, raw insert ${f(pct(tRaw, 0.99))} ms  (n=${N} each, interleaved)`);
  console.log(`throughput at 64 in flight: idem ${idemOps.toFixed(0)}/s, raw ${rawOps.toFixed(0)}/s, ratio ${f(idemOps / rawOps)}`);
  await Promise.all([store.close(), idem.close()]);
} finally {
  proxy.server.close();
  if (rundir) {
    execFileSync('bash', [script, 'stop', rundir], { stdio: 'inherit' });
    rmSync(rundir, { recursive: true, force: true });
  }
}
