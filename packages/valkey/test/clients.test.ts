// The store takes the caller's own client: ioredis Redis or Cluster, or an
// ioredis-compatible fork (iovalkey), typed structurally and left open on close().
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { Cluster as ValkeyCluster, Valkey } from 'iovalkey';
import { IdemError, type ClaimOutcome } from '@idem/core';
import { createValkeyStore, type ValkeyClient } from '../src/index.js';
import { findCluster, findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();
const cluster = await findCluster();
const seeds = () => cluster!.map((a) => ({ host: a.split(':')[0]!, port: Number(a.split(':')[1]) }));

const clients: Array<[string, () => ValkeyClient, boolean]> = [
  ['ioredis Redis', () => new Redis(url!), url !== undefined],
  ['iovalkey Valkey', () => new Valkey(url!), url !== undefined],
  ['ioredis Cluster', () => new Cluster(seeds()), cluster !== undefined],
  ['iovalkey Cluster', () => new ValkeyCluster(seeds()), cluster !== undefined],
  // Auto-pipelining puts every command in a Pipeline, where ioredis drops a callBuffer's command
  // name (the store reads through evalshaBuffer instead) and does not follow MOVED by itself.
  ['ioredis Redis with enableAutoPipelining', () => new Redis(url!, { enableAutoPipelining: true }), url !== undefined],
  ['ioredis Cluster with enableAutoPipelining', () => new Cluster(seeds(), { enableAutoPipelining: true }), cluster !== undefined],
];

describe.each(clients)('a caller-owned %s client', (_label, make, enabled) => {
  const opened: ValkeyClient[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((c) => c.quit()));
  });

  it.skipIf(!enabled)('claims, dedups, completes, lists; close() leaves the client open', async () => {
    const client = make();
    opened.push(client);
    const store = await createValkeyStore({ client, prefix: freshPrefix() });
    const got: ClaimOutcome = await store.claim('job-1', { runId: 'a' });
    expect(got.outcome).toBe('acquired');
    expect((await store.claim('job-1')).outcome).toBe('in_flight');
    if (got.outcome === 'acquired') await store.complete(got.lease, { result: { n: 1 } });
    const dup = await store.claim('job-1');
    expect(dup.outcome === 'completed' && dup.record.result).toEqual({ n: 1 });
    expect((await store.list()).records.map((r) => r.key)).toEqual(['job-1']);
    expect((await store.get('job-1'))?.result).toEqual({ n: 1 });
    // Many calls in one tick: one corked write (or one auto-pipeline) carries them all.
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => store.claim(`burst-${i}`)));
    expect(many.every((c) => c.outcome === 'acquired')).toBe(true);
    await Promise.all(many.map((c) => c.outcome === 'acquired' && store.complete(c.lease, { result: c.lease.key })));
    expect((await Promise.all(many.map((_, i) => store.get(`burst-${i}`)))).map((r) => r?.result)).toEqual(many.map((_, i) => `burst-${i}`));
    await store.close();
    expect(await client.call('PING')).toBe('PONG');
  });
});

describe('client options are checked before any I/O', () => {
  it('rejects a missing or doubled target, a braced prefix and a client with keyPrefix', async () => {
    const bad: Array<Parameters<typeof createValkeyStore>[0]> = [
      {},
      { url: 'redis://127.0.0.1:1', cluster: ['127.0.0.1:2'] },
      { cluster: [] },
      { url: 'redis://127.0.0.1:1', prefix: 'a{b}' },
      { url: 'redis://127.0.0.1:1', timeoutMs: 0 },
      { url: 'redis://127.0.0.1:1', lingerMs: -1 },
      { client: new Redis({ lazyConnect: true, keyPrefix: 'x:' }) },
      { url: 'redis://127.0.0.1:1', retentionMs: 0 },
    ];
    for (const options of bad) {
      const error = await createValkeyStore(options).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(Object.keys(options))).toBeInstanceOf(IdemError);
      expect((error as IdemError).code).toBe('INVALID_ARGUMENT');
    }
    // A URL the one grammar refuses (see connection.test.ts for more).
    expect(await createValkeyStore({ url: 'http://127.0.0.1:1' }).catch((e: IdemError) => e.code)).toBe('INVALID_STORE_URL');
  });
});
