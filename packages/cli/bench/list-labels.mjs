#!/usr/bin/env node
// What `list --label` costs: every backend filters in core over its own scan, so a filtered
// listing reads the whole store. Per backend, N records (one in a hundred labelled
// team=target), then the whole unfiltered listing (the raw scan: the floor) and the
// labelled one, each timed; the ratio is the filter's own cost over the scan.
//
//   node bench/list-labels.mjs [--n=100000] [--only=lmdb,valkey,s3,gcs]
//
// LMDB needs nothing; valkey, s3 and gcs use the servers of scripts/servers.sh
// (eval "$(bash scripts/servers.sh start)"), and are left out without them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStoreUrl } from '@idem/core/url';

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback;
const N = Number(arg('n', '100000'));
const only = arg('only', 'lmdb,valkey,s3,gcs').split(',');
const importer = (s) => import(s);
const env = process.env;

const targets = [];
const dir = mkdtempSync(join(tmpdir(), 'idem-list-bench-'));
if (only.includes('lmdb')) targets.push({ name: 'lmdb', url: `lmdb:${join(dir, 'db')}` });
if (only.includes('valkey') && env.IDEM_TEST_REDIS_URL) targets.push({ name: 'valkey', url: `${env.IDEM_TEST_REDIS_URL}?prefix=bench-${process.pid}:` });
if (only.includes('s3') && env.IDEM_TEST_S3_ENDPOINT) {
  process.env.AWS_ACCESS_KEY_ID = env.IDEM_TEST_S3_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = env.IDEM_TEST_S3_SECRET_KEY;
  targets.push({
    name: 's3 (MinIO)',
    url: `s3://${env.IDEM_TEST_S3_BUCKET}/bench-${process.pid}?endpoint=${encodeURIComponent(env.IDEM_TEST_S3_ENDPOINT)}&region=${env.IDEM_TEST_S3_REGION}`,
  });
}
if (only.includes('gcs') && env.STORAGE_EMULATOR_HOST)
  targets.push({ name: 'gcs (fake-gcs-server)', url: `gs://${env.IDEM_TEST_GCS_BUCKET}/bench-${process.pid}` });

async function listAll(store, filter) {
  let cursor;
  let count = 0;
  do {
    const page = await store.list({ ...filter, limit: 1000, ...(cursor !== undefined ? { cursor } : {}) });
    count += page.records.length;
    cursor = page.cursor;
  } while (cursor !== undefined);
  return count;
}

console.log(`list --label over ${N} records per backend (1 in 100 labelled), Node ${process.version}`);
for (const { name, url } of targets) {
  const store = await openStoreUrl(url, { importer, leaseMs: 3_600_000 });
  try {
    // Setup, not measured: 64 claims in flight.
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let i = next++; i < N; i = next++) {
          await store.claim(`job-${i}`, { labels: i % 100 === 0 ? { team: 'target', n: String(i) } : { team: 'other' } });
        }
      }),
    );
    let t = performance.now();
    const all = await listAll(store, {});
    const scanMs = performance.now() - t;
    t = performance.now();
    const found = await listAll(store, { labels: { team: 'target' } });
    const filteredMs = performance.now() - t;
    if (all !== N || found !== Math.ceil(N / 100)) throw new Error(`${name}: listed ${all} and found ${found}, expected ${N} and ${Math.ceil(N / 100)}`);
    console.log(
      `${name.padEnd(24)} scan ${scanMs.toFixed(0).padStart(7)} ms   --label ${filteredMs.toFixed(0).padStart(7)} ms   x scan ${(filteredMs / scanMs).toFixed(2)}   (${found} found)`,
    );
  } finally {
    await store.close();
  }
}
rmSync(dir, { recursive: true, force: true });
