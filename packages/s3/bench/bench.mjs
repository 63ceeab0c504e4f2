// S3 bench: HTTP requests per claim / duplicate / complete, counted by an SDK
// middleware, and claim latency against a raw conditional PutObject, in one run.
// Uses IDEM_TEST_S3_* when set, else starts MinIO with scripts/servers/minio.sh
// (and stops it). Prints figures; never asserts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { serializeRecord, storageName } from '@idem/core/adapter';
import { createS3Store } from '@idem/s3';

const quick = process.argv.includes('--quick');
const N = quick ? 100 : 500;
const script = fileURLToPath(new URL('../../../scripts/servers/minio.sh', import.meta.url));

let env = process.env;
let rundir;
if (!env.IDEM_TEST_S3_ENDPOINT) {
  rundir = mkdtempSync(join(tmpdir(), 'idem-s3-bench-'));
  const out = execFileSync('bash', [script, 'start', rundir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  env = { ...env, ...Object.fromEntries([...out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1], m[2]])) };
}

try {
  const client = new S3Client({
    endpoint: env.IDEM_TEST_S3_ENDPOINT,
    region: env.IDEM_TEST_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.IDEM_TEST_S3_ACCESS_KEY, secretAccessKey: env.IDEM_TEST_S3_SECRET_KEY },
  });
  // Per HTTP attempt: the deserialize step runs under the SDK's retry loop, once per request sent.
  const counts = new Map();
  client.middlewareStack.add(
    (next) => async (args) => {
      const h = args.request.headers;
      const what = `${args.request.method}${h['if-none-match'] ? ' If-None-Match' : h['if-match'] ? ' If-Match' : ''}`;
      counts.set(what, (counts.get(what) ?? 0) + 1);
      return next(args);
    },
    { step: 'deserialize', name: 'benchCountRequests' },
  );
  const total = () => [...counts.values()].reduce((a, b) => a + b, 0);
  const measure = async (fn) => {
    counts.clear();
    await fn();
    return { n: total(), detail: Object.fromEntries(counts) };
  };

  const Bucket = env.IDEM_TEST_S3_BUCKET;
  const run = `bench/${Date.now().toString(36)}`;
  const store = await createS3Store({ client, bucket: Bucket, prefix: `${run}/idem/` });
  const key = (label, i) => `${label}-${i}`;

  // 1. Requests per operation (averaged over many keys).
  const K = 50;
  const leases = [];
  const claim = await measure(async () => {
    for (let i = 0; i < K; i++) leases.push((await store.claim(key('count', i))).lease);
  });
  const dup = await measure(async () => {
    for (let i = 0; i < K; i++) await store.claim(key('count', i));
  });
  const complete = await measure(async () => {
    for (const lease of leases) await store.complete(lease, { result: { ok: true } });
  });
  const dupDone = await measure(async () => {
    for (let i = 0; i < K; i++) await store.claim(key('count', i));
  });

  // 2. Latency: a claim against the raw primitive it is built on, interleaved so both see the same server state.
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
    client.send(new PutObjectCommand({ Bucket, Key: `${run}/raw/${storageName(k)}`, Body: body(k), ContentType: 'application/json', IfNoneMatch: '*' }));
  const timeOf = async (fn) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  for (let i = 0; i < 50; i++) {
    await raw(key('warm', i));
    await store.claim(key('warm', i));
  }
  const tRaw = [];
  const tClaim = [];
  for (let i = 0; i < N; i++) {
    if (i % 2 === 0) {
      tRaw.push(await timeOf(() => raw(key('lat', i))));
      tClaim.push(await timeOf(() => store.claim(key('lat', i))));
    } else {
      tClaim.push(await timeOf(() => store.claim(key('lat', i))));
      tRaw.push(await timeOf(() => raw(key('lat', i))));
    }
  }
  const stats = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: s[Math.floor(s.length / 2)], p99: s[Math.floor(s.length * 0.99)], mean: s.reduce((a, b) => a + b, 0) / s.length };
  };
  const r = stats(tRaw);
  const c = stats(tClaim);

  // 3. Throughput at 64 in flight, same comparison.
  const throughput = async (op, label) => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < N) await op(key(label, next++));
      }),
    );
    return N / ((performance.now() - t0) / 1000);
  };
  // Alternated rounds, best of each: the first burst of 64 connections pays for opening them.
  let rawTput = 0;
  let claimTput = 0;
  for (let round = 0; round < 3; round++) {
    rawTput = Math.max(rawTput, await throughput(raw, `tput-raw-${round}`));
    claimTput = Math.max(claimTput, await throughput((k) => store.claim(k), `tput-claim-${round}`));
  }

  const f = (x) => x.toFixed(2);
  console.log(`@idem/s3 bench against ${env.IDEM_TEST_S3_ENDPOINT} (${N} claims per latency series)`);
  console.log(`HTTP requests per uncontended claim: ${f(claim.n / K)}  ${JSON.stringify(claim.detail)}  (goal 1)`);
  console.log(`HTTP requests per duplicate claim (in_flight): ${f(dup.n / K)}  ${JSON.stringify(dup.detail)}  (goal <= 2)`);
  console.log(`HTTP requests per duplicate claim (completed): ${f(dupDone.n / K)}  ${JSON.stringify(dupDone.detail)}  (goal <= 2)`);
  console.log(`HTTP requests per complete: ${f(complete.n / K)}  ${JSON.stringify(complete.detail)}  (goal 1)`);
  console.log(`latency ms, raw PutObject If-None-Match: p50 ${f(r.p50)}  p99 ${f(r.p99)}  mean ${f(r.mean)}`);
  console.log(`latency ms, claim:                       p50 ${f(c.p50)}  p99 ${f(c.p99)}  mean ${f(c.mean)}`);
  console.log(`claim/raw latency ratio: p50 ${f(c.p50 / r.p50)}x  mean ${f(c.mean / r.mean)}x  (goal <= 1.1x)`);
  console.log(`throughput at 64 in flight: raw ${rawTput.toFixed(0)}/s, claim ${claimTput.toFixed(0)}/s, ratio ${f(claimTput / rawTput)}`);
  client.destroy();
} finally {
  if (rundir) {
    execFileSync('bash', [script, 'stop', rundir], { stdio: ['ignore', 'ignore', 'inherit'] });
    rmSync(rundir, { recursive: true, force: true });
  }
}
