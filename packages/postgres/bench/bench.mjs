// PostgreSQL bench: the adapter against the raw statements on the same server, in one run.
// Prints ratios; never asserts (speed is measured here, not in tests).
//   IDEM_TEST_POSTGRES_URL=postgres://… node bench/bench.mjs [--quick]   (pnpm --filter @idem/postgres bench)
// Only ratios within one run mean anything on a shared machine: compare those.
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { serializeRecord, storageName } from '@idem/core/adapter';
import { createPostgresStore } from '@idem/postgres';
import pg from 'pg';

const url = process.env.IDEM_TEST_POSTGRES_URL ?? process.argv.find((a) => /^postgres(ql)?:/.test(a));
if (!url) throw new Error('set IDEM_TEST_POSTGRES_URL (bash scripts/servers/postgres.sh start <dir> prints it)');
const quick = process.argv.includes('--quick');
// Short measures, many rounds: on a shared machine the load drifts within seconds, and a ratio is
// only as good as the two measures it divides being taken under the same load.
const OPS = quick ? 400 : 1000;
const ROUNDS = quick ? 3 : 9;
const table = `bench_${process.pid}`;
const raw = `bench_raw_${process.pid}`;

const pool = new pg.Pool({ connectionString: url, max: 64 });
await pool.query(`CREATE TABLE ${raw} (name text COLLATE "C" PRIMARY KEY, body bytea NOT NULL)`);
const store = await createPostgresStore({ url, table, createSchema: true, poolSize: 64 });

/** The same record bytes the adapter writes, for the raw statements. */
const body = (k) =>
  Buffer.from(
    serializeRecord({
      v: 1,
      key: k,
      status: 'in_flight',
      runId: randomUUID(),
      fence: 1,
      attempt: 1,
      claimedAt: Date.now(),
      leaseExpiresAt: Date.now() + 300_000,
    }),
  );

/** ops/s of `op(i)` for OPS distinct i with `inFlight` concurrent callers. */
async function throughput(op, inFlight) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < OPS) await op(next++);
    }),
  );
  return OPS / ((performance.now() - t0) / 1000);
}

let run = 0;
const cases = {
  claim: {
    raw: async () => {
      const tag = `r${run++}`;
      return (i) =>
        pool.query({
          text: `INSERT INTO ${raw} (name, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
          values: [storageName(`${tag}-${i}`), body(`${tag}-${i}`)],
        });
    },
    idem: async () => {
      const tag = `s${run++}`;
      return (i) => store.claim(`${tag}-${i}`, { leaseMs: 300_000 });
    },
  },
  'claim + complete': {
    raw: async () => {
      const tag = `r${run++}`;
      return async (i) => {
        const name = storageName(`${tag}-${i}`);
        const b = body(`${tag}-${i}`);
        await pool.query({ text: `INSERT INTO ${raw} (name, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`, values: [name, b] });
        await pool.query({ text: `UPDATE ${raw} SET body = $2 WHERE name = $1 AND body = $3`, values: [name, body(`${tag}-${i}`), b] });
      };
    },
    idem: async () => {
      const tag = `s${run++}`;
      return async (i) => {
        const c = await store.claim(`${tag}-${i}`, { leaseMs: 300_000 });
        await store.complete(c.lease, { result: i });
      };
    },
  },
};

console.log(`PostgreSQL bench: ${OPS} ops per measure, ${ROUNDS} rounds, load ${loadavg()[0].toFixed(2)}`);
console.log('| operation | in flight | raw ops/s (best) | idem ops/s (best) | idem / raw (median) | middle half of the ratios |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [name, c] of Object.entries(cases)) {
  for (const inFlight of [1, 64]) {
    const ratios = [];
    let rawBest = 0;
    let idemBest = 0;
    for (let r = 0; r < ROUNDS; r++) {
      // Alternated, each side first in every other round, so that a slow moment of the machine falls on both sides.
      const rawFirst = r % 2 === 0;
      const first = await throughput(await (rawFirst ? c.raw : c.idem)(), inFlight);
      const second = await throughput(await (rawFirst ? c.idem : c.raw)(), inFlight);
      const [a, b] = rawFirst ? [first, second] : [second, first];
      rawBest = Math.max(rawBest, a);
      idemBest = Math.max(idemBest, b);
      ratios.push(b / a);
    }
    ratios.sort((x, y) => x - y);
    const at = (q) => ratios[Math.floor((ratios.length - 1) * q)].toFixed(2);
    console.log(`| ${name} | ${inFlight} | ${Math.round(rawBest)} | ${Math.round(idemBest)} | ${at(0.5)} | ${at(0.25)}–${at(0.75)} |`);
  }
}
console.log(`load at the end ${loadavg()[0].toFixed(2)}`);
await pool.query(`DROP TABLE ${raw}`);
await pool.query(`DROP TABLE ${table}`);
await store.close();
await pool.end();
