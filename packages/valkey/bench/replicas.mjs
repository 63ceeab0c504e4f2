// The replica option (minReplicas) measured: claims and first executions on a primary with a replica
// (Sentinel-managed when IDEM_TEST_REDIS_SENTINEL is set)
// with `minReplicas: 1` (script + WAIT in one pipeline) against the same primary without it, and a
// standalone server as the baseline; one run, rounds interleaved with the order rotated.
import { Redis } from 'ioredis';
import { runOnce } from '@idem/core';
import { createValkeyStore } from '@idem/valkey';
import { measure, rotate, summarise, table, unlinkMatching } from './harness.mjs';

/** An ioredis client on the primary: a plain URL, or the one a `redis+sentinel://[user:pass@]h:p,h:p/name` URL names. */
function primaryClient(ha) {
  if (/^(redis|valkey):\/\//i.test(ha)) return new Redis(ha.replace(/^valkey:/i, 'redis:'));
  const m = /^(?:redis|valkey)\+sentinel:\/\/(?:([^@/]*)@)?([^/?]+)\/([^/?]+)/i.exec(ha);
  if (!m) throw new Error('IDEM_TEST_REDIS_SENTINEL is not a redis+sentinel:// URL'); // the URL itself is not quoted: it may hold a password
  const [user, password] = m[1] ? m[1].split(':').map(decodeURIComponent) : [];
  const sentinels = m[2].split(',').map((hp) => ({ host: hp.slice(0, hp.lastIndexOf(':')), port: Number(hp.slice(hp.lastIndexOf(':') + 1)) }));
  return new Redis({ sentinels, name: decodeURIComponent(m[3]), ...(user ? { username: user } : {}), ...(password ? { password } : {}) });
}

export async function replicaBench({ url, ha, haLabel, durable, base, rounds, ops, ops1 }) {
  const prefix = `${base}ha:`;
  const closers = [];
  const primary = primaryClient(ha);
  const standalone = new Redis(url);
  closers.push(async () => {
    await unlinkMatching(primary, `${base}*`);
    primary.disconnect();
    standalone.disconnect();
  });
  try {
    const replicas = Number(/connected_slaves:(\d+)/.exec(await primary.info('replication'))?.[1] ?? 0);
    const open = async (name, options) => {
      const store = await createValkeyStore({ prefix: `${prefix}${name.replace(/\W+/g, '-')}:`, ...options });
      closers.push(() => store.close());
      return store;
    };
    const noop = async () => ({ ok: true });
    const variants = [];
    // fsync (WAITAOF 1 1 instead of WAIT 1) on a primary and replica of the bench's own with
    // appendfsync always, against minReplicas alone on the same pair: what the disk wait costs.
    // Refused on a server without WAITAOF (Redis 7.0): those rows are then left out, and said so.
    // A replica reports its fsynced offset when asked or once a second: WAITAOF can wait that long,
    // so both rows get 2.5 s for the replica (the default 1 s falls short on a loaded machine).
    const durableRows = [
      ['AOF always primary, minReplicas: 1 + fsync', { url: durable, minReplicas: 1, fsync: true, replicaTimeoutMs: 2500 }],
      ['AOF always primary, minReplicas: 1', { url: durable, minReplicas: 1, replicaTimeoutMs: 2500 }],
    ];
    for (const [label, options] of [
      [`${haLabel}, minReplicas: 1`, { url: ha, minReplicas: 1 }],
      [`${haLabel}, no replica ack`, { url: ha }],
      ['standalone server (baseline)', { url }],
      ...(durable ? durableRows : []),
    ]) {
      if (options.fsync) {
        const refused = await createValkeyStore({ ...options, prefix: `${prefix}probe:` }).then(
          (store) => store.close(),
          (error) => error,
        );
        if (refused?.code === 'UNSAFE_BACKEND') {
          console.log(`\n  ${label}: not measured, fsync refused here (${refused.message})`);
          continue;
        }
        if (refused) throw refused;
      }
      const claimStore = await open(`claim ${label}`, options);
      // A row that waits for a disk on every round trip gets fewer calls (a few per second at 1 in flight).
      const slow = options.fsync === true;
      variants.push({ name: `claim, ${label}`, kind: 'claim', slow, op: async (key) => (await claimStore.claim(key)).outcome });
      const runStore = await open(`run ${label}`, options);
      variants.push({ name: `runOnce, ${label}`, kind: 'run', slow, op: async (key) => (await runOnce(runStore, key, noop)).status });
    }
    const passes = [
      { id: 1, inFlight: 1, ops: ops1 },
      { id: 64, inFlight: 64, ops },
    ];
    const opsOf = (v, p) => (v.slow ? Math.min(p.ops, p.inFlight === 1 ? 16 : 256) : p.ops);
    for (const v of variants) await measure(standalone, (i) => v.op(`warm-${i}`), { ops: Math.min(ops, v.slow ? 128 : 500), inFlight: 64 }); // connections, scripts, JIT
    const runs = new Map();
    for (let r = 0; r < rounds; r++) {
      for (const p of passes) {
        for (const v of rotate(variants, r)) {
          // Server figures come from the standalone server, which only the baseline uses: not shown.
          const n = opsOf(v, p);
          const m = await measure(standalone, (i) => v.op(`r${r}:${p.id}:${i}`), { ops: n, inFlight: p.inFlight });
          const expected = v.kind === 'claim' ? 'acquired' : 'executed';
          if (m.statuses[expected] !== n) throw new Error(`broken scenario: ${v.name} got ${JSON.stringify(m.statuses)} on ${n} new keys`);
          const key = `${p.id}\0${v.name}`;
          runs.set(key, [...(runs.get(key) ?? []), m]);
        }
      }
    }
    const out = { replicasConnected: replicas };
    for (const p of passes) {
      for (const kind of ['claim', 'run']) {
        const rows = variants.filter((v) => v.kind === kind).map((v) => ({ name: v.name, m: summarise(runs.get(`${p.id}\0${v.name}`)) }));
        const without = rows.find((x) => x.name.includes('no replica ack'));
        table(
          `Replica option (minReplicas): ${kind === 'claim' ? 'claim alone' : 'runOnce first execution'}, ${p.inFlight} in flight (the ${haLabel} has ${replicas} replica${replicas === 1 ? '' : 's'})`,
          rows,
          { floor: without, floorLabel: 'x no ack', cpu: false },
        );
        out[`${kind}${p.id}`] = Object.fromEntries(
          rows.map((x) => [
            x.name,
            { rate: Math.round(x.m.rate), p50: Math.round(x.m.p50), p99: Math.round(x.m.p99), client: Number(x.m.client.toFixed(1)), rounds: x.m.rounds },
          ]),
        );
      }
    }
    return out;
  } finally {
    for (const c of closers.reverse()) await c();
  }
}
