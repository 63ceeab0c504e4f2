// LMDB bench: the adapter against raw lmdb-js on the same disk, in one run.
// Prints ratios; never asserts (speed is measured here, not in tests).
//   node bench/bench.mjs [--quick] [--rounds=N]      (pnpm --filter @idem/lmdb bench)
// Only ratios within one run mean anything on a shared machine: compare those.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { serializeRecord, storageName } from '@idem/core/adapter';
import { createLmdbStore } from '@idem/lmdb';

const quick = process.argv.includes('--quick');
const BIG = quick ? 100_000 : 1_000_000;
const dirs = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'idem-bench-'));
  dirs.push(d);
  return d;
};
const record = (k) =>
  Buffer.from(
    serializeRecord({
      v: 1,
      key: k,
      status: 'in_flight',
      runId: crypto.randomUUID(),
      fence: 1,
      attempt: 1,
      claimedAt: Date.now(),
      leaseExpiresAt: Date.now() + 300_000,
    }),
  );

/** ops/s of `op(i)` for `total` distinct i with `inFlight` concurrent callers. */
async function throughput(op, inFlight, total) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await op(next++);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/** Median and p99 latency (ms) of `n` sequential calls. */
async function latency(op, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op(i);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(n / 2)], p99: times[Math.floor(n * 0.99)] };
}

function rawStore() {
  // Same environment options as the adapter (overlappingSync off: see src/index.ts).
  const env = open({ path: join(tmp(), 'raw.mdb'), overlappingSync: false });
  const db = env.openDB({ name: 'records', encoding: 'binary' });
  // The raw primitive at the same durability as the adapter's default: conditional put, then wait for the flush.
  // Same storage names as the adapter (sha256 of the key, which docs/semantics.md requires): random names dirty
  // more B-tree pages per commit than sequential ones, and that cost belongs to both sides.
  const claim = async (k) => {
    const name = storageName(k);
    await db.ifNoExists(name, () => db.put(name, record(k)));
    await env.flushed;
  };
  return { env, db, claim };
}

async function prefill(db, n) {
  for (let start = 0; start < n; start += 20_000) {
    db.transactionSync(() => {
      for (let i = start; i < Math.min(n, start + 20_000); i++) db.putSync(`fill-${i}`, record(`fill-${i}`));
    });
  }
}

const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ROUNDS = Math.max(3, Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice(9) ?? 5));
console.log(
  `lmdb bench (node ${process.version}${quick ? ', --quick' : ''}, ${ROUNDS} rounds, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')})`,
);

// The two sides of every comparison, each on a fresh store per round: the adapter's
// durable claim and the raw conditional put (same lmdb-js, same flush, same file options).
const sides = {
  idem: async () => {
    const store = await createLmdbStore({ path: tmp() });
    return { claim: (k) => store.claim(k), close: () => store.close() };
  },
  raw: async () => {
    const raw = rawStore();
    return { claim: raw.claim, close: () => raw.env.close() };
  },
};

/**
 * One run, rounds interleaved: each round measures both sides back to back, the
 * order rotated every round so that neither always runs first (a warmer cache, a
 * quieter moment). Returns the median of each side and of the per-round ratios.
 */
async function paired(measure) {
  const results = { idem: [], raw: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['idem', 'raw'] : ['raw', 'idem'];
    for (const side of order) {
      const s = await sides[side]();
      try {
        for (let i = 0; i < 20; i++) await s.claim(`warm-${i}`); // the first writes grow the file
        results[side].push(await measure(s));
      } finally {
        await s.close();
      }
    }
  }
  const ratios = results.idem.map((x, i) => x / results.raw[i]);
  return { idem: median(results.idem), raw: median(results.raw), ratio: median(ratios), ratios };
}

// 1. Durable claims/s, idem / raw, at 1 and 64 in flight (the speed goals).
for (const [inFlight, total, goal] of [
  [1, quick ? 300 : 1_000, 0.6],
  [64, quick ? 5_000 : 20_000, 0.5],
]) {
  const r = await paired((s) => throughput((i) => s.claim(`k-${i}`), inFlight, total));
  console.log(
    `durable claims/s, ${String(inFlight).padStart(2)} in flight, idem / raw: ${r.ratio.toFixed(2)} (goal >= ${goal}: ${r.ratio >= goal ? 'met' : 'NOT met'};` +
      ` rounds ${r.ratios.map((x) => x.toFixed(2)).join(' ')}; medians idem ${fmt(r.idem)}/s, raw ifNoExists+put+flush ${fmt(r.raw)}/s)`,
  );
}

// 2. One uncontended claim, p50: the adapter (a write turn, i.e. the socket lock on Linux, plus one LMDB transaction) vs the raw conditional put.
{
  const r = await paired(async (s) => (await latency((i) => s.claim(`c-${i}`), quick ? 150 : 300)).p50);
  console.log(
    `uncontended claim p50, raw / idem: ${(1 / r.ratio).toFixed(2)} (rounds ${r.ratios.map((x) => (1 / x).toFixed(2)).join(' ')}; medians idem ${fmt(r.idem)} ms, raw ${fmt(r.raw)} ms)`,
  );
}

// 3. Claim latency with 10^3 and 10^6 records stored.
const lat = {};
for (const n of [1_000, BIG]) {
  const dir = tmp();
  const env = open({ path: join(dir, 'idem.mdb') });
  await env.openDB({ name: 'meta' }).put('schema', 1); // the stamp of a store idem made; unstamped files are refused
  await prefill(env.openDB({ name: 'records', encoding: 'binary' }), n);
  await env.close();
  const store = await createLmdbStore({ path: dir });
  await latency((i) => store.claim(`warm-${i}`), 100);
  lat[n] = await latency((i) => store.claim(`lat-${i}`), 1_000);
  await store.close();
  console.log(`claim latency with ${n.toLocaleString('en')} records: p50 ${fmt(lat[n].p50)} ms, p99 ${fmt(lat[n].p99)} ms`);
}
console.log(`latency ratio ${BIG.toLocaleString('en')}/1,000 records (p50): ${(lat[BIG].p50 / lat[1_000].p50).toFixed(2)} (goal <= 1.2)`);
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);

for (const d of dirs) rmSync(d, { recursive: true, force: true });
