// A caller's node-redis client (createClient of @redis/client) against a server of the test's own
// that it stops, restarts, flushes and slows down; and the node-redis clients the store refuses.
// The conformance suite on such a client is node-redis.test.ts; minReplicas is in wait-batch.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createClient, createClientPool, createCluster, createSentinel } from '@redis/client';
import { codeOf, expectLease as leaseOf } from '@idem/conformance/testing';
import { IdemError, type IdempotencyStore } from '@idem/core';
import { createValkeyStore, type NodeRedisClient, type ValkeyStoreOptions } from '../src/index.js';
import { calls, expectNoscriptHandled, expectOneRoundTripEach, haveRedisServer, PrivateServer, whenBack } from './private-server.js';
import { freshPrefix } from './server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!haveRedisServer())('a caller-owned node-redis client against a private server', () => {
  let server: PrivateServer;
  let admin: Redis;
  const clients: Array<{ isOpen: boolean; destroy(): void }> = [];
  const connect = async (url = server.url) => {
    const c = createClient({ url });
    c.on('error', () => undefined); // node-redis throws on an 'error' nobody listens to (the server is stopped here)
    clients.push(c);
    return c.connect();
  };
  const open = async (client: NodeRedisClient, options: Partial<ValkeyStoreOptions> = {}): Promise<IdempotencyStore> =>
    createValkeyStore({ client, prefix: freshPrefix(), timeoutMs: 1000, ...options });

  beforeAll(async () => {
    server = await PrivateServer.start();
    admin = server.admin();
  });
  afterAll(async () => {
    for (const c of clients) if (c.isOpen) c.destroy();
    admin?.disconnect();
    await server?.stop();
  });

  it('one round trip per claim, duplicate and complete (MONITOR); close() leaves the client open', async () => {
    const client = await connect();
    const store = await open(client);
    await expectOneRoundTripEach(store, admin);
    await store.close();
    expect(await client.ping()).toBe('PONG');
  });

  it('NOSCRIPT after SCRIPT FLUSH is handled (a node-redis ErrorReply, matched by its message)', async () => {
    await expectNoscriptHandled(await open(await connect()), admin);
  });

  it('a type mapping the caller set on the client changes nothing the store reads', async () => {
    const client = await connect();
    // Every bulk string as a Buffer, maps as Map: the store asks for its own types per command.
    const store = await open(client.withTypeMapping({ 36: Buffer, 37: Map }) as NodeRedisClient);
    const lease = leaseOf(await store.claim('typed'));
    await store.complete(lease, { result: { n: 1 } });
    expect((await store.claim('typed')).outcome).toBe('completed');
    expect((await store.list()).records.map((r) => r.result)).toEqual([{ n: 1 }]);
  });

  it('a timeout (server busy) is BACKEND_UNAVAILABLE within timeoutMs; the claim that landed later is ours', async () => {
    const store = await open(await connect(), { timeoutMs: 300 });
    await store.get('warm-up');
    const busy = server.admin();
    const sleeping = busy.call('DEBUG', 'SLEEP', '2'); // 2 s against a 300 ms budget: room for a loaded machine's late timers
    await sleep(50);
    const t0 = Date.now();
    expect(await codeOf(store.claim('slow', { runId: 'mine' }))).toBe('BACKEND_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(1900); // well before DEBUG SLEEP's 2 s
    await sleeping;
    busy.disconnect();
    await sleep(50);
    expect(await store.get('slow')).toMatchObject({ runId: 'mine', status: 'in_flight' });
    expect((await store.claim('slow', { runId: 'mine' })).outcome).toBe('acquired');
  });

  it('server down: BACKEND_UNAVAILABLE within timeoutMs, never acquired, no secret in any error; after a restart the same runId gets its claim back', async () => {
    const secret = 'S3cretPassw0rd';
    await admin.call('CONFIG', 'SET', 'requirepass', secret); // until the restart below (no persistence)
    const client = await connect(`redis://default:${secret}@127.0.0.1:${server.port}`);
    const store = await open(client, { timeoutMs: 800 });
    const lease = leaseOf(await store.claim('before'));
    await server.stop();
    const t0 = Date.now();
    const errors: unknown[] = [];
    for (const op of [() => store.claim('during', { runId: 'mine' }), () => store.complete(lease), () => store.get('before'), () => store.list()]) {
      const error = await op().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as IdemError).code).toBe('BACKEND_UNAVAILABLE');
      errors.push(error);
    }
    console.log(`server down, node-redis client: ${(errors[0] as Error).message}`);
    expect(Date.now() - t0).toBeLessThan(4 * 3000); // each bounded by timeoutMs, with room for a loaded machine
    for (let e: unknown = errors[0]; e instanceof Error; e = e.cause) expect(`${e.message} ${e.stack}`).not.toContain(secret);
    for (const e of errors) expect(JSON.stringify(e) + String(e)).not.toContain(secret);
    await server.restart(); // empty, and without the password until it is set again
    admin.disconnect();
    admin = server.admin();
    await admin.call('CONFIG', 'SET', 'requirepass', secret);
    // node-redis reconnects (AUTH, retried until the password is back) and delivers the queued claim:
    // asking again with our runId gets our own claim back, another runId sees it in flight.
    expect((await whenBack(() => store.claim('during', { runId: 'mine' }))).outcome).toBe('acquired');
    expect((await store.claim('during', { runId: 'other' })).outcome).toBe('in_flight');
    expect(await calls(admin, 'eval')).toBeGreaterThanOrEqual(1); // NOSCRIPT on the restarted server, then the body
  });
});

describe('node-redis clients the store refuses, before any I/O', () => {
  it('cluster, Sentinel and pool clients, a client with keyPrefix, a legacy() wrapper and node-redis 4', async () => {
    const bad: Array<[string, object]> = [
      ['cluster', createCluster({ rootNodes: [{ url: 'redis://127.0.0.1:1' }] })],
      ['Sentinel', createSentinel({ name: 'm', sentinelRootNodes: [{ host: '127.0.0.1', port: 1 }] })],
      ['client pool', createClientPool({ url: 'redis://127.0.0.1:1' })],
      ['keyPrefix', createClient({ url: 'redis://127.0.0.1:1', keyPrefix: 'app:' })],
      ['legacy() wrapper', createClient({ url: 'redis://127.0.0.1:1' }).legacy()],
      // node-redis 4 (@redis/client 1.x), not installed here: its shape, sendCommand without type mappings.
      ['node-redis 4', { sendCommand: async () => 'PONG', isOpen: true }],
    ];
    for (const [label, client] of bad) {
      const error = await createValkeyStore({ client: client as NodeRedisClient }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, label).toBeInstanceOf(IdemError);
      expect((error as IdemError).code, label).toBe('INVALID_ARGUMENT');
      console.log(`refused ${label}: ${(error as Error).message}`);
    }
  });
});
