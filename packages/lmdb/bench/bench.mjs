// LMDB bench: the adapter against raw lmdb-js on the same disk, in one run.
// Prints ratios; never asserts (speed is measured here, not in tests).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  Buffer.from(serializeRecord({ v: 1, key: k, status: 'in_flight', runId: crypto.randomUUID(), fence: 1, attempt: 1, claimedAt: Date.now(), leaseExpiresAt: Date.now() + 300_000 }));

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
console.log(`lmdb bench (node ${process.version}${quick ? ', --quick' : ''})`);

// 1. Throughput at 1 and 64 claims in flight, adapter vs raw conditional put.
for (const [inFlight, total] of [
  [1, 1_000],
  [64, 20_000],
]) {
  const raw = rawStore();
  const rawOps = await throughput((i) => raw.claim(`k-${i}`), inFlight, total);
  await raw.env.close();
  const store = await createLmdbStore({ path: tmp() });
  const idemOps = await throughput((i) => store.claim(`k-${i}`), inFlight, total);
  await store.close();
  console.log(`durable claims, ${String(inFlight).padStart(2)} in flight: idem ${fmt(idemOps)}/s, raw ifNoExists+put ${fmt(rawOps)}/s, ratio ${(idemOps / rawOps).toFixed(2)} (goal >= 0.5 at 64)`);
}

// 2. One uncontended claim: the adapter (a write turn, i.e. the socket lock on Linux, plus one LMDB transaction) vs the raw conditional put.
{
  const raw = rawStore();
  const r = await latency((i) => raw.claim(`r-${i}`), 300);
  await raw.env.close();
  const store = await createLmdbStore({ path: tmp() });
  const c = await latency((i) => store.claim(`c-${i}`), 300);
  await store.close();
  console.log(`uncontended claim p50: idem ${fmt(c.p50)} ms (write turn + transaction) vs raw ${fmt(r.p50)} ms (x${(c.p50 / r.p50).toFixed(2)}); at 64 in flight the claims share turns (ratio above)`);
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

for (const d of dirs) rmSync(d, { recursive: true, force: true });
