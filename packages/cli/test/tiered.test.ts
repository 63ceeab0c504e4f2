// The tiered store's own promises, on real servers (Valkey front, MinIO archive; fake-gcs-server
// for the first): post-completion memory outlives the front, an unreachable archive fails safe,
// a zombie's result never reaches the archive, and the CLI's `?archive=` form end to end.
import { createTieredStore } from '@idem/core/tiered';
import { IdemError, runOnce, storageName, type IdempotencyStore, type Lease } from '@idem/core';
import { createS3Store } from '@idem/s3';
import { createValkeyStore } from '@idem/valkey';
import { afterAll, describe, expect, it } from 'vitest';
import { haveRedisServer, PrivateServer } from '../../valkey/test/private-server.js';
import { idem } from './helpers.js';
import { freshSpec, minio, openArchive, redis, s3Client, tieredServers, unique, type TieredSpec } from './tiered-stores.js';

const opened: IdempotencyStore[] = [];
afterAll(async () => {
  await Promise.allSettled(opened.map((s) => s.close()));
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const codeOf = (error: unknown) => (error instanceof IdemError ? error.code : String(error));
const expectLease = (out: Awaited<ReturnType<IdempotencyStore['claim']>>): Lease => {
  if (out.outcome !== 'acquired' && out.outcome !== 'adopted') throw new Error(`expected a lease, got ${out.outcome}`);
  return out.lease;
};

/** The three stores of one tiered store, kept apart so a test can make the front forget. */
async function tiered(spec: TieredSpec, archive?: IdempotencyStore, frontRetentionMs?: number) {
  const front = await createValkeyStore({ url: spec.redisUrl, prefix: spec.valkeyPrefix });
  const arch = archive ?? (await openArchive(spec));
  // The test's own view of the archive: a separate store on the same bucket and prefix.
  const archiveView = await openArchive(spec);
  const store = await createTieredStore({ front, archive: arch, ...(frontRetentionMs !== undefined ? { frontRetentionMs } : {}) });
  opened.push(store, archiveView);
  return { store, front, archiveView };
}

/** An archive nobody answers: a closed port (connection refused at once), no open-time probe. */
function deadArchive(spec: TieredSpec): Promise<IdempotencyStore> {
  const a = spec.archive;
  if (a.kind !== 's3') throw new Error('dead archive: s3 only');
  return createS3Store({
    client: s3Client(a.env, 'http://127.0.0.1:1'),
    bucket: a.env.IDEM_TEST_S3_BUCKET!,
    prefix: a.prefix,
    probe: false,
    requestTimeoutMs: 5_000,
  });
}

for (const kind of ['s3', 'gcs', 'postgres'] as const) {
  describe.skipIf(!tieredServers(kind))(`tiered memory outlives the front (valkey + ${kind})`, () => {
    it('a completed key survives the front forgetting it (DEL, front retention over): answered completed, never run again', async () => {
      const spec = freshSpec(kind);
      const { store, front, archiveView } = await tiered(spec, undefined, 300);
      let runs = 0;
      const work = async () => ({ n: ++runs });
      const first = await runOnce(store, 'job', work);
      if (first.status !== 'executed') throw new Error('expected the first run to execute');
      expect(first).toMatchObject({ status: 'executed', value: { n: 1 } });
      expect(await archiveView.get('job')).toMatchObject({ status: 'succeeded', result: { n: 1 } });

      // 1. The front's key deleted (what eviction, a restart without persistence or a failover that lost it does).
      // true, or false where the 300 ms front retention ended first (a loaded machine): either way the front forgot it.
      await front.delete('job');
      expect(await front.get('job')).toBeUndefined();
      const again = await store.claim('job');
      expect(again).toMatchObject({ outcome: 'completed', record: { status: 'succeeded', result: { n: 1 }, runId: first.record.runId } });
      expect(await runOnce(store, 'job', work)).toMatchObject({ status: 'completed', result: { n: 1 } });
      // The claim copied the answer into the front: the next duplicate stops there.
      expect(await front.get('job')).toMatchObject({ status: 'succeeded', result: { n: 1 } });

      // 2. The front's retention (300 ms) ends: the archive still answers, for the whole retention.
      await sleep(900);
      expect(await front.get('job')).toBeUndefined();
      expect(await runOnce(store, 'job', work)).toMatchObject({ status: 'completed', result: { n: 1 } });
      expect(await store.get('job')).toMatchObject({ status: 'succeeded', result: { n: 1 }, runId: first.record.runId });
      expect(runs).toBe(1);
    });
  });
}

describe.skipIf(!redis || !minio || !haveRedisServer())('tiered memory outlives a front restart without persistence', () => {
  it('Valkey killed (SIGKILL) and restarted empty: the completed key is answered from the archive, not run again', async () => {
    const server = await PrivateServer.start();
    try {
      const spec = { ...freshSpec('s3'), redisUrl: server.url };
      const { store, front } = await tiered(spec);
      let runs = 0;
      const work = async () => ++runs;
      expect(await runOnce(store, 'nightly', work)).toMatchObject({ status: 'executed', value: 1 });
      await server.stop();
      await server.restart();
      expect(await front.get('nightly')).toBeUndefined(); // the front remembers nothing
      expect(await runOnce(store, 'nightly', work)).toMatchObject({ status: 'completed', result: 1 });
      expect(runs).toBe(1);
    } finally {
      await server.stop();
    }
  });
});

describe.skipIf(!redis || !minio)('tiered store: the front answers duplicates alone', () => {
  it('a duplicate that hits the front costs no archive request (the archive is unreachable and it still answers)', async () => {
    const spec = freshSpec('s3');
    const { store } = await tiered(spec);
    await store.complete(expectLease(await store.claim('dup')), { result: 'r' });
    // Same front, an archive on a closed port: any archive request would fail the claim.
    const { store: cut } = await tiered(spec, await deadArchive(spec));
    expect(await cut.claim('dup')).toMatchObject({ outcome: 'completed', record: { result: 'r' } });
    const held = expectLease(await store.claim('held', { leaseMs: 60_000 }));
    expect(await cut.claim('held')).toMatchObject({ outcome: 'in_flight', record: { runId: held.runId } });
  });
});

describe.skipIf(!redis || !minio)('tiered store: archive unreachable (S3 client on a closed port)', () => {
  it('claims fail safe: BACKEND_UNAVAILABLE, retryable, the fresh front claim given back; never acquired', async () => {
    const spec = freshSpec('s3');
    const { store: cut, front } = await tiered(spec, await deadArchive(spec));
    const error = await cut.claim('fresh').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(codeOf(error)).toBe('BACKEND_UNAVAILABLE');
    expect((error as IdemError).retryable).toBe(true);
    // Given back: the key is free on the front (a released record, past retention).
    expect(await front.get('fresh')).toBeUndefined();
    let ran = false;
    await expect(runOnce(cut, 'fresh', async () => void (ran = true))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(ran).toBe(false);
  });

  it('a completed key the front forgot is never run twice while the archive is down', async () => {
    const spec = freshSpec('s3');
    const { store, front } = await tiered(spec);
    await runOnce(store, 'done', async () => 'once');
    await front.delete('done');
    const { store: cut } = await tiered(spec, await deadArchive(spec));
    let ran = false;
    for (let i = 0; i < 3; i++) await expect(runOnce(cut, 'done', async () => void (ran = true))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(ran).toBe(false);
    // Back up: the archive answers it.
    expect(await runOnce(store, 'done', async () => void (ran = true))).toMatchObject({ status: 'completed', result: 'once' });
    expect(ran).toBe(false);
  });

  it('a complete in flight when the archive goes down reports the failure; the key stays claimed and the complete can be retried', async () => {
    const spec = freshSpec('s3');
    const { store, front, archiveView } = await tiered(spec);
    const { store: cut } = await tiered(spec, await deadArchive(spec));
    const lease = expectLease(await store.claim('busy', { leaseMs: 60_000 }));
    const error = await cut.complete(lease, { result: 'late' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(codeOf(error)).toBe('BACKEND_UNAVAILABLE');
    expect(await front.get('busy')).toMatchObject({ status: 'in_flight', runId: lease.runId, fence: lease.fence });
    expect(await store.claim('busy')).toMatchObject({ outcome: 'in_flight' });
    // Retried once the archive answers: the same lease completes.
    expect(await store.complete(lease, { result: 'late' })).toMatchObject({ status: 'succeeded', result: 'late' });
    expect(await archiveView.get('busy')).toMatchObject({ status: 'succeeded', result: 'late', fence: lease.fence });
  });
});

describe.skipIf(!redis || !minio)('tiered store: zombies', () => {
  it("a zombie's complete after a takeover gets LEASE_LOST and nothing reaches the archive", async () => {
    const spec = freshSpec('s3');
    const { store, archiveView } = await tiered(spec);
    const old = expectLease(await store.claim('z', { runId: 'old', leaseMs: 200 }));
    await sleep(600);
    const taken = await store.claim('z', { runId: 'new', leaseMs: 60_000 });
    expect(taken.outcome).toBe('adopted');
    await expect(store.complete(old, { result: 'zombie' })).rejects.toMatchObject({ code: 'LEASE_LOST' });
    const archived = await archiveView.driver.read(storageName('z'));
    expect(archived).toMatchObject({ runId: 'new', status: 'in_flight' }); // the taker's mark, not the zombie's result
  });

  it("a takeover landing between the zombie's fence check and its archive write: the archive refuses it (fault injected at that instant)", async () => {
    // A real server cannot pause between two of our own requests: the front's read is wrapped to run the takeover right after it.
    const spec = freshSpec('s3');
    const { store: rescuer, archiveView } = await tiered(spec);
    const front = await createValkeyStore({ url: spec.redisUrl, prefix: spec.valkeyPrefix });
    opened.push(front);
    let takeover: (() => Promise<unknown>) | undefined;
    const slowFront = Object.create(front, {
      driver: {
        value: {
          ...front.driver,
          capabilities: front.driver.capabilities,
          claim: front.driver.claim.bind(front.driver),
          finish: front.driver.finish.bind(front.driver),
          remove: front.driver.remove.bind(front.driver),
          close: front.driver.close.bind(front.driver),
          read: async (name: string) => {
            const record = await front.driver.read(name);
            if (takeover) await takeover();
            return record;
          },
        },
      },
    }) as IdempotencyStore;
    const zombieStore = await createTieredStore({ front: slowFront, archive: await openArchive(spec) });
    const old = expectLease(await zombieStore.claim('w', { runId: 'old', leaseMs: 60_000 }));
    takeover = () => rescuer.claim('w', { runId: 'new', force: true });
    await expect(zombieStore.complete(old, { result: 'zombie' })).rejects.toMatchObject({ code: 'LEASE_LOST' });
    takeover = undefined;
    expect(await archiveView.driver.read(storageName('w'))).toMatchObject({ runId: 'new', status: 'in_flight' });
    expect(await rescuer.get('w')).toMatchObject({ runId: 'new', status: 'in_flight' });
  });
});

describe.skipIf(!redis || !minio)('idem CLI with ?archive=', () => {
  const env = () => ({ AWS_ACCESS_KEY_ID: minio!.IDEM_TEST_S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: minio!.IDEM_TEST_S3_SECRET_KEY });
  const archiveUrl = () =>
    `s3://${minio!.IDEM_TEST_S3_BUCKET}/${unique('cli')}?endpoint=${encodeURIComponent(minio!.IDEM_TEST_S3_ENDPOINT!)}&region=${minio!.IDEM_TEST_S3_REGION}`;

  it('runs once, and the archive answers the replay after the front forgot (front retention 1 s)', async () => {
    const prefix = `${unique('cli')}:`;
    const store = `${redis!.IDEM_TEST_REDIS_URL}?prefix=${prefix}&archive=${encodeURIComponent(archiveUrl())}&frontRetention=1s`;
    const first = await idem(['run', '--key', 'job', '--store', store, '--json', '--', 'true'], { env: env() });
    expect(first.json).toMatchObject({ status: 'succeeded', outcome: 'acquired' });
    expect(first.json.store).toContain('archive=s3://');
    await sleep(2_000);
    const replay = await idem(['run', '--key', 'job', '--store', store, '--json', '--', 'false'], { env: env() });
    expect(replay.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });
    const status = await idem(['status', 'job', '--store', store, '--json'], { env: env() });
    expect(status.json.record).toMatchObject({ status: 'succeeded', run_id: first.json.run_id });
  });

  it('a bad archive URL or front retention is a usage error before any I/O, and no secret is printed', async () => {
    const secret = 'hunter2-tiered-secret';
    const front = `redis://:${secret}@127.0.0.1:1`;
    for (const store of [
      `${front}?archive=${encodeURIComponent('nope://x')}`,
      `${front}?archive=${encodeURIComponent(archiveUrl())}&frontRetention=soon`,
      `${front}?archive=`,
    ]) {
      const r = await idem(['run', '--key', 'k', '--store', store, '--json', '--', 'true']);
      expect(r.code, store).toBe(64);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
    // A good URL on a dead front: the secret stays hidden in what is printed.
    const r = await idem(['run', '--key', 'k', '--store', `${front}?archive=${encodeURIComponent(archiveUrl())}`, '--json', '--', 'true'], { env: env() });
    expect(r.code).toBe(69);
    expect(r.stdout + r.stderr).not.toContain(secret);
  });
});
