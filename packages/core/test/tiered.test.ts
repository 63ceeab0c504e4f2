// The tiered store's logic on in-memory stores with an injected clock (the real-server proofs,
// Valkey + MinIO/fake-gcs-server, are in packages/cli/test/tiered*.test.ts): arguments checked
// before any I/O, duplicates answered by the front alone, the archive answering what the front
// forgot, fences refused when the front went back, and the `archive=` URL form.
import { describe, expect, it } from 'vitest';
import { SECRET } from '../../../test-fixtures/secret-urls.js';
import { createStore } from '../src/adapter.js';
import { createMemoryStore } from '../src/memory.js';
import { createTieredStore } from '../src/tiered.js';
import { parseStoreUrl, registerStoreScheme, type StoreUrlHandler } from '../src/url.js';
import type { IdempotencyStore, Lease } from '../src/index.js';
import { PartsBackend } from './parts-backend.js';

const lease = (out: Awaited<ReturnType<IdempotencyStore['claim']>>): Lease => {
  if (out.outcome !== 'acquired' && out.outcome !== 'adopted') throw new Error(`expected a lease, got ${out.outcome}`);
  return out.lease;
};

async function setup(frontRetentionMs = 1_000) {
  let now = 1_000_000;
  const clock = () => now;
  const front = createMemoryStore({ clock });
  const backend = new PartsBackend();
  const archive = await createStore({ clock }, () => backend.cas());
  const store = await createTieredStore({ front, archive, frontRetentionMs, clock, retentionMs: 60_000 });
  return { store, front, archive, backend, advance: (ms: number) => (now += ms) };
}

describe('createTieredStore', () => {
  it('refuses bad arguments before any I/O', async () => {
    const front = createMemoryStore();
    const archive = await createStore({}, () => new PartsBackend().cas());
    await expect(createTieredStore({ front, archive: front })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(createTieredStore({ front, archive: front.driver as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // A full driver (here the reference one) has no atomic step to write an archive through.
    await expect(createTieredStore({ front: archive, archive: createMemoryStore() })).rejects.toThrow(/atomic update step/);
    await expect(createTieredStore({ front, archive, frontRetentionMs: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(createTieredStore({ front, archive, leaseMs: 5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('a duplicate the front holds costs no archive request; one the front forgot is answered from the archive and copied back', async () => {
    const { store, front, backend, advance } = await setup();
    const first = lease(await store.claim('k'));
    await store.complete(first, { result: 'r' });
    const calls = () => Object.values(backend.calls).reduce((a, b) => a + b, 0);
    const before = calls();
    expect(await store.claim('k')).toMatchObject({ outcome: 'completed', record: { result: 'r' } });
    expect(calls()).toBe(before);

    advance(2_000); // past the front retention (1 s), inside the retention (60 s)
    expect(await front.get('k')).toBeUndefined();
    expect(await store.get('k')).toMatchObject({ runId: first.runId, result: 'r' }); // from the archive
    expect(await store.claim('k')).toMatchObject({ outcome: 'completed', record: { result: 'r', runId: first.runId, fence: first.fence } });
    expect(await front.get('k')).toMatchObject({ status: 'succeeded', result: 'r' }); // the copy
    expect(await store.get('k')).toMatchObject({ runId: first.runId }); // the original, not the copy

    advance(60_000); // past the retention: forgotten everywhere, claimed again with a larger fence
    const again = lease(await store.claim('k'));
    expect(again.fence).toBeGreaterThan(first.fence);
  });

  it('a failure is archived too: claimable again under dedupOn success, final under any', async () => {
    const { store, advance } = await setup();
    await store.fail(lease(await store.claim('f')), { error: 'boom' });
    advance(2_000); // past the front retention each time
    expect(await store.claim('f', { dedupOn: 'any' })).toMatchObject({ outcome: 'completed', record: { status: 'failed', error: 'boom' } });
    advance(2_000);
    expect(await store.claim('f')).toMatchObject({ outcome: 'acquired', previous: { status: 'failed', error: 'boom' } });
  });

  it('a front whose fences went back cannot mark the archive: refused, the fresh claim given back', async () => {
    const { store, front } = await setup();
    const first = lease(await store.claim('g', { runId: 'a' }));
    await store.release(first); // the archive keeps the mark at fence 1
    await front.delete('g'); // the memory front starts the key at fence 1 again
    await expect(store.claim('g', { runId: 'b' })).rejects.toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
    expect(await front.get('g')).toBeUndefined();
  });

  it('a zombie whose lease was taken over cannot finish into the archive', async () => {
    const { store, archive } = await setup();
    const old = lease(await store.claim('z', { runId: 'old' }));
    const taker = lease(await store.claim('z', { runId: 'new', force: true }));
    await expect(store.complete(old, { result: 'zombie' })).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await archive.driver.read(old.name)).toMatchObject({ runId: 'new', fence: taker.fence, status: 'in_flight' });
  });
});

describe('store URLs with archive=', () => {
  const opened: string[] = [];
  const handler = (scheme: string): StoreUrlHandler<string> => ({
    schemes: [scheme],
    parse: (url) => url,
    redact: (url) => url.replace(/\/\/[^@]*@/, '//***@'),
    open: async (config) => {
      opened.push(config);
      return scheme === 'tfront' ? createMemoryStore() : createStore({}, () => new PartsBackend().cas());
    },
  });
  registerStoreScheme('tfront', () => handler('tfront'));
  registerStoreScheme('tarch', () => handler('tarch'));

  it('parses both parts without I/O, prints each redacted, opens both into one tiered store', async () => {
    const archive = encodeURIComponent(`tarch://u:${SECRET}@bucket/p?x=1`);
    const parsed = await parseStoreUrl(`tfront://u:${SECRET}@h?db=1&archive=${archive}&frontRetention=5m`);
    expect(opened).toEqual([]);
    expect(parsed.display).toBe('tfront://***@h?db=1&archive=tarch://***@bucket/p?x=1&frontRetention=5m');
    const store = await parsed.open({ leaseMs: 1_000 });
    expect(opened).toEqual([`tfront://u:${SECRET}@h?db=1`, `tarch://u:${SECRET}@bucket/p?x=1`]);
    expect(await store.claim('k')).toMatchObject({ outcome: 'acquired' });
    await store.close();
  });

  it('a bad archive part is INVALID_STORE_URL before anything opens, and shows no secret', async () => {
    const front = `tfront://u:${SECRET}@h`;
    const before = opened.length;
    for (const url of [
      `${front}?archive=`,
      `${front}?archive=tarch%3Ax&frontRetention=soon`,
      `${front}?archive=tarch%3Ax&archive=tarch%3Ay`,
      `${front}?archive=${encodeURIComponent('tarch:x?archive=tarch:y')}`,
    ]) {
      const error = await parseStoreUrl(url).catch((e: unknown) => e);
      expect(error, url).toMatchObject({ code: 'INVALID_STORE_URL' });
      expect(String((error as Error).message)).not.toContain(SECRET);
    }
    expect(opened.length).toBe(before);
  });
});
