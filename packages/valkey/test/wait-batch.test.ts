// minReplicas with many operations in flight: the scripts of one tick share one WAIT (#13).
// A private primary and its replica (the Valkey 8 valkey-server of IDEM_TEST_REDIS_SERVER_BIN, started here), so that freezing the replica
// with SIGSTOP disturbs no other test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createClient } from '@redis/client';
import { expectLease as leaseOf } from '@idem/conformance/testing';
import { storageName, type IdempotencyStore } from '@idem/core';
import { createValkeyStore } from '../src/index.js';
import { haveRedisServer, PrivateServer, watchCommands } from './private-server.js';
import { freshPrefix } from './server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const IN_FLIGHT = 64;

describe.skipIf(!haveRedisServer())('minReplicas: one WAIT per batch of operations', () => {
  let primary: PrivateServer;
  let replica: PrivateServer;
  let admin: Redis;
  let replicaAdmin: Redis;
  let replicaPid = 0;
  let store: IdempotencyStore;
  /** The same, on a client of the caller's (which the store neither opens nor closes). */
  let callerStore: IdempotencyStore;
  let callerClient: Redis;
  /** And on a caller's node-redis client: its commands of one tick, in order on its one connection. */
  let nodeRedisStore: IdempotencyStore;
  let nodeRedisClient: ReturnType<typeof createClient>;
  const prefix = freshPrefix();
  const keysOf = (batch: string) => Array.from({ length: IN_FLIGHT }, (_, i) => `${batch}-${i}`);
  /** Each key's record as the replica holds it (null: not there). */
  const onReplica = (keys: string[]) => Promise.all(keys.map((k) => replicaAdmin.get(`${prefix}{${storageName(k)}}`)));

  beforeAll(async () => {
    primary = await PrivateServer.start();
    replica = await PrivateServer.start();
    admin = primary.admin();
    replicaAdmin = replica.admin();
    await replicaAdmin.call('REPLICAOF', '127.0.0.1', String(primary.port));
    for (;;) {
      const info = await replicaAdmin.info('replication');
      if (/^master_link_status:up/m.test(info)) break;
      await sleep(50);
    }
    replicaPid = Number(/^process_id:(\d+)/m.exec(await replicaAdmin.info('server'))![1]);
    store = await createValkeyStore({ url: primary.url, prefix, minReplicas: 1, replicaTimeoutMs: 300, timeoutMs: 2000 });
    await store.complete(leaseOf(await store.claim('warm-up'))); // scripts loaded: no NOSCRIPT while watching
    callerClient = primary.admin();
    callerStore = await createValkeyStore({ client: callerClient, prefix, minReplicas: 1, replicaTimeoutMs: 300, timeoutMs: 2000 });
    nodeRedisClient = createClient({ url: primary.url });
    nodeRedisClient.on('error', () => undefined); // node-redis throws on an 'error' nobody listens to
    await nodeRedisClient.connect();
    nodeRedisStore = await createValkeyStore({ client: nodeRedisClient, prefix, minReplicas: 1, replicaTimeoutMs: 300, timeoutMs: 2000 });
    await nodeRedisStore.get('warm-up'); // its connection's handshake done before watching
  });

  afterAll(async () => {
    if (replicaPid) process.kill(replicaPid, 'SIGCONT');
    await store?.close();
    await callerStore?.close();
    callerClient?.disconnect();
    if (nodeRedisClient?.isOpen) nodeRedisClient.destroy();
    admin?.disconnect();
    replicaAdmin?.disconnect();
    await replica?.stop();
    await primary?.stop();
  });

  for (const which of ['own client', "caller's client", "caller's node-redis client"] as const) {
    it(`${which}: ${IN_FLIGHT} claims, then ${IN_FLIGHT} completes, in one tick each: every script, then fewer WAITs than operations; each write is on the replica when it returns`, async () => {
      const s = which === 'own client' ? store : which === "caller's client" ? callerStore : nodeRedisStore;
      const keys = keysOf(`batch-${which.replace(/\W+/g, '-')}`);
      const watch = await watchCommands(admin.duplicate());
      const claims = await Promise.all(keys.map((k) => s.claim(k)));
      // Read at once: the replica must hold every record the moment the claims return.
      const held = await onReplica(keys);
      await Promise.all(claims.map((o) => s.complete(leaseOf(o), { result: 1 })));
      const finished = await onReplica(keys);
      const seen = await watch.count();
      watch.stop();
      expect(claims.map((o) => o.outcome)).toEqual(keys.map(() => 'acquired'));
      expect(held.filter((r) => r === null)).toEqual([]);
      expect(finished.filter((r) => !r?.includes('"status":"succeeded"'))).toEqual([]);
      const scripts = seen.filter((c) => c.startsWith('EVAL'));
      const waits = seen.filter((c) => c === 'WAIT');
      console.log(`wait-batch, ${which}: ${scripts.length} scripts, ${waits.length} WAITs`);
      expect(scripts.length).toBe(2 * IN_FLIGHT);
      expect(waits.length).toBeGreaterThanOrEqual(2);
      expect(waits.length).toBeLessThan(IN_FLIGHT);
      // A WAIT only ever follows scripts (it covers the writes before it), and the last command is one.
      seen.forEach((c, i) => {
        if (c === 'WAIT') expect(seen[i - 1]).toMatch(/^EVAL/);
      });
      expect(seen.at(-1)).toBe('WAIT');
    });
  }

  for (const which of ['own client', "caller's node-redis client"] as const) {
    it(`${which}, replica frozen: every claim of a ${IN_FLIGHT}-claim batch fails BACKEND_UNAVAILABLE (too few replicas); thawed, the same runs get their own claims back`, async () => {
      const s = which === 'own client' ? store : nodeRedisStore;
      const keys = keysOf(`frozen-${which.replace(/\W+/g, '-')}`);
      const runId = (k: string) => `run-${k}`;
      process.kill(replicaPid, 'SIGSTOP');
      let failures: unknown[];
      try {
        failures = await Promise.all(
          keys.map((k) =>
            s.claim(k, { runId: runId(k) }).then(
              (o) => o,
              (error: unknown) => error,
            ),
          ),
        );
      } finally {
        process.kill(replicaPid, 'SIGCONT');
      }
      for (const f of failures) {
        expect((f as { code?: string }).code).toBe('BACKEND_UNAVAILABLE');
        // Said by WAIT, not by a lost connection: each operation counted the replicas of its batch.
        expect((f as Error).message).toMatch(/0 of 1 replicas acknowledged/);
      }
      // The writes landed on the primary: a retry with the same runId recognises each as its own.
      const again = await Promise.all(keys.map((k) => s.claim(k, { runId: runId(k) })));
      expect(again.map((o) => o.outcome)).toEqual(keys.map(() => 'acquired'));
      expect((await onReplica(keys)).filter((r) => r === null)).toEqual([]);
      // And every first execution completes, acknowledged too.
      await Promise.all(again.map((o) => s.complete(leaseOf(o), { result: 1 })));
      expect((await Promise.all(keys.map((k) => s.get(k)))).map((r) => r?.status)).toEqual(keys.map(() => 'succeeded'));
    });
  }
});
