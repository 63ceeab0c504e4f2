// The finish fast path (complete/fail compare the stored bytes instead of decoding them) and the
// writes that let WAIT count a script that changed nothing, against a private server the tests own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { codeOf, expectLease as leaseOf } from '@idem/conformance/testing';
import { storageName, type IdempotencyStore } from '@idem/core';
import { createValkeyStore } from '../src/index.js';
import { calls, haveRedisServer, PrivateServer } from './private-server.js';
import { freshPrefix } from './server.js';

describe.skipIf(!haveRedisServer())('valkey finish fast path and WAIT-able no-op scripts', () => {
  let server: PrivateServer;
  let admin: Redis;
  let store: IdempotencyStore;
  let prefix: string;
  const rk = (key: string) => `${prefix}{${storageName(key)}}`;

  beforeAll(async () => {
    server = await PrivateServer.start();
    admin = server.admin();
    prefix = freshPrefix();
    store = await createValkeyStore({ url: server.url, prefix, timeoutMs: 2000 });
  });
  afterAll(async () => {
    await store?.close();
    admin?.disconnect();
    await server?.stop();
  });

  it('complete and fail write the record a full decode would write, and return what they stored', async () => {
    // '/' and non-ASCII: cjson and JSON.stringify escape them differently, which the bytes compared must survive.
    const key = 'a/b é "q"';
    const lease = leaseOf(await store.claim(key, { fingerprint: 'sha256:fp' }));
    const renewed = await store.renew(lease, 60_000);
    const done = await store.complete(renewed, { result: { n: [1, 'x'], e: [] } });
    const raw = (await admin.get(rk(key)))!;
    expect(JSON.parse(raw)).toEqual(done);
    expect(await store.get(key)).toEqual(done);
    expect(done).toMatchObject({ status: 'succeeded', fence: lease.fence, runId: lease.runId, fingerprint: 'sha256:fp', result: { n: [1, 'x'], e: [] } });
    expect(done.leaseExpiresAt).toBeUndefined();
    expect(done.expiresAt! - done.completedAt!).toBe(store.retentionMs);
    // The layout every writer of this store uses: fields in one order, times last.
    expect(Object.keys(JSON.parse(raw))).toEqual(['v', 'key', 'status', 'runId', 'fence', 'attempt', 'fingerprint', 'claimedAt', 'completedAt', 'expiresAt', 'result']);

    const failed = await store.fail(leaseOf(await store.claim('fails')), { error: new Error('boom') });
    expect(JSON.parse((await admin.get(rk('fails')))!)).toEqual(failed);
    expect(failed).toMatchObject({ status: 'failed', error: expect.stringContaining('boom') });
    // A repeated complete (a retry after a lost reply) is answered from the record, not redone.
    expect(await store.complete(renewed, { result: { n: [1, 'x'], e: [] } })).toEqual(done);
  });

  it('a record stored in another layout (an older writer) is completed through the full decode', async () => {
    const lease = leaseOf(await store.claim('old-layout'));
    const r = lease.record;
    // Same fields, another order: the bytes differ from the lease's, the record is the same.
    const older = JSON.stringify({ leaseExpiresAt: r.leaseExpiresAt, claimedAt: r.claimedAt, attempt: r.attempt, fence: r.fence, runId: r.runId, status: r.status, key: r.key, v: r.v });
    await admin.set(rk('old-layout'), older, 'KEEPTTL');
    const done = await store.complete(lease, { result: 7 });
    expect(done).toMatchObject({ status: 'succeeded', fence: r.fence, result: 7 });
    expect(JSON.parse((await admin.get(rk('old-layout')))!)).toEqual(done);
  });

  it('a lease without its bytes (made by hand, or from an older release) still completes', async () => {
    const lease = leaseOf(await store.claim('by-hand'));
    const { version: _bytes, ...bare } = lease;
    expect((await store.complete(bare, { result: 'ok' })).result).toBe('ok');
  });

  it('a zombie whose bytes no longer match gets LEASE_LOST, and a corrupt record is never overwritten', async () => {
    const zombie = leaseOf(await store.claim('taken'));
    const winner = leaseOf(await store.claim('taken', { force: true }));
    expect(await codeOf(store.complete(zombie, { result: 'late' }))).toBe('LEASE_LOST');
    expect(await codeOf(store.fail(zombie))).toBe('LEASE_LOST');
    expect((await store.get('taken'))?.runId).toBe(winner.runId);

    const lease = leaseOf(await store.claim('junk'));
    // Truncated bytes: the stored record is not the lease's, and not readable either.
    const truncated = (await admin.get(rk('junk')))!.slice(0, -10);
    await admin.set(rk('junk'), truncated, 'KEEPTTL');
    expect(await codeOf(store.complete(lease, { result: 1 }))).toBe('CORRUPT_RECORD');
    expect(await admin.get(rk('junk'))).toBe(truncated);
  });

  it('a release or delete that finds nothing live still writes, so that a WAIT after it counts every earlier write', async () => {
    const writes = async () => (await calls(admin, 'set')) + (await calls(admin, 'del'));
    const lease = leaseOf(await store.claim('gone'));
    await store.release(lease);
    let before = await writes();
    await store.release(lease); // a retry whose first attempt landed: the record lingers, past retention
    expect(await writes()).toBeGreaterThan(before);
    before = await writes();
    expect(await store.delete('gone')).toBe(false); // nothing live: the lingering record is written again as it is
    expect(await writes()).toBeGreaterThan(before);
    const lingering = await admin.get(rk('gone'));
    expect(JSON.parse(lingering!)).toMatchObject({ status: 'in_flight', runId: lease.runId });
    before = await writes();
    expect(await store.delete('never-there')).toBe(false); // no key: a SET and a DEL that leave none
    expect(await writes()).toBeGreaterThan(before);
    expect(await admin.exists(rk('never-there'))).toBe(0);
  });
});
