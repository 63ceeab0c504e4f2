// Tiered store bench: claim latency of plain Valkey vs Valkey + MinIO archive (@idem/core/tiered),
// on the same servers in one run, sequential (one claim at a time: latency, not throughput).
// Prints p50/p99 per phase; never asserts (speed is measured here, not in tests).
//   node packages/cli/bench/tiered.mjs [--quick]   with the servers of scripts/servers.sh start in the env
// Phases per store: first execution (claim of a new key + complete), duplicate claim (the front
// answers), and for the tiered store a duplicate after the front forgot (the archive answers).
import { S3Client } from '@aws-sdk/client-s3';
import { createTieredStore } from '@idem/core/tiered';
import { createS3Store } from '@idem/s3';
import { createValkeyStore } from '@idem/valkey';

const quick = process.argv.includes('--quick');
const N = quick ? 200 : 2_000;
const env = process.env;
const missing = ['IDEM_TEST_REDIS_URL', 'IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_BUCKET'].filter((v) => !env[v]);
if (missing.length > 0) {
  console.log(`tiered bench: skipped, no servers (${missing.join(', ')} unset; eval "$(bash scripts/servers.sh start)" first)`);
  process.exit(0);
}

const tag = `bench-${process.pid}-${Date.now().toString(36)}`;
const valkey = (prefix) => createValkeyStore({ url: env.IDEM_TEST_REDIS_URL, prefix });
const archive = () =>
  createS3Store({
    client: new S3Client({
      endpoint: env.IDEM_TEST_S3_ENDPOINT,
      region: env.IDEM_TEST_S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: env.IDEM_TEST_S3_ACCESS_KEY, secretAccessKey: env.IDEM_TEST_S3_SECRET_KEY },
    }),
    bucket: env.IDEM_TEST_S3_BUCKET,
    prefix: `bench/${tag}/`,
  });

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
async function timed(label, fn) {
  const ms = [];
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    await fn(i);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  console.log(`${label.padEnd(52)} p50 ${pct(ms, 50).toFixed(2).padStart(7)} ms   p99 ${pct(ms, 99).toFixed(2).padStart(7)} ms   (${N} ops)`);
}

const plain = await valkey(`idem-bench:${tag}:plain:`);
const front = await valkey(`idem-bench:${tag}:front:`);
const tiered = await createTieredStore({ front, archive: await archive() });
try {
  for (const [name, store] of [
    ['valkey', plain],
    ['valkey + MinIO archive', tiered],
  ]) {
    await timed(`${name}: first execution (claim + complete)`, async (i) => {
      const out = await store.claim(`k${i}`);
      await store.complete(out.lease, { result: i });
    });
    await timed(`${name}: duplicate claim`, (i) => store.claim(`k${i}`));
  }
  // The front forgets every key (what eviction or a restart without persistence does): the archive answers.
  for (let i = 0; i < N; i++) await front.delete(`k${i}`);
  await timed('valkey + MinIO archive: duplicate, front forgot', (i) => tiered.claim(`k${i}`));
} finally {
  for (let i = 0; i < N; i++) await Promise.all([plain.delete(`k${i}`), tiered.delete(`k${i}`)]);
  await Promise.all([plain.close(), tiered.close()]);
}
