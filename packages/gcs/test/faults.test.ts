// GCS-specific behaviour the shared suite cannot see: requests per call,
// the client library's retries around preconditioned uploads, and the
// mapping of 412/404/429/5xx. A proxy in front of fake-gcs-server counts
// requests and injects the faults.
import type { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectIdemError as failure, expectLease as leaseOf, TestClock } from '@idem/conformance/testing';
import { BackendRefusedError, storageName, type IdempotencyStore } from '@idem/core';
import { createGcsStore, type GcsStoreOptions } from '../src/index.js';
import { FaultProxy, type Reply, type Seen } from './fault-proxy.js';
import { server, testStorage, uniquePrefix } from './server.js';

const endpoint = server?.STORAGE_EMULATOR_HOST ?? '';
const bucketName = server?.IDEM_TEST_GCS_BUCKET ?? '';
/** The client's own retry policy, shortened: one retry after 1 s (async-retry's fixed minimum delay). */
const FAST_RETRIES = { maxRetries: 1, retryDelayMultiplier: 1, maxRetryDelay: 1 };

const UPLOAD = `POST /upload/storage/v1/b/${bucketName}/o`;
const isUpload = (s: Seen) => s.method === 'POST' && s.url.startsWith('/upload/');
const objectPath = (prefix: string, key: string) => `/storage/v1/b/${bucketName}/o/${encodeURIComponent(prefix + storageName(key))}`;

describe.skipIf(!server)('gcs adapter: requests and faults (via a fault-injecting proxy)', () => {
  let proxy: FaultProxy;
  let viaProxy: Storage;
  let direct: Storage;
  const stores: IdempotencyStore[] = [];
  const open = async (options: Omit<GcsStoreOptions, 'bucket'> & { storage?: Storage } = {}) => {
    const { prefix = uniquePrefix('faults'), storage = viaProxy, ...rest } = options;
    const store = await createGcsStore({ ...rest, bucket: storage.bucket(bucketName), prefix });
    stores.push(store);
    return { store, prefix };
  };

  beforeAll(async () => {
    proxy = await new FaultProxy(endpoint).start();
    viaProxy = testStorage(proxy.url, { retryOptions: FAST_RETRIES });
    direct = testStorage(endpoint);
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await proxy.stop();
  });
  beforeEach(() => {
    proxy.rule = () => undefined;
  });

  it('uncontended claim = 1 request, duplicate = 2, complete = 1', async () => {
    const { store, prefix } = await open();
    const k = 'count-me';
    let from = proxy.seen.length;
    const lease = leaseOf(await store.claim(k));
    expect(proxy.since(from)).toEqual([UPLOAD]);

    from = proxy.seen.length;
    expect((await store.claim(k)).outcome).toBe('in_flight');
    expect(proxy.since(from)).toEqual([UPLOAD, `GET ${objectPath(prefix, k)}`]);

    from = proxy.seen.length;
    await store.complete(lease, { result: 42 });
    expect(proxy.since(from)).toEqual([UPLOAD]);

    from = proxy.seen.length;
    expect((await store.claim(k)).outcome).toBe('completed');
    expect(proxy.since(from)).toHaveLength(2);
  });

  it('a claim that landed but lost its reply stays ours: the client retries, meets 412 on its own write, reads back', async () => {
    const { store } = await open();
    let first = true;
    proxy.rule = (s) => (isUpload(s) && first ? ((first = false), { landThenFail: 503 }) : undefined);
    const from = proxy.seen.length;
    const got = await store.claim('lost-reply', { runId: 'mine' });
    expect(got.outcome).toBe('acquired');
    // The 503'd insert, the client's retry (412), the read-back.
    expect(proxy.since(from).map((r) => r.split(' ')[0])).toEqual(['POST', 'POST', 'GET']);
    const dup = await store.claim('lost-reply', { runId: 'other' });
    expect(dup.outcome === 'in_flight' && dup.record.runId).toBe('mine');
    expect((await store.complete(leaseOf(got), { result: 'done' })).status).toBe('succeeded');
  });

  it('the same with the client retries off: the adapter reads back after the 503 itself', async () => {
    const noRetry = testStorage(proxy.url, { retryOptions: { autoRetry: false } });
    const { store } = await open({ storage: noRetry });
    let first = true;
    proxy.rule = (s) => (isUpload(s) && first ? ((first = false), { landThenFail: 503 }) : undefined);
    const from = proxy.seen.length;
    const got = await store.claim('lost-reply-no-retry', { runId: 'mine' });
    expect(got.outcome).toBe('acquired');
    expect(proxy.since(from).map((r) => r.split(' ')[0])).toEqual(['POST', 'GET']);
  });

  it('a complete whose connection dies after it landed still completes (no LEASE_LOST on our own write)', async () => {
    const { store } = await open();
    const lease = leaseOf(await store.claim('reset-on-complete'));
    let first = true;
    proxy.rule = (s) => (isUpload(s) && first ? ((first = false), 'landThenReset') : undefined);
    const done = await store.complete(lease, { result: { ok: true } });
    expect(done).toMatchObject({ status: 'succeeded', runId: lease.runId, result: { ok: true } });
    expect(await store.get('reset-on-complete')).toMatchObject({ status: 'succeeded' });
  });

  it.each([429, 500, 503])('HTTP %i that never lands: BACKEND_UNAVAILABLE (retryable) after the client retries, and nothing stored', async (status) => {
    const { store } = await open();
    const k = `refused-${status}`;
    proxy.rule = () => ({ refuse: status });
    const from = proxy.seen.length;
    const error = await failure(store.claim(k));
    expect(error).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
    expect(proxy.since(from).filter((r) => r === UPLOAD)).toHaveLength(1 + FAST_RETRIES.maxRetries);
    expect((await failure(store.get(k))).code).toBe('BACKEND_UNAVAILABLE');
    proxy.rule = () => undefined;
    expect(await store.get(k)).toBeUndefined();
    expect((await store.claim(k)).outcome).toBe('acquired');
  });

  it('a read refused with 503 is retried by the adapter, not by the client (whose retried streamed download crashes the process)', async () => {
    const { store, prefix } = await open();
    await store.claim('read-503', { runId: 'r' });
    let refusals = 2;
    proxy.rule = (s) => (s.method === 'GET' && refusals-- > 0 ? { refuse: 503 } : undefined);
    const from = proxy.seen.length;
    expect(await store.get('read-503')).toMatchObject({ runId: 'r' });
    expect(proxy.since(from)).toEqual(Array(3).fill(`GET ${objectPath(prefix, 'read-503')}`));
  });

  it('a finish refused with 503 is BACKEND_UNAVAILABLE and leaves the lease usable', async () => {
    const { store } = await open();
    const lease = leaseOf(await store.claim('finish-503'));
    proxy.rule = () => ({ refuse: 503 });
    expect(await failure(store.complete(lease))).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
    proxy.rule = () => undefined;
    expect((await store.complete(lease)).status).toBe('succeeded');
  });

  it('404: a missing record reads as absent; a missing bucket is BACKEND_REFUSED, not retryable', async () => {
    const { store } = await open();
    expect(await store.get('never-claimed')).toBeUndefined();
    expect(await store.delete('never-claimed')).toBe(false);
    const nowhere = await createGcsStore({ bucket: viaProxy.bucket('idem-no-such-bucket'), prefix: 'x/' });
    const error = await failure(nowhere.claim('k'));
    expect(error).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
    expect(error).toBeInstanceOf(BackendRefusedError);
    expect(error.message).toMatch(/bucket not found/);
  });

  it('412 on a zombie finish: LEASE_LOST in 2 requests, the new owner untouched', async () => {
    const clock = new TestClock();
    const { store } = await open({ clock: clock.now });
    const zombie = leaseOf(await store.claim('zombie', { runId: 'old', leaseMs: 1_000 }));
    clock.advance(5_000);
    const taken = await store.claim('zombie', { runId: 'new', leaseMs: 60_000 });
    expect(taken.outcome).toBe('adopted');
    const from = proxy.seen.length;
    expect((await failure(store.complete(zombie))).code).toBe('LEASE_LOST');
    expect(proxy.since(from).map((r) => r.split(' ')[0])).toEqual(['POST', 'GET']);
    expect(await store.get('zombie')).toMatchObject({ status: 'in_flight', runId: 'new' });
  });

  it("sweep lists only, when no record is due (deadlines are the objects' customTime)", async () => {
    const { store } = await open();
    for (const k of ['a', 'b', 'c']) await store.claim(k, { leaseMs: 60_000 });
    const from = proxy.seen.length;
    expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
    expect(proxy.since(from)).toEqual([`GET /storage/v1/b/${bucketName}/o`]);
  });

  it('sweep deletes at the generation it read: a record re-claimed in between survives', async () => {
    const clock = new TestClock();
    const { store, prefix } = await open({ clock: clock.now });
    const other = (await open({ clock: clock.now, prefix, storage: direct })).store;
    await store.claim('swept', { runId: 'dead', leaseMs: 1_000 });
    clock.advance(5_000);
    proxy.rule = (s) =>
      s.method === 'DELETE'
        ? {
            before: async () => {
              expect((await other.claim('swept', { runId: 'alive', leaseMs: 60_000 })).outcome).toBe('adopted');
            },
          }
        : undefined;
    expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
    expect(await store.get('swept')).toMatchObject({ status: 'in_flight', runId: 'alive' });
    proxy.rule = () => undefined;
    clock.advance(120_000);
    expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 1 });
    expect(await store.get('swept')).toBeUndefined();
  });

  it('a body that is not a record is CORRUPT_RECORD, and sweep leaves it alone', async () => {
    const { store, prefix } = await open();
    await direct
      .bucket(bucketName)
      .file(prefix + storageName('garbage'))
      .save('<html>not json</html>', { resumable: false });
    const error = await failure(store.claim('garbage'));
    expect(error.code).toBe('CORRUPT_RECORD');
    // Named by its storage name, the same form on every backend.
    expect(error).toMatchObject({ storageName: storageName('garbage') });
    expect(error.message).toContain(storageName('garbage'));
    await store.sweep();
    expect((await failure(store.get('garbage'))).code).toBe('CORRUPT_RECORD');
  });

  it("serverClock: leases follow the server's clock (updated of our writes, Date of reads), not this machine's", async () => {
    const AHEAD = 3_600_000;
    const shift = (reply: Reply): Reply => {
      const headers = { ...reply.headers };
      if (typeof headers.date === 'string') headers.date = new Date(Date.parse(headers.date) + AHEAD).toUTCString();
      let body = reply.body;
      if (String(headers['content-type']).startsWith('application/json') && body.length > 0) {
        const json = JSON.parse(body.toString()) as { updated?: string };
        if (json.updated) json.updated = new Date(Date.parse(json.updated) + AHEAD).toISOString();
        body = Buffer.from(JSON.stringify(json));
      }
      return { ...reply, headers, body };
    };
    proxy.rule = () => ({ rewrite: shift });
    const { store } = await open({ serverClock: true });
    await store.claim('clock-warmup', { leaseMs: 1_000 });
    const lease = leaseOf(await store.claim('clock', { leaseMs: 60_000 }));
    expect(Math.abs(lease.leaseExpiresAt - (Date.now() + AHEAD + 60_000))).toBeLessThan(2_000);
    // The warm-up claim was decided before any reply, by this machine's clock; by the server's its 1 s lease is long dead.
    expect((await store.claim('clock-warmup')).outcome).toBe('adopted');
    await expect(createGcsStore({ bucket: viaProxy.bucket(bucketName), serverClock: true, clock: Date.now })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('rejects bad adapter options before any request', async () => {
    const from = proxy.seen.length;
    for (const bad of [
      { bucket: '' },
      { bucket: 'b' },
      { bucket: 42 },
      { bucket: viaProxy.bucket(bucketName), prefix: 7 },
      { bucket: viaProxy.bucket(bucketName), prefix: 'a\nb' },
    ]) {
      await expect(createGcsStore(bad as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect(proxy.seen.length).toBe(from);
  });
});
