// Failover under load, on the replicated servers of scripts/servers/redis.sh
// (a primary + replica behind three sentinels; a cluster with a replica per
// master). Three worker processes (failover-worker.mjs) claim and complete
// shared and own keys in a loop while the test fails the primary over, again
// and again, and then counts:
//   double executions: a key acknowledged as acquired more than once;
//   forgotten completions: a completion acknowledged, then gone (the key is
//     not `succeeded` at the end, or was acquired again after it);
//   errors by code, and the longest time a worker went without an answer.
//
// Each failover first opens a loss window, the way a real one can happen:
// the replica is frozen (SIGSTOP) and its link to the primary cut, so writes
// acknowledged by the primary for 300 ms never reach it; then the primary
// dies (SIGKILL; Sentinel promotes the replica) or, on the cluster, the
// replica takes over (CLUSTER FAILOVER TAKEOVER; the old master becomes its
// replica and drops what it had alone). With minReplicas=1 the test asserts
// zero double executions and zero forgotten completions; without it, the
// counts are printed and nothing is asserted that the setting does not promise.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { codeOf, expectLease as leaseOf } from '@idem/conformance/testing';
import { storageName, type IdempotencyStore } from '@idem/core';
import { findServer } from '@idem/test-fixtures';
import { createValkeyStore, type ValkeyClient, type ValkeyStoreOptions } from '../src/index.js';
import { CLAIM_LUA } from '../src/lua.js';
import { parseSentinelUrl } from '../src/sentinel.js';
import { ask, FAILOVERS, fieldsOf, infoField, pidOf, sleep, synced, underLoad, waitUntil, type Figures } from './load.js';
import { watchCommands } from './private-server.js';
import { freshPrefix } from './server.js';

const servers = await findServer({
  label: 'valkey failover servers (Sentinel and replicated cluster)',
  env: ['IDEM_TEST_REDIS_SENTINEL', 'IDEM_TEST_REDIS_HA_CLUSTER', 'IDEM_TEST_REDIS_RUNDIR'],
});
const sentinelUrl = servers?.IDEM_TEST_REDIS_SENTINEL;
const haCluster = servers?.IDEM_TEST_REDIS_HA_CLUSTER?.split(',');
const rundir = servers?.IDEM_TEST_REDIS_RUNDIR;
const redisScript = fileURLToPath(new URL('../../../scripts/servers/redis.sh', import.meta.url));
const WINDOW_MS = 300;

function restartNode(port: number): void {
  const r = spawnSync('bash', [redisScript, 'restart-node', rundir!, String(port)], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`restart-node ${port} failed`);
}

/** Freezes the replica and cuts its link: the primary's next writes reach no replica. */
async function openLossWindow(primary: number, replica: number): Promise<() => void> {
  const rpid = await pidOf(replica);
  process.kill(rpid, 'SIGSTOP');
  try {
    await ask(primary, 'CLIENT', 'KILL', 'TYPE', 'replica');
    await sleep(WINDOW_MS);
  } catch (error) {
    process.kill(rpid, 'SIGCONT');
    throw error;
  }
  return () => process.kill(rpid, 'SIGCONT');
}

// --- Sentinel ---------------------------------------------------------------

const sentinelPorts = () => parseSentinelUrl(sentinelUrl!).sentinels.map((s) => s.port);

async function sentinelPrimary(): Promise<number> {
  const [, port] = (await ask(sentinelPorts()[0]!, 'SENTINEL', 'get-master-addr-by-name', 'idem-ha')) as [string, string];
  return Number(port);
}

async function replicaOf(primary: number): Promise<number> {
  const m = /^slave0:.*port=(\d+)/m.exec(String(await ask(primary, 'INFO', 'replication')));
  if (!m) throw new Error(`the primary on ${primary} has no replica`);
  return Number(m[1]);
}

/**
 * A majority of the sentinels (2 of 3: enough to agree the primary is down and
 * to elect the leader that promotes) see the replica as healthy, so it can be
 * promoted next time. Not all three: in two CI runs one sentinel kept a stale
 * view of the returned node for over 120 s; `sentinelViews` says what each saw.
 */
async function sentinelsSeeReplica(port: number): Promise<boolean> {
  let healthy = 0;
  const views: string[] = [];
  for (const s of sentinelPorts()) {
    const replicas = (await ask(s, 'SENTINEL', 'REPLICAS', 'idem-ha')) as string[][];
    const mine = replicas.map(fieldsOf).find((r) => Number(r.port) === port);
    views.push(`${s}: ${mine ? `${mine.flags}, link ${mine['master-link-status']}` : 'unknown'}`);
    if (mine && mine.flags === 'slave' && mine['master-link-status'] === 'ok') healthy++;
  }
  sentinelViews = views.join('; ');
  return healthy * 2 > sentinelPorts().length;
}
let sentinelViews = '';

async function sentinelFailover(): Promise<number> {
  let primary = 0;
  let replica = 0;
  // Right after the previous failover the returned node may not be attached yet (seen once on the
  // loaded machine: the primary had no replica); replicaOf throws until it is, and waitUntil asks again.
  await waitUntil('the primary Sentinel names has a replica', async () => {
    primary = await sentinelPrimary();
    replica = await replicaOf(primary);
    return true;
  });
  await waitUntil('the replica is in sync before the failover', () => synced(replica));
  const ppid = await pidOf(primary);
  const thaw = await openLossWindow(primary, replica);
  process.kill(ppid, 'SIGKILL');
  thaw();
  const fault = Date.now();
  await waitUntil('Sentinel promotes the replica', async () => (await sentinelPrimary()) === replica);
  // The old primary comes back empty (no persistence) and is made the new primary's replica.
  restartNode(primary);
  await ask(primary, 'REPLICAOF', '127.0.0.1', replica);
  // The two nodes settle: usually the old primary replicating from the new one; in one loaded CI
  // run a sentinel turned the roles back meanwhile (the old primary master again), and waiting for
  // the old primary's link alone then hung. Either way is accepted here; the check below and its
  // re-monitoring start from the primary the nodes agree on.
  await agreedPrimary(primary, replica);
  try {
    await waitUntil('a majority of sentinels see the new replica healthy', () => sentinelsSeeReplica(primary), 20_000);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('not reached')) throw error;
    // Sentinel's own bookkeeping, put right when it does not follow: in CI runs on the loaded machine
    // all three sentinels kept no trace of the returned node for over 120 s, although it answered and
    // was a synced replica (root cause not found). This test is about the store, not about Sentinel,
    // so each sentinel forgets idem-ha and monitors it again at the primary the nodes agree on; it
    // then finds the replica (INFO) and the other sentinels (hello messages) by itself.
    // The primary the nodes agree on, which is not always `replica`: one CI run found it no longer
    // primary by then (demoted again; by which sentinel, not found). Should it change under us
    // again, remonitor refuses (an Error) and waitUntil asks the nodes anew.
    const stale = sentinelViews;
    let [now, other] = [replica, primary];
    await waitUntil('re-monitoring at the primary the two nodes agree on', async () => {
      [now, other] = await agreedPrimary(primary, replica);
      await remonitor(now);
      return true;
    });
    await waitUntil(
      'after re-monitoring, a majority of sentinels see the replica healthy and every sentinel knows the two others',
      async () => (await sentinelsSeeReplica(other)) && (await sentinelsKnowEachOther()),
    ).catch((again: unknown) => {
      throw new Error(`${(again as Error).message} (sentinels saw: ${sentinelViews}; before re-monitoring: ${stale})`);
    });
    console.log(
      `valkey failover test: sentinels re-monitored idem-ha at ${now}${now === replica ? '' : ' (failed over again meanwhile)'} after 20 s (they saw: ${stale})`,
    );
  }
  return fault;
}

/** One sentinel's view of idem-ha (`SENTINEL MASTER`). */
const sentinelMaster = async (sentinel: number) => fieldsOf((await ask(sentinel, 'SENTINEL', 'MASTER', 'idem-ha')) as string[]);

/** [primary, replica] of the two nodes, once they agree: one says master, the other replicates from it, in sync. */
async function agreedPrimary(a: number, b: number): Promise<[number, number]> {
  let pair: [number, number] | undefined;
  await waitUntil(`nodes ${a} and ${b} agree which is the primary`, async () => {
    const [ia, ib] = await Promise.all([a, b].map(async (port) => String(await ask(port, 'INFO', 'replication'))));
    const leads = (mine: string, theirs: string, port: number) => /^role:master/m.test(mine) && new RegExp(`^master_port:${port}\\r?$`, 'm').test(theirs);
    pair = leads(ia!, ib!, a) ? [a, b] : leads(ib!, ia!, b) ? [b, a] : undefined;
    return pair !== undefined && (await synced(pair[1]));
  });
  return pair!;
}

/** Each sentinel forgets idem-ha and monitors it again at `primary`, with the quorum and timings the first one had. */
async function remonitor(primary: number): Promise<void> {
  if ((await infoField(primary, 'replication', 'role')) !== 'master') throw new Error(`re-monitoring: ${primary} is not the primary`);
  const had = await sentinelMaster(sentinelPorts()[0]!);
  const settings = ['down-after-milliseconds', 'failover-timeout', 'parallel-syncs'].flatMap((name) => [name, had[name]!]);
  for (const s of sentinelPorts()) {
    await ask(s, 'SENTINEL', 'REMOVE', 'idem-ha').catch((error: unknown) => {
      if (!/No such master/i.test(String((error as Error).message))) throw error; // already forgotten
    });
    await ask(s, 'SENTINEL', 'MONITOR', 'idem-ha', '127.0.0.1', primary, had.quorum!);
    await ask(s, 'SENTINEL', 'SET', 'idem-ha', ...settings);
  }
}

/** Every sentinel knows the two others: the quorum and the election of the next failover need them. */
async function sentinelsKnowEachOther(): Promise<boolean> {
  for (const s of sentinelPorts()) {
    if (Number((await sentinelMaster(s))['num-other-sentinels']) !== sentinelPorts().length - 1) return false;
  }
  return true;
}

// --- Cluster ----------------------------------------------------------------

let nextShard = 0;
/** Each node's own word on its role (gossip may lag right after a failover). */
async function clusterRoles(): Promise<Array<{ port: number; master: boolean; masterPort: number }>> {
  return Promise.all(
    haCluster!.map(async (a) => {
      const port = Number(a.split(':')[1]);
      const info = String(await ask(port, 'INFO', 'replication'));
      return { port, master: /^role:master/m.test(info), masterPort: Number(/^master_port:(\d+)/m.exec(info)?.[1] ?? 0) };
    }),
  );
}

async function clusterFailover(): Promise<number> {
  const roles = await clusterRoles();
  const masters = roles.filter((n) => n.master).sort((a, b) => a.port - b.port);
  const master = masters[nextShard++ % masters.length]!;
  const replica = roles.find((n) => !n.master && n.masterPort === master.port);
  if (!replica) throw new Error(`the master on ${master.port} has no replica`);
  await waitUntil('the replica is in sync before the failover', () => synced(replica.port));
  const thaw = await openLossWindow(master.port, replica.port);
  thaw();
  await ask(replica.port, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
  const fault = Date.now();
  await waitUntil(
    'the replica is master and the old master its synced replica',
    async () => (await infoField(replica.port, 'replication', 'role')) === 'master' && (await synced(master.port)),
  );
  await waitUntil('every node agrees', async () => {
    for (const n of await clusterRoles()) if (!/cluster_state:ok/.test(String(await ask(n.port, 'CLUSTER', 'INFO')))) return false;
    return true;
  });
  return fault;
}

// These run first, on the servers as the script started them (the failovers below swap roles).
describe.skipIf(!sentinelUrl || !haCluster)('replica acknowledgement on replicated servers', () => {
  const stores: IdempotencyStore[] = [];
  const clients: Array<{ disconnect(): void }> = [];
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    for (const c of clients) c.disconnect();
  });
  async function open(options: ValkeyStoreOptions): Promise<IdempotencyStore> {
    const store = await createValkeyStore(options);
    stores.push(store);
    return store;
  }
  it('Sentinel: a caller-owned Sentinel client; one round trip per claim and complete (the script and WAIT in one pipeline)', async () => {
    const { sentinels, name } = parseSentinelUrl(sentinelUrl!);
    const client = new Redis({ sentinels, name });
    client.on('error', () => undefined);
    clients.push(client);
    // Count what the store asks of the client: each call() or pipeline exec() is one round trip.
    let trips = 0;
    const counted: ValkeyClient = {
      call: (...args) => (trips++, client.call(...(args as [string]))),
      callBuffer: (...args) => (trips++, client.callBuffer(...(args as [string]))),
      quit: () => client.quit(),
      pipeline: () => {
        const p = client.pipeline();
        const exec = p.exec.bind(p);
        p.exec = (() => (trips++, exec())) as typeof p.exec;
        return p as unknown as ReturnType<NonNullable<ValkeyClient['pipeline']>>;
      },
    };
    const store = await open({ client: counted, prefix: freshPrefix(), minReplicas: 1, replicaTimeoutMs: 1000, timeoutMs: 4000 });
    await store.complete(leaseOf(await store.claim('warm-up'))); // scripts loaded
    trips = 0;
    const lease = leaseOf(await store.claim('rt'));
    expect(trips).toBe(1);
    expect((await store.claim('rt')).outcome).toBe('in_flight');
    expect(trips).toBe(2);
    await store.complete(lease, { result: 1 });
    expect(trips).toBe(3);
    expect((await store.get('rt'))?.status).toBe('succeeded');
  });

  it("Cluster: WAIT goes to the key's own master, next to its script; one WAIT per master for a tick's claims", async () => {
    const seeds = haCluster!.map((a) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) }));
    const prefix = freshPrefix();
    const store = await open({ cluster: seeds.map((s) => `${s.host}:${s.port}`), prefix, minReplicas: 1, replicaTimeoutMs: 1000, timeoutMs: 4000 });
    await store.claim('warm-up'); // slots discovered, scripts loaded where this key lives
    const cluster = new Cluster(seeds);
    clients.push(cluster);
    await new Promise((r) => cluster.once('ready', r));
    const masters = cluster.nodes('master');
    // Every master knows the claim script already: no NOSCRIPT (a second EVAL and WAIT) while watching.
    for (const m of masters) await m.call('SCRIPT', 'LOAD', CLAIM_LUA);
    const watches = await Promise.all(masters.map((m) => watchCommands(m.duplicate())));
    const keys = Array.from({ length: 12 }, (_, i) => `spread-${i}`);
    try {
      for (const k of keys) expect((await store.claim(k)).outcome).toBe('acquired');
      const seen = await Promise.all(watches.map((w) => w.count()));
      // Each master saw the claims of its own keys only, each as its script (EVALSHA or EVAL) then WAIT.
      const expected = await Promise.all(
        masters.map(async (m) => {
          let n = 0;
          for (const k of keys) {
            const slot = Number(await m.call('CLUSTER', 'KEYSLOT', `${prefix}{${storageName(k)}}`));
            const owner = (cluster.slots[slot] ?? [])[0];
            if (owner === `${m.options.host}:${m.options.port}`) n++;
          }
          return n;
        }),
      );
      seen.forEach((cmds, i) => {
        const scripts = cmds.filter((c) => c.startsWith('EVAL'));
        expect(scripts.length).toBe(expected[i]);
        expect(cmds.filter((c) => c === 'WAIT').length).toBe(expected[i]);
        cmds.forEach((c, j) => {
          if (c === 'WAIT') expect(cmds[j - 1]).toMatch(/^EVAL/);
        });
      });
      expect(expected.reduce((a, b) => a + b, 0)).toBe(keys.length);
    } finally {
      for (const w of watches) w.stop();
    }
    // Claims in one tick: each master gets its own keys' scripts, then one WAIT for them (not one each).
    const batch = Array.from({ length: 24 }, (_, i) => `batch-${i}`);
    const batchWatches = await Promise.all(masters.map((m) => watchCommands(m.duplicate())));
    try {
      expect((await Promise.all(batch.map((k) => store.claim(k)))).map((o) => o.outcome)).toEqual(batch.map(() => 'acquired'));
      const seen = await Promise.all(batchWatches.map((w) => w.count()));
      const scripts = seen.map((cmds) => cmds.filter((c) => c.startsWith('EVAL')).length);
      expect(scripts.reduce((a, b) => a + b, 0)).toBe(batch.length);
      seen.forEach((cmds, i) => {
        const waits = cmds.filter((c) => c === 'WAIT').length;
        expect(waits).toBeGreaterThan(0);
        expect(waits).toBeLessThan(scripts[i]!);
        cmds.forEach((c, j) => {
          if (c === 'WAIT') expect(cmds[j - 1]).toMatch(/^EVAL/);
        });
      });
    } finally {
      for (const w of batchWatches) w.stop();
    }
    // Two replicas are asked of masters that have one: refused in time, retryable.
    const greedy = await open({ cluster: seeds.map((s) => `${s.host}:${s.port}`), prefix, minReplicas: 2, replicaTimeoutMs: 100, timeoutMs: 1000 });
    expect(await codeOf(greedy.claim('two-replicas'))).toBe('BACKEND_UNAVAILABLE');
  });
});

const report: Record<string, Figures> = {};
afterAll(() => {
  // The figures the README quotes: printed on every run, asserted only where the setting promises.
  if (Object.keys(report).length) console.log(`valkey failover figures:\n${JSON.stringify(report, null, 1)}`);
});

const ack = { minReplicas: 1, replicaTimeoutMs: 300 };

/** What minReplicas guarantees across the failovers: every one happened, nothing acknowledged was lost. */
function expectNoLoss(figures: Figures): void {
  expect(figures.failovers).toBe(FAILOVERS);
  expect(figures.doubleExecutions).toBe(0);
  expect(figures.forgottenCompletions).toBe(0);
  expect(figures.completionsAcknowledged).toBeGreaterThan(0);
}

describe.skipIf(!sentinelUrl)('failover under load: primary + replica behind three sentinels', () => {
  const { sentinels, name } = sentinelUrl ? parseSentinelUrl(sentinelUrl) : { sentinels: [], name: '' };

  it('with minReplicas=1: no double execution and no forgotten completion across the failovers', async () => {
    // Two workers open the store from the URL (replica settings in its query), one from its own Sentinel client.
    const figures = await underLoad(
      { url: `${sentinelUrl}?minReplicas=1&replicaTimeoutMs=${ack.replicaTimeoutMs}`, timeoutMs: 2000, userSentinelClient: { sentinels, name }, ...ack },
      sentinelFailover,
      { url: sentinelUrl! },
    );
    report['sentinel, minReplicas=1'] = figures;
    expectNoLoss(figures);
  }, 600_000);

  it('without the option: the same load and failovers, losses counted and reported', async () => {
    const figures = await underLoad({ url: sentinelUrl!, timeoutMs: 2000, userSentinelClient: { sentinels, name } }, sentinelFailover, { url: sentinelUrl! });
    report['sentinel, no replica acknowledgement'] = figures;
    expect(figures.failovers).toBe(FAILOVERS);
  }, 600_000);
});

describe.skipIf(!haCluster)('failover under load: cluster with one replica per master', () => {
  it('with minReplicas=1: no double execution and no forgotten completion across the failovers', async () => {
    const figures = await underLoad({ cluster: haCluster!, timeoutMs: 2000, ...ack }, clusterFailover, { cluster: haCluster! });
    report['cluster, minReplicas=1'] = figures;
    expectNoLoss(figures);
  }, 600_000);

  it('without the option: the same load and failovers, losses counted and reported', async () => {
    const figures = await underLoad({ cluster: haCluster!, timeoutMs: 2000 }, clusterFailover, { cluster: haCluster! });
    report['cluster, no replica acknowledgement'] = figures;
    expect(figures.failovers).toBe(FAILOVERS);
  }, 600_000);
});
