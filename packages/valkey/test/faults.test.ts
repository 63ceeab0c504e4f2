// Adapter-specific faults against a real server the tests own (stopped,
// restarted, slowed down, or reached through a proxy that loses replies).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { codeOf, expectLease as leaseOf } from '@idem/conformance/testing';
import { storageName, type IdempotencyStore } from '@idem/core';
import { createValkeyStore, type ValkeyStoreOptions } from '../src/index.js';
import {
  calls,
  expectNoscriptHandled,
  expectOneRoundTripEach,
  haveRedisServer,
  PrivateServer,
  ReplyLosingProxy,
  scriptRuns,
  whenBack,
} from './private-server.js';
import { freshPrefix } from './server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const have = haveRedisServer();

describe.skipIf(!have)('valkey faults against a private server', () => {
  let server: PrivateServer;
  let admin: Redis;
  const stores: IdempotencyStore[] = [];
  const open = async (options: Partial<ValkeyStoreOptions> = {}) => {
    const store = await createValkeyStore({ url: server.url, prefix: freshPrefix(), timeoutMs: 1000, ...options } as ValkeyStoreOptions);
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await PrivateServer.start();
    admin = server.admin();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    admin?.disconnect();
    await server?.stop();
  });

  it('one round trip per uncontended claim, duplicate claim and complete, seen at the server (MONITOR)', async () => {
    await expectOneRoundTripEach(await open(), admin);
  });

  it('server down: every operation is BACKEND_UNAVAILABLE, never acquired; after a restart claims work again (NOSCRIPT handled)', async () => {
    const store = await open();
    const lease = leaseOf(await store.claim('before'));
    await server.stop();
    const t0 = Date.now();
    for (const op of [
      () => store.claim('during'),
      () => store.claim('before', { force: true }),
      () => store.complete(lease),
      () => store.renew(lease),
      () => store.get('before'),
      () => store.list(),
      () => store.delete('before'),
    ]) {
      expect(await codeOf(op())).toBe('BACKEND_UNAVAILABLE');
    }
    expect(Date.now() - t0).toBeLessThan(7 * 3000); // each bounded by timeoutMs, with room for a loaded machine
    await server.restart();
    admin.disconnect();
    admin = server.admin();
    // The restarted server is empty and knows no script: the first call gets NOSCRIPT and sends the body.
    const got = await whenBack(() => store.claim('after'));
    expect(got.outcome).toBe('acquired');
    // Usually one EVAL; on a loaded machine an attempt that timed out and its retry can both meet
    // NOSCRIPT before either body lands, and each sends it (harmless: the same script, loaded twice).
    const loads = await calls(admin, 'eval');
    expect(loads).toBeGreaterThanOrEqual(1);
    expect((await store.claim('after-2')).outcome).toBe('acquired');
    expect(await calls(admin, 'eval')).toBe(loads); // loaded, EVALSHA from then on
  });

  it("a user's client with ioredis defaults (queue for a minute) still answers BACKEND_UNAVAILABLE within timeoutMs", async () => {
    const client = new Redis(server.url);
    client.on('error', () => undefined);
    try {
      const store = await open({ url: undefined, client, timeoutMs: 800 });
      expect((await store.claim('user-client-up')).outcome).toBe('acquired');
      await server.stop();
      const t0 = Date.now();
      expect(await codeOf(store.claim('queued', { runId: 'mine' }))).toBe('BACKEND_UNAVAILABLE');
      expect(Date.now() - t0).toBeLessThan(3_000);
      await server.restart();
      admin.disconnect();
      admin = server.admin();
      // ioredis delivers the queued claim after reconnecting; asking again with our runId gets our own claim back.
      const again = await whenBack(() => store.claim('queued', { runId: 'mine' }));
      expect(again.outcome).toBe('acquired');
      expect((await store.claim('queued', { runId: 'other' })).outcome).toBe('in_flight');
      await store.close(); // does not close a client it did not open
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
    }
  });

  it('a timeout (server busy) is BACKEND_UNAVAILABLE; the claim that landed later is recognised as ours, not in_flight', async () => {
    const store = await open({ timeoutMs: 300 });
    await store.get('warm-up');
    const busy = server.admin();
    const sleeping = busy.call('DEBUG', 'SLEEP', '2'); // 2 s against a 300 ms budget: room for a loaded machine's late timers
    await sleep(50);
    expect(await codeOf(store.claim('slow', { runId: 'mine' }))).toBe('BACKEND_UNAVAILABLE');
    await sleeping;
    busy.disconnect();
    await sleep(50);
    const landed = await store.get('slow');
    expect(landed).toMatchObject({ runId: 'mine', status: 'in_flight', attempt: 1 });
    const again = await store.claim('slow', { runId: 'mine' });
    expect(again.outcome).toBe('acquired');
    expect(leaseOf(again).fence).toBe(landed!.fence);
    const other = await store.claim('slow', { runId: 'other' });
    expect(other.outcome === 'in_flight' && other.record.runId).toBe('mine');
  });

  describe('through a proxy that loses replies', () => {
    let proxy: ReplyLosingProxy;
    beforeAll(async () => {
      proxy = await new ReplyLosingProxy(server.port).start();
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('a claim and a complete whose replies were lost after they landed are retried and recognised as our own', async () => {
      const store = await open({ url: proxy.url, timeoutMs: 3000 });
      await store.release(leaseOf(await store.claim('warm-up'))); // both scripts loaded: the lost reply is a real one
      let ran = await scriptRuns(admin);
      proxy.loseNextScriptReply();
      const got = await store.claim('lost-claim', { runId: 'mine' });
      expect(proxy.lost).toBe(1);
      expect((await scriptRuns(admin)) - ran).toBe(2); // the script really ran twice
      expect(got.outcome).toBe('acquired');
      const lease = leaseOf(got);
      expect(await store.get('lost-claim')).toMatchObject({ runId: 'mine', fence: lease.fence, attempt: 1, status: 'in_flight' });

      ran = await scriptRuns(admin);
      proxy.loseNextScriptReply();
      const done = await store.complete(lease, { result: { ok: 1 } });
      expect(proxy.lost).toBe(2);
      expect((await scriptRuns(admin)) - ran).toBe(2);
      expect(done).toMatchObject({ status: 'succeeded', result: { ok: 1 }, fence: lease.fence });
    });

    it('a claim whose reply is lost and whose server then vanishes is BACKEND_UNAVAILABLE, never acquired; later it is ours', async () => {
      const store = await open({ url: proxy.url, timeoutMs: 1000 });
      await store.get('warm-up');
      proxy.loseNextScriptReply(true);
      expect(await codeOf(store.claim('vanished', { runId: 'mine' }))).toBe('BACKEND_UNAVAILABLE');
      proxy.heal();
      const direct = await open({ url: server.url });
      expect(await direct.get('vanished')).toBeUndefined(); // another prefix: nothing leaks across stores
      const again = await whenBack(() => store.claim('vanished', { runId: 'mine' }));
      expect(again.outcome).toBe('acquired');
      expect((await store.claim('vanished', { runId: 'other' })).outcome).toBe('in_flight');
    });
  });

  it('NOSCRIPT after SCRIPT FLUSH is handled', async () => {
    await expectNoscriptHandled(await open(), admin);
  });

  it('a foreign value or type under the key is CORRUPT_RECORD and is left as it is', async () => {
    const prefix = freshPrefix();
    const store = await open({ prefix });
    const rk = (k: string) => `${prefix}{${storageName(k)}}`;
    const foreign: Array<[string, (k: string) => Promise<unknown>, (k: string) => Promise<unknown>]> = [
      ['a list', (k) => admin.rpush(rk(k), 'x'), (k) => admin.lrange(rk(k), 0, -1)],
      ['a hash', (k) => admin.hset(rk(k), 'status', 'succeeded'), (k) => admin.hgetall(rk(k))],
      ['plain text', (k) => admin.set(rk(k), 'hello'), (k) => admin.get(rk(k))],
      ['JSON of another shape', (k) => admin.set(rk(k), '{"status":"succeeded"}'), (k) => admin.get(rk(k))],
      [
        'a record with a float fence',
        (k) => admin.set(rk(k), JSON.stringify({ v: 1, key: k, status: 'succeeded', runId: 'r', fence: 1.5, attempt: 1, claimedAt: 1 })),
        (k) => admin.get(rk(k)),
      ],
      ['a set', (k) => admin.sadd(rk(k), 'x'), (k) => admin.smembers(rk(k))],
      ['an unknown schema version', (k) => admin.set(rk(k), JSON.stringify({ v: 2, key: k })), (k) => admin.get(rk(k))],
    ];
    for (const [label, put, look] of foreign) {
      const k = `foreign ${label}`;
      await put(k);
      const before = await look(k);
      expect(await codeOf(store.claim(k)), label).toBe('CORRUPT_RECORD');
      expect(await codeOf(store.claim(k, { force: true })), label).toBe('CORRUPT_RECORD');
      expect(await codeOf(store.get(k)), label).toBe('CORRUPT_RECORD');
      expect(await look(k), label).toEqual(before);
    }
    // A lease whose record was replaced by something foreign cannot finish over it either.
    const lease = leaseOf(await store.claim('replaced'));
    await admin.set(rk('replaced'), 'junk');
    expect(await codeOf(store.complete(lease))).toBe('CORRUPT_RECORD');
    expect(await admin.get(rk('replaced'))).toBe('junk');
  });

  it("leases are judged by the server's clock: a client clock an hour off changes nothing", async () => {
    const prefix = freshPrefix();
    const fair = await open({ prefix });
    const ahead = await open({ prefix, clock: () => Date.now() + 3_600_000 });
    const behind = await open({ prefix, clock: () => Date.now() - 3_600_000 });
    await fair.claim('skew-live', { leaseMs: 60_000 });
    expect((await ahead.claim('skew-live')).outcome).toBe('in_flight');
    await fair.claim('skew-dead', { leaseMs: 200, runId: 'crashed' });
    await sleep(400);
    const got = await behind.claim('skew-dead');
    expect(got.outcome).toBe('adopted');
  });

  it("get and list judge retention by the server's clock too: a client clock a year ahead still sees live records", async () => {
    const prefix = freshPrefix();
    const fair = await open({ prefix, retentionMs: 60_000 });
    const ahead = await open({ prefix, clock: () => Date.now() + 365 * 86_400_000 });
    await fair.complete(leaseOf(await fair.claim('kept')), { result: 'r' });
    expect(await ahead.get('kept')).toMatchObject({ status: 'succeeded', result: 'r' });
    expect((await ahead.list({ status: 'succeeded' })).records.map((r) => r.key)).toEqual(['kept']);
  });

  it('records expire natively and linger past their end to hand on the fence', async () => {
    const prefix = freshPrefix();
    const store = await open({ prefix, lingerMs: 1000, retentionMs: 5_000 });
    const rk = `${prefix}{${storageName('ttl')}}`;
    const first = leaseOf(await store.claim('ttl', { leaseMs: 2000 }));
    expect(await admin.pttl(rk)).toBeGreaterThan(2000);
    expect(await admin.pttl(rk)).toBeLessThanOrEqual(3000);
    await store.complete(first);
    expect(await admin.pttl(rk)).toBeGreaterThan(5000);
    expect(await admin.pttl(rk)).toBeLessThanOrEqual(6000);
    expect(await store.delete('ttl')).toBe(true);
    expect(await store.get('ttl')).toBeUndefined();
    expect(await store.delete('ttl')).toBe(false);
    expect(await admin.pttl(rk)).toBeLessThanOrEqual(1000); // lingers with its fence, counted as absent
    const second = leaseOf(await store.claim('ttl', { leaseMs: 100 }));
    expect(second.fence).toBeGreaterThan(first.fence);
    await sleep(1300); // lease + linger: nothing of the key is left
    expect(await admin.exists(rk)).toBe(0);
    const third = await store.claim('ttl');
    expect(third.outcome).toBe('acquired');
    expect(leaseOf(third).fence).toBeGreaterThan(second.fence);
  });

  it('delete removes a foreign value outright', async () => {
    const prefix = freshPrefix();
    const store = await open({ prefix });
    const rk = `${prefix}{${storageName('junk')}}`;
    await admin.rpush(rk, 'x');
    expect(await store.delete('junk')).toBe(true);
    expect(await admin.exists(rk)).toBe(0);
    expect((await store.claim('junk')).outcome).toBe('acquired');
  });

  it('list loses no record when the keyspace is resized between pages (SCAN batches change)', async () => {
    const store = await open();
    const keys = Array.from({ length: 60 }, (_, i) => `page-${i}`);
    for (const k of keys) await store.claim(k, { leaseMs: 60_000 });
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const got = await store.list({ limit: 3, ...(cursor !== undefined ? { cursor } : {}) });
      for (const r of got.records) seen.add(r.key);
      cursor = got.cursor;
      if (cursor === undefined) break;
      // Other keys come and go between pages, so the server grows and
      // shrinks its table: a resumed SCAN then returns a different batch.
      const filler = admin.pipeline();
      for (let i = 0; i < 2000; i++) filler.set(`filler:${page}:${i}`, '1');
      if (page > 2) for (let i = 0; i < 2000; i++) filler.del(`filler:${page - 3}:${i}`);
      await filler.exec();
    }
    expect(cursor).toBeUndefined();
    expect([...seen].sort()).toEqual([...keys].sort());
  });
});
