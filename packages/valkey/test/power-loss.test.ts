// A power cut under load: a private primary and its replica, both with `appendonly yes`, are
// SIGKILLed together while three workers (load.ts) claim and complete, then restarted from their
// append-only files; every acknowledged claim and completion is looked for.
//
// A SIGKILL alone loses nothing a server had written: the kernel's page cache keeps it. What a
// power cut loses is what was written but not yet fsynced. The one mock of this test makes that
// so: both servers run with scripts/servers/powerloss.c preloaded, which keeps every write to an
// append-only file in the process's memory until that file is fsynced (no machine's power can be
// cut from a test).
//
// With `fsync: true` and `minReplicas: 1` (WAITAOF 1 1 after the scripts), on nodes with
// `appendfsync always` (what the store demands of Valkey: under everysec its WAITAOF acknowledges
// before the fsync, see checkFsync in index.ts), the test asserts zero double executions and zero
// forgotten completions. With `minReplicas: 1` alone on nodes with `appendfsync everysec` (the usual
// setting: the replica holds the write in memory, the disks up to a second behind) the losses are
// counted and printed, not asserted; and `fsync` is refused there at open.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findServer } from '@idem/test-fixtures';
import { infoField, synced, underLoad, waitUntil, type Figures } from './load.js';
import { IdemError } from '@idem/core';
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import { createValkeyStore, type NodeRedisClient, type ValkeyClient, type ValkeyStoreOptions } from '../src/index.js';
import { calls, haveRedisServer, PrivateServer } from './private-server.js';
import { findRedis7Standalone, findStandalone, freshPrefix } from './server.js';

const shim = (await findServer({ label: 'valkey power-loss shim (scripts/servers/powerloss.sh)', env: ['IDEM_TEST_REDIS_POWERLOSS_LIB'] }))
  ?.IDEM_TEST_REDIS_POWERLOSS_LIB;
const CUTS = 2; // per scenario
// Answers before the first cut and after each: with fsync a round trip waits for the replica's
// fsync and its acknowledgement, so each worker answers only a few times a second.
const ANSWERS = 12;

describe.skipIf(!shim || !haveRedisServer())('power cut under load: primary and replica SIGKILLed together, restarted from their AOF', () => {
  const dirs: string[] = [];
  const servers: PrivateServer[] = [];
  const report: Record<string, Figures> = {};
  afterAll(async () => {
    if (Object.keys(report).length) console.log(`valkey power-loss figures:\n${JSON.stringify(report, null, 1)}`);
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A primary and its replica of their own, each with an AOF in a directory of its own, under the shim. */
  async function pair(appendfsync: 'always' | 'everysec') {
    const persistent = (): string[] => {
      const dir = mkdtempSync(join(tmpdir(), 'idem-power-loss-'));
      dirs.push(dir);
      return ['--appendonly', 'yes', '--appendfsync', appendfsync, '--dir', dir];
    };
    const env = { LD_PRELOAD: shim! };
    const primary = await PrivateServer.start({ args: persistent(), env });
    const replica = await PrivateServer.start({ args: [...persistent(), '--replicaof', '127.0.0.1', String(primary.port)], env });
    servers.push(primary, replica);
    /** Both up, the replica in sync, and no AOF rewrite running (a replica rewrites after a full sync). */
    const steady = () =>
      waitUntil('the replica is in sync and no AOF is being rewritten', async () => {
        if (!(await synced(replica.port))) return false;
        for (const port of [primary.port, replica.port]) if ((await infoField(port, 'persistence', 'aof_rewrite_in_progress')) !== '0') return false;
        return true;
      });
    /** SIGKILLs both in the same tick, then starts them again (the replica keeps its --replicaof). */
    const cut = async (): Promise<number> => {
      await steady();
      await Promise.all([primary.stop(), replica.stop()]);
      const fault = Date.now();
      await primary.restart();
      await replica.restart();
      await steady();
      return fault;
    };
    await steady();
    return { url: primary.url, cut };
  }

  it('fsync: true, minReplicas: 1, appendfsync always: every acknowledged claim and completion survives', async () => {
    const { url, cut } = await pair('always');
    const figures = await underLoad(
      { url, timeoutMs: 3000, minReplicas: 1, fsync: true, replicaTimeoutMs: 1000 },
      cut,
      { url },
      { count: CUTS, answers: ANSWERS },
    );
    report['power cut, fsync + minReplicas=1, appendfsync always'] = figures;
    expect(figures.failovers).toBe(CUTS);
    expect(figures.doubleExecutions).toBe(0);
    expect(figures.forgottenCompletions).toBe(0);
    expect(figures.completionsAcknowledged).toBeGreaterThan(0);
  }, 600_000);

  it('minReplicas: 1 alone, appendfsync everysec: the same load and cuts, losses counted and reported; fsync refused there', async () => {
    const { url, cut } = await pair('everysec');
    const refused = await createValkeyStore({ url, fsync: true }).then(
      async (store) => (await store.close(), undefined),
      (e: unknown) => e as IdemError,
    );
    expect(refused?.code).toBe('UNSAFE_BACKEND');
    expect(refused?.message).toMatch(/appendfsync always on Valkey/);
    const figures = await underLoad({ url, timeoutMs: 3000, minReplicas: 1, replicaTimeoutMs: 1000 }, cut, { url }, { count: CUTS, answers: ANSWERS });
    report['power cut, minReplicas=1 without fsync, appendfsync everysec'] = figures;
    expect(figures.failovers).toBe(CUTS);
  }, 600_000);
});

describe('fsync is refused at open where it cannot be kept', () => {
  const refusal = async (options: ValkeyStoreOptions) => {
    const error = await createValkeyStore({ prefix: freshPrefix(), timeoutMs: 3000, ...options }).then(
      async (store) => (await store.close(), undefined),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IdemError);
    return error as IdemError;
  };

  it('not a boolean: INVALID_ARGUMENT (INVALID_STORE_URL in a URL) before any I/O; URL and option must agree', async () => {
    expect((await refusal({ url: 'redis://127.0.0.1:1', fsync: 'yes' as unknown as boolean })).code).toBe('INVALID_ARGUMENT');
    expect((await refusal({ url: 'redis://127.0.0.1:1?fsync=maybe' })).code).toBe('INVALID_STORE_URL');
    expect((await refusal({ url: 'redis://127.0.0.1:1?fsync=true', fsync: false })).code).toBe('INVALID_ARGUMENT');
  });

  it('Redis 7.0 (no WAITAOF): UNSAFE_BACKEND naming the version needed', async (context) => {
    const url = await findRedis7Standalone();
    if (!url) return context.skip();
    const error = await refusal({ url, fsync: true });
    expect(error.code).toBe('UNSAFE_BACKEND');
    expect(error.message).toMatch(/WAITAOF.*Redis 7\.2 or later/);
  });

  it('Valkey 8 with appendonly no (the shared server): UNSAFE_BACKEND naming appendonly', async (context) => {
    const url = await findStandalone();
    if (!url) return context.skip();
    const error = await refusal({ url, fsync: true });
    expect(error.code).toBe('UNSAFE_BACKEND');
    expect(error.message).toMatch(/appendonly yes/);
  });
});

describe.skipIf(!haveRedisServer())("fsync on the store's own client and on a caller's ioredis and node-redis clients", () => {
  it('a tick of claims, then of completes: each settles after one shared WAITAOF per batch, and the replica holds them', async () => {
    const dirs = [mkdtempSync(join(tmpdir(), 'idem-fsync-')), mkdtempSync(join(tmpdir(), 'idem-fsync-'))];
    const aof = (dir: string) => ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir];
    const primary = await PrivateServer.start({ args: aof(dirs[0]!) });
    const replica = await PrivateServer.start({ args: [...aof(dirs[1]!), '--replicaof', '127.0.0.1', String(primary.port)] });
    const admin = primary.admin();
    const replicaAdmin = replica.admin();
    const ioredis = new Redis(primary.url);
    const nodeRedis = await createClient({ url: primary.url }).connect();
    try {
      await waitUntil('the replica is in sync', () => synced(replica.port));
      const options = { minReplicas: 1, fsync: true, replicaTimeoutMs: 2500, timeoutMs: 5000 };
      for (const [label, target] of [
        ['own client', { url: primary.url }],
        ['your ioredis', { client: ioredis as unknown as ValkeyClient }],
        ['your node-redis', { client: nodeRedis as unknown as NodeRedisClient }],
      ] as const) {
        const store = await createValkeyStore({ ...target, ...options, prefix: freshPrefix() });
        await store.claim('warm-up'); // the script loaded
        const before = await calls(admin, 'waitaof');
        const keys = Array.from({ length: 16 }, (_, i) => `${label}-${i}`);
        const claims = await Promise.all(keys.map((k) => store.claim(k)));
        expect(
          claims.map((c) => c.outcome),
          label,
        ).toEqual(keys.map(() => 'acquired'));
        await Promise.all(claims.map((c) => c.outcome === 'acquired' && store.complete(c.lease, { result: 1 })));
        const waits = (await calls(admin, 'waitaof')) - before;
        expect(waits, label).toBeGreaterThanOrEqual(2); // one per batch at least
        expect(waits, label).toBeLessThan(keys.length); // shared, not one per call
        expect(await Promise.all(keys.map((k) => store.get(k).then((r) => r?.status)))).toEqual(keys.map(() => 'succeeded'));
        expect(Number(await replicaAdmin.dbsize())).toBeGreaterThanOrEqual(keys.length);
        await store.close();
      }
    } finally {
      ioredis.disconnect();
      await nodeRedis.close();
      admin.disconnect();
      replicaAdmin.disconnect();
      await replica.stop();
      await primary.stop();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
  });
});
