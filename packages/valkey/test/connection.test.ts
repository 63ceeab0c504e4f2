// The connection side of the store: a database index the server does not
// have, the time bound with the server unreachable, closing while it is down,
// Sentinel URLs, and replica acknowledgement refused when the server has no replica.
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { codeOf, expectIdemError as errorOf } from '@idem/conformance/testing';
import { IdemError, type IdempotencyStore } from '@idem/core';
import { createValkeyStore, ownedClientOptions, type ValkeyStoreOptions } from '../src/index.js';
import { parseSentinelUrl } from '../src/sentinel.js';
import { findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();

/** A loopback port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const stores: IdempotencyStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
});
async function open(options: ValkeyStoreOptions): Promise<IdempotencyStore> {
  const store = await createValkeyStore(options);
  stores.push(store);
  return store;
}

describe.skipIf(!url)('a database index the server does not have', () => {
  it.each(['16', '99999'])('redis://host:port/%s is INVALID_STORE_URL on every operation, and nothing lands in database 0', async (db) => {
    const prefix = freshPrefix();
    const store = await open({ url: `${url}/${db}`, prefix, timeoutMs: 2000 });
    const error = await errorOf(store.claim('job'));
    expect(error.code).toBe('INVALID_STORE_URL');
    expect(error.message).toMatch(/database index/);
    expect(await codeOf(store.claim('job'))).toBe('INVALID_STORE_URL');
    expect(await codeOf(store.get('job'))).toBe('INVALID_STORE_URL');
    const db0 = await open({ url: url!, prefix });
    expect(await db0.get('job')).toBeUndefined();
    expect((await db0.list()).records).toEqual([]);
  });

  it('a database the server has is used, apart from database 0', async () => {
    const prefix = freshPrefix();
    const one = await open({ url: `${url}/1`, prefix });
    const zero = await open({ url: url!, prefix });
    expect((await one.claim('apart')).outcome).toBe('acquired');
    expect((await zero.claim('apart')).outcome).toBe('acquired');
  });
});

describe('the time bound with the server unreachable', () => {
  it('a store opening its own client lets ioredis neither queue nor wait past timeoutMs', () => {
    const o = ownedClientOptions(5000);
    expect(o.maxRetriesPerRequest).toBe(1);
    // Each attempt is bounded by the store, not by a timer per command (the next test proves the bound).
    expect('commandTimeout' in o).toBe(false);
    expect(o.connectTimeout).toBeLessThanOrEqual(5000);
    expect(o.retryStrategy(1_000)).toBeLessThanOrEqual(500);
  });

  it('nothing listening: BACKEND_UNAVAILABLE (timing printed, not asserted tightly); close() does not wait for the server', async () => {
    const port = await closedPort();
    const timeoutMs = 600;
    const store = await createValkeyStore({ url: `redis://127.0.0.1:${port}`, timeoutMs });
    const took: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      expect(await codeOf(store.claim(`down-${i}`))).toBe('BACKEND_UNAVAILABLE');
      took.push(Date.now() - t0);
    }
    console.log(`BACKEND_UNAVAILABLE with nothing listening, timeoutMs ${timeoutMs}: ${took.join(', ')} ms`);
    // Only a bound a loaded machine cannot hit: ioredis's own defaults would queue for over a minute.
    expect(Math.max(...took)).toBeLessThan(30_000);
    await store.close(); // used to wait for ever: QUIT was queued until the server came back
  });
});

describe('Sentinel URLs and the replica query, parsed without I/O', () => {
  it('reads the sentinels, master name, database and both auths', () => {
    expect(parseSentinelUrl('redis+sentinel://10.0.0.1:26380,sentinel-b,[::1]:5000/mymaster')).toEqual({
      sentinels: [
        { host: '10.0.0.1', port: 26380 },
        { host: 'sentinel-b', port: 26379 },
        { host: '::1', port: 5000 },
      ],
      name: 'mymaster',
      db: 0,
    });
    expect(parseSentinelUrl('valkey+sentinel://app:p%40ss@s1:1/m/3/?sentinelUsername=sen&sentinelPassword=x%2Fy&minReplicas=1&replicaTimeoutMs=250')).toEqual({
      sentinels: [{ host: 's1', port: 1 }],
      name: 'm',
      db: 3,
      username: 'app',
      password: 'p@ss',
      sentinelUsername: 'sen',
      sentinelPassword: 'x/y',
      minReplicas: 1,
      replicaTimeoutMs: 250,
    });
    // A password with an unencoded "@" or "/": the userinfo ends at the last "@".
    expect(parseSentinelUrl('redis+sentinel://:a@b@s1/m').password).toBe('a@b');
    expect(parseSentinelUrl('redis+sentinel://u:pa/ss@s1/m')).toMatchObject({ username: 'u', password: 'pa/ss', name: 'm' });
  });

  it('refuses malformed URLs with INVALID_STORE_URL, quoting nothing of them', () => {
    const secret = 'SECRETs3cr3t';
    const bad = [
      `redis+sentinel://u:${secret}@s1:26379`,
      `redis+sentinel://u:${secret}@s1:99999/m`,
      `redis+sentinel://s1/m?password=${secret}`,
      `redis+sentinel://s1/m?minReplicas=${secret}`,
      `redis+sentinel://u:${secret}@s1/m/x/y`,
      `redis+sentinel://u:${secret}@s1/m#frag`,
      `redis+sentinel://u:%ZZ${secret}@s1/m`,
      `redis://s1/m`,
    ];
    for (const text of bad) {
      let error: unknown;
      try {
        parseSentinelUrl(text);
      } catch (e) {
        error = e;
      }
      expect(error, text).toBeInstanceOf(IdemError);
      expect((error as IdemError).code, text).toBe('INVALID_STORE_URL');
      expect((error as IdemError).message, text).not.toContain(secret);
      expect((error as IdemError).message, text).not.toContain('pa/');
    }
  });

  it('createValkeyStore({ url }) reads the one URL grammar: what it does not know is refused before any I/O', async () => {
    const cases: Array<[ValkeyStoreOptions, string]> = [
      // ioredis would have read these as its own options; the grammar knows none of them.
      [{ url: 'redis://127.0.0.1:1/0?family=6' }, 'INVALID_STORE_URL'],
      [{ url: 'redis://127.0.0.1:1/0?keyPrefix=x:' }, 'INVALID_STORE_URL'],
      [{ url: 'redis://127.0.0.1:1/0?prefix=' }, 'INVALID_STORE_URL'],
      [{ url: 'redis://127.0.0.1:1/0?nodes=127.0.0.1:2' }, 'INVALID_STORE_URL'],
      [{ url: 'redis+sentinel://s1/m?prefix={x}' }, 'INVALID_STORE_URL'],
      [{ url: 'http://127.0.0.1:1' }, 'INVALID_STORE_URL'],
      // One setting, two sources that disagree: refused, whichever would have won.
      [{ url: 'redis://127.0.0.1:1?prefix=app:', prefix: 'other:' }, 'INVALID_ARGUMENT'],
      [{ url: 'redis://127.0.0.1:1?minReplicas=1', minReplicas: 2 }, 'INVALID_ARGUMENT'],
      [{ url: 'redis+sentinel://s1/m?replicaTimeoutMs=100', replicaTimeoutMs: 200 }, 'INVALID_ARGUMENT'],
    ];
    for (const [options, code] of cases) expect(await codeOf(createValkeyStore(options)), JSON.stringify(options)).toBe(code);
    expect(parseSentinelUrl('redis+sentinel://s1/m?prefix=app:').prefix).toBe('app:');
  });

  it('bad replica settings are refused before any I/O', async () => {
    const cases: Array<[ValkeyStoreOptions, string]> = [
      [{ url: 'redis://127.0.0.1:1?minReplicas=-1' }, 'INVALID_STORE_URL'],
      [{ url: 'redis://127.0.0.1:1?minReplicas=1&minReplicas=2' }, 'INVALID_STORE_URL'],
      [{ url: 'redis://127.0.0.1:1', minReplicas: 1.5 }, 'INVALID_ARGUMENT'],
      [{ url: 'redis://127.0.0.1:1', minReplicas: 1, replicaTimeoutMs: 5000 }, 'INVALID_ARGUMENT'],
      [{ url: 'redis://127.0.0.1:1', minReplicas: 1, timeoutMs: 500, replicaTimeoutMs: 600 }, 'INVALID_ARGUMENT'],
      [{ client: { call: async () => 1, callBuffer: async () => 1, quit: async () => 'OK' }, minReplicas: 1 }, 'INVALID_ARGUMENT'],
      [{ url: 'redis+sentinel://s1' }, 'INVALID_STORE_URL'],
    ];
    for (const [options, code] of cases) expect(await codeOf(createValkeyStore(options)), JSON.stringify(options)).toBe(code);
  });
});

describe.skipIf(!url)('replica acknowledgement without enough replicas', () => {
  it('BACKEND_UNAVAILABLE (retryable); the claim landed on the primary and a retry with the same runId gets it back', async () => {
    const prefix = freshPrefix();
    // The standalone server has no replica: WAIT 1 can never be satisfied.
    const acked = await open({ url: `${url}?minReplicas=1&replicaTimeoutMs=100`, prefix, timeoutMs: 1000 });
    const error = await errorOf(acked.claim('unacked', { runId: 'mine' }));
    expect(error.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/0 of 1 replicas acknowledged/);
    const plain = await open({ url: url!, prefix });
    expect(await plain.get('unacked')).toMatchObject({ runId: 'mine', status: 'in_flight' });
    expect((await plain.claim('unacked', { runId: 'other' })).outcome).toBe('in_flight');
    const again = await plain.claim('unacked', { runId: 'mine' });
    expect(again.outcome).toBe('acquired');
  });
});
