// What is particular to PostgreSQL, against the real server: the server's clock, the schema and its
// identifiers, bind parameters only (SQL-shaped input), list and sweep in SQL, and the faults.
import { readFileSync } from 'node:fs';
import { BAD_KEYS, GOOD_KEYS } from '@idem/conformance';
import { expectCode, expectLease, sleep } from '@idem/conformance/testing';
import { storageName } from '@idem/core';
import pg from 'pg';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createPostgresStore, createSchema, schemaSql, type PgClient, type PgPool } from '../src/index.js';
import { findPostgres, freshTable } from './server.js';

const url = await findPostgres();
const pools: pg.Pool[] = [];
const admin = () => {
  const pool = new pg.Pool({ connectionString: url!, max: 4 });
  pools.push(pool);
  return pool;
};
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
});

const open = (options: Record<string, unknown> = {}) => createPostgresStore({ url: url!, table: freshTable(), createSchema: true, ...options });

describe.skipIf(!url)('postgres: the server clock', () => {
  it('a client clock an hour fast or slow neither takes a live lease over nor keeps a dead one', async () => {
    const table = freshTable();
    const honest = await open({ table });
    const k = 'clock-skewed';
    const lease = expectLease(await honest.claim(k, { leaseMs: 60_000 }));
    for (const offset of [3600_000, -3600_000]) {
      const now = Date.now;
      const spy = vi.spyOn(Date, 'now').mockImplementation(() => now.call(Date) + offset);
      try {
        // A store opened with the wrong clock (and an injected clock as wrong): the server judges.
        const skewed = await open({ table, clock: () => now.call(Date) + offset });
        expect((await skewed.claim(k, { leaseMs: 60_000 })).outcome).toBe('in_flight');
        const fresh = expectLease(await skewed.claim(`${k}-${offset}`, { leaseMs: 60_000 }));
        // Its claim is stamped with the server's time, not this process's.
        expect(Math.abs(fresh.record.claimedAt - now.call(Date))).toBeLessThan(600_000);
        await skewed.complete(fresh, { result: 1 });
        expect(await skewed.get(`${k}-${offset}`)).toMatchObject({ status: 'succeeded' });
        await skewed.close();
      } finally {
        spy.mockRestore();
      }
    }
    await honest.complete(lease);
    await honest.close();
  });
});

describe('postgres: the README', () => {
  it('prints the SQL createSchema runs', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`\`\`sql\n${schemaSql()}\`\`\``);
  });
});

describe.skipIf(!url)('postgres: schema and identifiers', () => {
  it('refuses bad schema and table names, and a missing source, before any connection', async () => {
    const connect = vi.fn(async () => {
      throw new Error('no I/O expected');
    });
    const pool = { connect, end: async () => {} } as unknown as PgPool;
    for (const name of ['', 'Records', '1abc', 'a-b', 'a"b', 'x; DROP TABLE y', 'a'.repeat(64), 'é', 'a b']) {
      await expectCode(createPostgresStore({ pool, table: name }), 'INVALID_ARGUMENT');
      await expectCode(createPostgresStore({ pool, schema: name }), 'INVALID_ARGUMENT');
    }
    await expectCode(createPostgresStore({} as never), 'INVALID_ARGUMENT');
    await expectCode(createPostgresStore({ pool, url: url! }), 'INVALID_ARGUMENT');
    await expectCode(createPostgresStore({ pool, timeoutMs: 0 }), 'INVALID_ARGUMENT');
    expect(() => schemaSql({ table: 'x"; DROP' })).toThrow(/identifier/);
    expect(connect).not.toHaveBeenCalled();
  });

  it('createSchema is idempotent, in another schema too; a missing table is BACKEND_REFUSED naming it', async () => {
    const table = freshTable();
    const schema = `s_${table}`;
    await Promise.all([createSchema({ url: url!, schema, table }), createSchema({ url: url!, schema, table })]);
    await createSchema({ url: url!, schema, table });
    const store = await createPostgresStore({ url: url!, schema, table });
    expect((await store.claim('k')).outcome).toBe('acquired');
    await store.close();
    const missing = await createPostgresStore({ url: url!, table: freshTable() });
    const err = await expectCode(missing.claim('k'), 'BACKEND_REFUSED');
    expect(err.message).toMatch(/does not exist/);
    await missing.close();
  });

  it('an authentication failure is BACKEND_REFUSED and shows no password', async () => {
    const wrong = new URL(url!);
    wrong.password = 'not-the-Pa55word';
    const store = await createPostgresStore({ url: wrong.href, table: freshTable() });
    const err = await expectCode(store.claim('k'), 'BACKEND_REFUSED');
    expect(`${err.message} ${String(err.cause)}`).not.toContain('not-the-Pa55word');
    expect(err.message).not.toContain(new URL(url!).password);
    await store.close();
  });
});

/** A label value from a key: its first 40 code points (label values are at most 256 bytes). */
const shape = (key: string) => [...key].slice(0, 40).join('');

/** SQL in every place a caller's text goes: keys, run ids, labels, results, errors. */
const SQL_SHAPED = [
  "'; DROP TABLE canary; --",
  "' OR '1'='1",
  '"; DELETE FROM canary; --',
  '$1',
  '$$; DROP TABLE canary; $$',
  "\\'; SELECT pg_sleep(10); --",
  "k') ON CONFLICT DO NOTHING; DELETE FROM canary; --",
  "E'\\x00'",
  '%s%s%s%n',
  '\u0000nul',
  '😀\u{10ffff}',
];

describe.skipIf(!url)('postgres: bind parameters only', () => {
  it('SQL-shaped and bad keys, labels, run ids and results: nothing executed, nothing aliased', async () => {
    const db = admin();
    const canary = `canary_${freshTable()}`;
    await db.query(`CREATE TABLE ${canary} (x int)`);
    await db.query(`INSERT INTO ${canary} VALUES (1), (2)`);
    const store = await open();
    for (const [, key] of BAD_KEYS) await expectCode(store.claim(key as string), 'INVALID_KEY');
    const keys = [...new Set([...SQL_SHAPED, ...SQL_SHAPED.map((s) => s.replaceAll('canary', canary)), ...GOOD_KEYS.map(([, k]) => k)])];
    for (const [i, key] of keys.entries()) {
      const lease = expectLease(
        await store.claim(key, { runId: `run-${i}-${SQL_SHAPED[i % SQL_SHAPED.length]}`, labels: { shape: shape(key), n: String(i) } }),
      );
      await store.complete(lease, { result: { sql: key } });
    }
    for (const [i, key] of keys.entries()) {
      // Each key is its own record: its exact text, result and labels back.
      expect(await store.get(key)).toMatchObject({ key, status: 'succeeded', result: { sql: key }, labels: { n: String(i) } });
      const found = await store.list({ labels: { shape: shape(key), n: String(i) } });
      expect(found.records.map((r) => r.key)).toEqual([key]);
    }
    // A label value that is SQL matches only itself.
    expect((await store.list({ labels: { shape: "' OR '1'='1" } })).records).toHaveLength(1);
    expect((await store.list({ labels: { shape: "x' OR 'x'='x" } })).records).toHaveLength(0);
    expect((await db.query(`SELECT count(*)::int AS n FROM ${canary}`)).rows[0].n).toBe(2);
    await store.close();
  });
});

describe.skipIf(!url)('postgres: list and sweep in SQL', () => {
  it('sweeps expired records and dead leases in batches, pages with a keyset cursor, filters labels in SQL', async () => {
    const table = freshTable();
    const store = await open({ table });
    const n = 1100; // more than two sweep batches and list queries
    const keys = Array.from({ length: n }, (_, i) => `bulk-${i}`);
    for (let i = 0; i < n; i += 64) {
      await Promise.all(
        keys.slice(i, i + 64).map(async (k, j) => {
          const lease = expectLease(await store.claim(k, { leaseMs: 200, labels: { half: String((i + j) % 2) } }));
          if ((i + j) % 3 === 0) await store.complete(lease, {});
        }),
      );
    }
    const seen = new Set<string>();
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.list({ limit: 300, labels: { half: '1' }, ...(cursor ? { cursor } : {}) });
      for (const r of page.records) seen.add(r.key);
      cursor = page.cursor;
      pages++;
    } while (cursor !== undefined);
    expect(seen.size).toBe(n / 2);
    expect(pages).toBeGreaterThanOrEqual(2);
    // The statements run through the indexes (sequential scans off: the table is small).
    const db = admin();
    const c = await db.connect();
    try {
      await c.query('SET enable_seqscan = off');
      const plan = async (sql: string) => (await c.query(`EXPLAIN ${sql}`)).rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(await plan(`SELECT name FROM ${table} WHERE labels @> '{"half":"1"}'::jsonb`)).toContain(`${table}_labels`);
      expect(await plan(`SELECT name FROM ${table} WHERE sweep_at <= 0 ORDER BY sweep_at LIMIT 500`)).toContain(`${table}_sweep_at`);
    } finally {
      c.release();
    }
    // Retention of completed records is a day: only the dead leases go, all of them.
    let dead = 0;
    for (let i = 0; i < n; i++) if (i % 3 !== 0) dead++;
    await sleep(300); // every 200 ms lease has now run out, by any clock on this machine
    const counts = await store.sweep();
    expect(counts).toEqual({ expired: 0, deadLeases: dead });
    expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
    const left = await admin().query(`SELECT count(*)::int AS n FROM ${table}`);
    expect(left.rows[0].n).toBe(n - dead);
    await store.close();
  });
});

/** A pool whose clients fail one statement at an exact instant: a real server cannot be made to (see each test). */
function faultyPool(inner: pg.Pool, fault: (text: string) => 'after' | 'before' | undefined): PgPool {
  return {
    end: () => inner.end(),
    async connect() {
      const client = await inner.connect();
      const wrapped: PgClient = {
        release: (e) => client.release(e),
        async query(config) {
          const when = fault(config.text);
          if (when === 'before') throw Object.assign(new Error('Connection terminated unexpectedly (test fault, before sending)'), {});
          const result = await client.query(config);
          if (when === 'after') throw new Error('Connection terminated unexpectedly (test fault, answer lost)');
          return result as never;
        },
      };
      return wrapped;
    },
  };
}

describe.skipIf(!url)('postgres: round trips', () => {
  it('an uncontended claim, renew and complete are one statement each', async () => {
    const table = freshTable();
    await createSchema({ url: url!, table });
    const sent: string[] = [];
    const store = await createPostgresStore({ pool: faultyPool(admin(), (text) => void sent.push(text)), table });
    const lease = expectLease(await store.claim('rt'));
    const renewed = await store.renew(lease, 60_000);
    await store.complete(renewed, { result: 1 });
    expect(sent).toHaveLength(3);
    expect((await store.claim('rt')).outcome).toBe('completed');
  });
});

describe.skipIf(!url)('postgres: faults', () => {
  it('an unreachable server, or one that never answers, is BACKEND_UNAVAILABLE', async () => {
    const refused = await createPostgresStore({ url: 'postgres://u:p@127.0.0.1:1/db', timeoutMs: 2000 });
    await expectCode(refused.claim('k'), 'BACKEND_UNAVAILABLE');
    await refused.close();
    const { createServer } = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = createServer((s) => sockets.push(s)); // accepts and says nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    const hung = await createPostgresStore({ url: `postgres://u:p@127.0.0.1:${port}/db`, timeoutMs: 300 });
    // Without the store's deadline this claim would wait forever: its rejection is the proof.
    await expectCode(hung.claim('k'), 'BACKEND_UNAVAILABLE');
    for (const s of sockets) s.destroy();
    silent.close();
    await hung.close();
  });

  it('an exhausted pool is BACKEND_UNAVAILABLE at timeoutMs, and works again once a connection is free', async () => {
    const pool = new pg.Pool({ connectionString: url!, max: 1 });
    pools.push(pool);
    const table = freshTable();
    await createSchema({ pool, table });
    const store = await createPostgresStore({ pool, table, timeoutMs: 300 });
    const held = await pool.connect();
    await expectCode(store.claim('k'), 'BACKEND_UNAVAILABLE');
    held.release();
    expect((await store.claim('k')).outcome).toBe('acquired');
    await store.close();
  });

  it('an ambiguous INSERT, UPDATE or COMMIT is resolved: landed writes are recognised, lost ones retried', async () => {
    const table = freshTable();
    await createSchema({ url: url!, table });
    for (const when of ['after', 'before'] as const) {
      // Mocked: the connection dropping exactly after (or before) one statement is sent.
      let armed = 0;
      let target = /^$/;
      const pool = faultyPool(admin(), (text) => (armed > 0 && target.test(text) && armed-- > 0 ? when : undefined));
      const store = await createPostgresStore({ pool, table });
      const strike = async <T>(statement: RegExp, op: () => Promise<T>): Promise<T> => {
        target = statement;
        armed = 1;
        const value = await op();
        expect(armed).toBe(0);
        return value;
      };
      const k = `amb-${when}`;
      // The fresh claim's INSERT, then the finish's conditional UPDATE (one round trip each).
      const lease = expectLease(await strike(/INSERT INTO/, () => store.claim(k)));
      const renewed = await strike(/^UPDATE .* RETURNING/s, () => store.renew(lease, 60_000));
      expect(renewed).toMatchObject({ fence: lease.fence, runId: lease.runId });
      // A takeover goes through the transaction: its COMMIT.
      const adopted = await strike(/^COMMIT$/, () => store.claim(k, { force: true }));
      expect(adopted.outcome).toBe('adopted');
      const done = await strike(/^UPDATE .* RETURNING/s, () => store.complete(expectLease(adopted), { result: when }));
      expect(done).toMatchObject({ status: 'succeeded', result: when, fence: lease.fence + 1 });
      expect(await store.get(k)).toEqual(done);
      await expectCode(store.complete(renewed), 'LEASE_LOST');
    }
  });
});

describe.skipIf(!url)('postgres: store URL', () => {
  it('one grammar: postgres:// and postgresql:// with schema, table and create_schema open the same store', async () => {
    const { parse, redact } = await import('../src/url.js');
    const table = freshTable();
    expect(parse(`${url}?table=${table}&create_schema=true`)).toMatchObject({ table, createSchema: true });
    expect(redact('postgres://u:secret@h:5432/db?table=t')).toBe('postgres://***@h:5432/db?table=t');
    for (const bad of [
      'postgres://',
      'postgres:/h/db',
      'postgres://h/db?x=1',
      'postgres://h/a/b',
      'postgres://h/db#f',
      'postgres://h/db?sslmode=maybe',
      'postgres://h/db?create_schema=maybe',
    ]) {
      expect(() => parse(bad)).toThrow(expect.objectContaining({ code: 'INVALID_STORE_URL' }));
    }
    const { openStoreUrl } = await import('@idem/core/url');
    // Resolved from this package (a pnpm workspace hides it from core's own resolver).
    const importer = (specifier: string) => import(specifier);
    const a = await openStoreUrl(`${url}?table=${table}&create_schema=true`, { importer });
    const b = await openStoreUrl(`${url!.replace(/^postgres:/, 'postgresql:')}?table=${table}`, { importer });
    const lease = expectLease(await a.claim('same'));
    expect(await b.get('same')).toMatchObject({ runId: lease.runId });
    await expectCode(createPostgresStore({ url: `${url}?table=${table}`, table: 'other' }), 'INVALID_ARGUMENT');
    expect(storageName('same')).toMatch(/^[0-9a-f]{64}$/);
    await a.close();
    await b.close();
  });
});
