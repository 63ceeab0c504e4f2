// One string, one store: every documented store URL form, opened by the
// library (the adapter's own `{ url }` entry where it has one, and
// openStoreUrl) and by the `idem` CLI, names the same records. A claim held
// by the library makes the CLI skip; a key the CLI finished is completed for
// the library. Against the real servers of scripts/servers.sh.
import { join } from 'node:path';
import type { IdempotencyStore } from '@idem/core';
import { openStoreUrl } from '@idem/core/url';
import { createValkeyStore } from '@idem/valkey';
import { findServer, tempDir } from '@idem/test-fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { idem, type Options } from './helpers.js';

const redis = await findServer({ label: 'one URL on redis://', env: ['IDEM_TEST_REDIS_URL'] });
const cluster = await findServer({ label: 'one URL on a redis:// cluster', env: ['IDEM_TEST_REDIS_CLUSTER'] });
const sentinel = await findServer({ label: 'one URL on redis+sentinel://', env: ['IDEM_TEST_REDIS_SENTINEL'] });
const s3 = await findServer({
  label: 'one URL on s3://',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
});
const gcs = await findServer({ label: 'one URL on gs://', env: ['STORAGE_EMULATOR_HOST', 'IDEM_TEST_GCS_BUCKET'] });

const unique = () => `one-url-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const opened: IdempotencyStore[] = [];
afterAll(async () => {
  await Promise.allSettled(opened.map((s) => s.close()));
});

type Opener = (url: string) => Promise<IdempotencyStore>;
// The importer: this test's own resolution, as in a pnpm workspace (see StoreUrlOptions.importer).
const viaOpenStoreUrl: Opener = (url) => openStoreUrl(url, { importer: (specifier) => import(specifier) });
const viaValkeyOption: Opener = (url) => createValkeyStore({ url });

/** The same store from both sides, both ways round. */
async function sameStore(url: string, open: Opener, options: Options = {}): Promise<void> {
  const store = await open(url);
  opened.push(store);
  const held = unique();
  const claim = await store.claim(held, { runId: 'library' });
  expect(claim.outcome).toBe('acquired');
  const skipped = await idem(['run', '--key', held, '--store', url, '--json', '--', 'true'], options);
  expect(skipped.json, skipped.stderr).toMatchObject({ status: 'skipped_in_flight', skipped_by_run_id: 'library' });

  const done = unique();
  const ran = await idem(['run', '--key', done, '--store', url, '--json', '--', 'true'], options);
  expect(ran.json, ran.stderr).toMatchObject({ status: 'succeeded' });
  const seen = await store.claim(done);
  expect(seen).toMatchObject({ outcome: 'completed', record: { runId: ran.json.run_id } });

  if (claim.outcome === 'acquired') await store.release(claim.lease);
}

describe('lmdb:', () => {
  it('lmdb:/absolute/path and lmdb:///absolute/path', async () => {
    const dir = join(tempDir('idem-one-url-'), 'db');
    await sameStore(`lmdb:${dir}`, viaOpenStoreUrl);
    await sameStore(`lmdb://${dir}`, viaOpenStoreUrl);
  });
});

describe.skipIf(!redis)('redis:// and valkey:// standalone', () => {
  const base = () => redis!.IDEM_TEST_REDIS_URL!;
  const forms = () => [
    `${base()}?prefix=${unique()}:`,
    `${base()}/3?prefix=${unique()}:`,
    `${base().replace(/^redis:/, 'valkey:')}?prefix=${unique()}:`,
    // Without a prefix: the default namespace, the same on both sides.
    base(),
  ];
  it('createValkeyStore({ url }) and the CLI: one store for each form', async () => {
    for (const url of forms()) await sameStore(url, viaValkeyOption);
  });
  it('openStoreUrl and the CLI: one store for each form', async () => {
    for (const url of forms()) await sameStore(url, viaOpenStoreUrl);
  });
  it('a tiered URL (archive=) is one store too', async () => {
    const archive = `lmdb:${join(tempDir('idem-one-url-archive-'), 'db')}`;
    await sameStore(`${base()}?prefix=${unique()}:&archive=${encodeURIComponent(archive)}&frontRetention=1m`, viaOpenStoreUrl);
  });
});

describe.skipIf(!cluster)('redis:// cluster (cluster=true&nodes=...)', () => {
  it('createValkeyStore({ url }), openStoreUrl and the CLI: one store', async () => {
    const [first, ...rest] = cluster!.IDEM_TEST_REDIS_CLUSTER!.split(',');
    const url = () => `redis://${first}?cluster=true${rest.length ? `&nodes=${rest.join(',')}` : ''}&prefix=${unique()}:`;
    await sameStore(url(), viaValkeyOption);
    await sameStore(url(), viaOpenStoreUrl);
  });
});

describe.skipIf(!sentinel)('redis+sentinel://', () => {
  it('createValkeyStore({ url }), openStoreUrl and the CLI: one store, with prefix and minReplicas', async () => {
    const url = () => `${sentinel!.IDEM_TEST_REDIS_SENTINEL}?prefix=${unique()}:&minReplicas=1&replicaTimeoutMs=2000`;
    await sameStore(url(), viaValkeyOption);
    await sameStore(url(), viaOpenStoreUrl);
  });
});

describe.skipIf(!s3)('s3://', () => {
  it('openStoreUrl and the CLI: one store', async () => {
    const env = { AWS_ACCESS_KEY_ID: s3!.IDEM_TEST_S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: s3!.IDEM_TEST_S3_SECRET_KEY };
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    Object.assign(process.env, env);
    try {
      const url = `s3://${s3!.IDEM_TEST_S3_BUCKET}/${unique()}?endpoint=${encodeURIComponent(s3!.IDEM_TEST_S3_ENDPOINT!)}&region=${s3!.IDEM_TEST_S3_REGION}`;
      await sameStore(url, viaOpenStoreUrl, { env });
    } finally {
      for (const [name, value] of [
        ['AWS_ACCESS_KEY_ID', saved.id],
        ['AWS_SECRET_ACCESS_KEY', saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe.skipIf(!gcs)('gs://', () => {
  it('openStoreUrl and the CLI: one store', async () => {
    const env = { STORAGE_EMULATOR_HOST: gcs!.STORAGE_EMULATOR_HOST };
    await sameStore(`gs://${gcs!.IDEM_TEST_GCS_BUCKET}/${unique()}`, viaOpenStoreUrl, { env });
  });
});
