// @idem/postgres: a store on PostgreSQL. Its atomic step is the database's own: one transaction
// per claim and finish, the row locked with SELECT … FOR UPDATE while core decides; a fresh key is
// one INSERT … ON CONFLICT DO NOTHING. Leases and retention are judged by the database server's
// clock: every statement reads it, and core's decisions run on that time. sql.ts holds the SQL.
import {
  BackendUnavailableError,
  backendError,
  claimWith,
  CorruptRecordError,
  createStore,
  decideClaim,
  finishWith,
  IdemError,
  InvalidArgumentError,
  isSweepable,
  parseRecord,
  ServerClock,
  serializeRecord,
  STORAGE_NAME,
  validateDuration,
  type AtomicUpdate,
  type ClaimInput,
  type ClaimOutcome,
  type CorruptEntry,
  type Driver,
  type DriverContext,
  type IdempotencyStore,
  type IdemRecord,
  type Labels,
  type ListPage,
  type ListQuery,
  type StoreOptions,
  type SweepCounts,
} from '@idem/core/adapter';
import { checkIdentifier, DEFAULT_SCHEMA, DEFAULT_TABLE, statements, type Statements } from './sql.js';
import { parse as parseUrl } from './url.js';

export { DEFAULT_SCHEMA, DEFAULT_TABLE } from './sql.js';

/** What the store needs of a `pg` client: `pg.PoolClient` is one. */
export interface PgClient {
  query(config: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
  /** Back to the pool; with an error, the connection is destroyed instead. */
  release(error?: Error | boolean): void;
  /** pg emits "error" on a checked-out client whose connection dies between statements. */
  on?(event: 'error', listener: (error: Error) => void): unknown;
  off?(event: 'error', listener: (error: Error) => void): unknown;
}

/** What the store needs of a `pg` pool: `new pg.Pool(…)` is one. */
export interface PgPool {
  connect(): Promise<PgClient>;
  end(): Promise<void>;
}

export interface PostgresStoreOptions extends StoreOptions {
  /** Your `pg.Pool`. You end it; `store.close()` does not. */
  pool?: PgPool;
  /** Or a URL (postgres:// or postgresql://, libpq's form): the store opens and ends its own pool. */
  url?: string;
  /** Schema of the table. Default "public". */
  schema?: string;
  /** The table. Default "idem_records". */
  table?: string;
  /** Create the schema, table and indexes at open if missing (the SQL of `createSchema`). Default false. */
  createSchema?: boolean;
  /** Bound on one operation (waiting for a connection included); past it: BACKEND_UNAVAILABLE. Default 5 s. */
  timeoutMs?: number;
  /** Connections of the pool the store opens from a URL. Default 10. */
  poolSize?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_POOL_SIZE = 10;
/** Rows per list query and per sweep batch: bounded work per statement. */
const BATCH = 500;
const MAX_ATTEMPTS = 32;

/** Opens a store on a PostgreSQL table. Options are checked before any connection. */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<IdempotencyStore> {
  const {
    pool,
    url,
    schema: schemaOption,
    table: tableOption,
    createSchema: createOption,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    poolSize = DEFAULT_POOL_SIZE,
    ...storeOptions
  } = options ?? ({} as PostgresStoreOptions);
  if ((pool === undefined) === (url === undefined)) throw new InvalidArgumentError('give exactly one of pool or url');
  if (pool !== undefined && (typeof pool?.connect !== 'function' || typeof pool.end !== 'function')) throw new InvalidArgumentError('pool must be a pg.Pool');
  if (url !== undefined && typeof url !== 'string') throw new InvalidArgumentError('url must be a string');
  // One grammar: a URL is read by @idem/postgres/url, as the CLI and openStoreUrl read it.
  const fromUrl = url !== undefined ? parseUrl(url) : undefined;
  const schema = checkIdentifier('schema', once('schema', schemaOption, fromUrl?.schema) ?? DEFAULT_SCHEMA);
  const table = checkIdentifier('table', once('table', tableOption, fromUrl?.table) ?? DEFAULT_TABLE);
  const create = once('createSchema', createOption, fromUrl?.createSchema) ?? false;
  if (typeof create !== 'boolean') throw new InvalidArgumentError('createSchema must be a boolean');
  validateDuration('timeoutMs', timeoutMs);
  if (!Number.isSafeInteger(poolSize) || poolSize < 1 || poolSize > 1000) throw new InvalidArgumentError('poolSize must be a whole number in 1..1000');
  const clock = new PinnedClock();
  // The store's clock is the server's: during a decision, the time the server gave in the same
  // transaction; elsewhere, this machine's estimate of it. An injected clock has nothing to judge.
  return createStore({ ...storeOptions, clock: clock.now }, async () => {
    const owned = fromUrl !== undefined ? await openPool(fromUrl.url, poolSize, timeoutMs) : undefined;
    const driver = new PostgresDriver(owned ?? pool!, owned !== undefined, statements(schema, table), timeoutMs, clock);
    if (create) {
      try {
        await driver.createSchema();
      } catch (error) {
        await driver.close();
        throw error;
      }
    }
    return driver;
  });
}

/**
 * Creates the schema, table and indexes if missing (idempotent): the SQL in the README.
 * Give the same `pool` or `url`, `schema` and `table` as the store's.
 */
export async function createSchema(options: Pick<PostgresStoreOptions, 'pool' | 'url' | 'schema' | 'table' | 'timeoutMs'>): Promise<void> {
  const store = await createPostgresStore({ ...options, createSchema: true });
  await store.close();
}

/** The SQL `createSchema` runs, for a DBA to review or apply by hand. */
export function schemaSql(options: { schema?: string; table?: string } = {}): string {
  const s = statements(checkIdentifier('schema', options.schema ?? DEFAULT_SCHEMA), checkIdentifier('table', options.table ?? DEFAULT_TABLE));
  return `${s.schema.join(';\n')};\n`;
}

function once<T>(name: string, option: T | undefined, fromUrl: T | undefined): T | undefined {
  if (option !== undefined && fromUrl !== undefined && option !== fromUrl)
    throw new InvalidArgumentError(`${name} is given twice, in the URL and as an option`);
  return option ?? fromUrl;
}

async function openPool(url: string, max: number, timeoutMs: number): Promise<PgPool> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: timeoutMs, application_name: 'idem' });
  // An idle connection the server dropped (restart, failover) errors on the pool: the next
  // checkout opens a new one, so this is not the application's concern.
  pool.on('error', () => {});
  return pool;
}

/** The server's time while a decision runs; this machine's estimate of it otherwise. */
class PinnedClock {
  readonly estimate = new ServerClock();
  private pinned: number | undefined;
  readonly now = (): number => this.pinned ?? this.estimate.now();

  /** Runs a synchronous decision at the server's time `now`. */
  at<T>(now: number, decide: () => T): T {
    this.pinned = now;
    try {
      return decide();
    } finally {
      this.pinned = undefined;
    }
  }
}

/** A definite answer from the server (an SQLSTATE) that says nothing was committed, as opposed to a lost connection. */
const definite = (error: unknown): boolean => {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57P)/.test(code);
};
/** Authentication, missing database or table, permission: asking again will not help. */
const refused = (error: unknown): boolean => /^(28|3D|42)/.test(String((error as { code?: unknown })?.code ?? ''));

const RETRY: unique symbol = Symbol('retry');

/** A COMMIT (or an autocommit INSERT) sent whose answer never came: it may have landed. */
class Ambiguous extends Error {
  constructor(readonly cause: unknown) {
    super('outcome unknown');
  }
}

/** What the indexed columns hold for a record (see sql.ts). */
function columns(record: IdemRecord): [number | null, number | null, string | null] {
  const lease = record.status === 'in_flight' ? (record.leaseExpiresAt ?? 0) : undefined;
  const ends = [record.expiresAt, lease].filter((x): x is number => x !== undefined);
  return [record.expiresAt ?? null, ends.length > 0 ? Math.min(...ends) : null, labelsJson(record.labels)];
}

/** Labels as the labels column holds them: jsonb holds no NUL, so "\" and NUL are escaped (one way, only for matching). */
function labelsJson(labels: Labels | undefined): string | null {
  if (labels === undefined) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[k] = v.replaceAll('\\', '\\\\').replaceAll('\0', '\\0');
  return JSON.stringify(out);
}

class PostgresDriver implements Driver {
  readonly capabilities = { nativeExpiry: false, clock: 'server', sharedAcrossProcesses: true } as const;

  constructor(
    private readonly pool: PgPool,
    private readonly owned: boolean,
    private readonly sql: Statements,
    private readonly timeoutMs: number,
    private readonly clock: PinnedClock,
  ) {}

  async createSchema(): Promise<void> {
    await this.run('createSchema', async (c) => {
      // One transaction holding an advisory lock on the table's name: two stores creating one
      // table at once would otherwise race inside CREATE … IF NOT EXISTS (a duplicate error).
      await c.query({ text: 'BEGIN' });
      try {
        await c.query({ text: 'SELECT pg_advisory_xact_lock(hashtext($1))', values: [this.sql.schema[1]] });
        for (const text of this.sql.schema) await c.query({ text });
        await c.query({ text: 'COMMIT' });
      } catch (error) {
        await c.query({ text: 'ROLLBACK' }).catch(() => {});
        throw error;
      }
    });
  }

  /**
   * One operation on one pooled connection, bounded by timeoutMs (the wait for a connection
   * included). A connection that failed, or that the deadline abandoned mid-transaction, is
   * destroyed rather than returned: the server then rolls back whatever it held open.
   */
  private run<T>(what: string, body: (c: PgClient, deadline: { passed: boolean }) => Promise<T>): Promise<T> {
    const deadline = { passed: false };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        deadline.passed = true;
        reject(new BackendUnavailableError(`${what}: no answer from PostgreSQL within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    const work = (async () => {
      const c = await this.pool.connect().catch((error: unknown) => {
        throw backendError(error, `${what}: connecting to PostgreSQL`, refused(error));
      });
      let broken: Error | undefined;
      // A connection that dies while held (between statements) fails the next statement anyway;
      // unheard, pg's "error" event would be an uncaught exception.
      const lost = (error: Error) => {
        broken = error;
      };
      c.on?.('error', lost);
      try {
        if (deadline.passed) throw new BackendUnavailableError(`${what}: no connection within ${this.timeoutMs} ms`);
        return await body(c, deadline);
      } catch (error) {
        if (!definite(error) && !(error instanceof IdemError)) broken = error instanceof Error ? error : new Error(String(error));
        throw error;
      } finally {
        c.off?.('error', lost);
        c.release(deadline.passed ? new Error('idem: abandoned at the deadline') : broken);
      }
    })();
    work.catch(() => {}); // after the deadline nobody awaits it
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  /** A statement on a connection; its reply's `now` (when it has one) sharpens the clock estimate. */
  private async query(c: PgClient, text: string, values: unknown[] = []): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }> {
    const sent = Date.now();
    const result = await c.query({ text, values });
    const now = result.rows[0]?.now;
    if (now !== undefined && now !== null) this.clock.estimate.observe(Number(now), sent, Date.now(), 1);
    return result;
  }

  private failure(error: unknown, what: string): never {
    if (error instanceof IdemError) throw error;
    throw backendError(error, `${what} on PostgreSQL`, refused(error));
  }

  /**
   * The atomic step, one transaction:
   *   BEGIN
   *   SELECT server time, row FOR UPDATE  -> the row is ours until COMMIT (absent: nothing locked)
   *   core decides at the server's time
   *   UPDATE (or INSERT … ON CONFLICT DO NOTHING when absent: 0 rows means another
   *     transaction inserted first; roll back and decide again on its row)
   *   COMMIT                              -> no answer: ambiguous; read back and recognise our
   *                                          record by its exact bytes, else decide again
   * The time is read before the lock is granted: a wait for the lock makes it early, never late,
   * so a lease is never judged dead too soon.
   */
  readonly atomicUpdate: AtomicUpdate = async (name, step) => {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let written: Buffer | undefined;
      let decidedValue: unknown;
      try {
        const outcome = await this.run(`update of ${name}`, async (c, deadline) => {
          await this.query(c, 'BEGIN');
          let done = false;
          try {
            const row = (await this.query(c, this.sql.lock, [name])).rows[0]!;
            const current = row.body == null ? undefined : parseRecord(name, row.body as Buffer);
            const decided = this.clock.at(Number(row.now), () => step(current));
            if (decided.write === undefined) {
              await this.query(c, 'ROLLBACK');
              done = true;
              return { value: decided.value };
            }
            const bytes = Buffer.from(serializeRecord(decided.write));
            const values = [name, bytes, ...columns(decided.write)];
            if (current === undefined) {
              if ((await this.query(c, this.sql.insert, values)).rowCount === 0) {
                await this.query(c, 'ROLLBACK');
                done = true;
                return RETRY;
              }
            } else {
              await this.query(c, this.sql.update, values);
            }
            if (deadline.passed) throw new BackendUnavailableError(`update of ${name}: past ${this.timeoutMs} ms, rolled back`);
            written = bytes;
            decidedValue = decided.value;
            done = true;
            try {
              await this.query(c, 'COMMIT');
            } catch (error) {
              if (definite(error)) throw error;
              throw new Ambiguous(error);
            }
            return { value: decided.value };
          } finally {
            // A decision that threw (LEASE_LOST, KEY_REUSE_MISMATCH, CORRUPT_RECORD) wrote nothing: roll back, keep the connection.
            if (!done && !deadline.passed) await this.query(c, 'ROLLBACK').catch(() => {});
          }
        });
        if (outcome === RETRY) continue;
        return outcome as { value: never };
      } catch (error) {
        if (!(error instanceof Ambiguous) || written === undefined) this.failure(error, `update of ${name}`);
        // The COMMIT's answer was lost: it may have landed. Ours is recognised by its exact bytes
        // (runId, fence and times); anything else means it did not, and the step runs again.
        const back = await this.readRow(name);
        if (back?.body !== undefined && Buffer.compare(back.body, written) === 0) return { value: decidedValue as never };
      }
    }
    throw new BackendUnavailableError(`update of ${name}: gave up after ${MAX_ATTEMPTS} attempts`);
  };

  /**
   * A claim. A fresh key is one round trip, its own transaction:
   *   INSERT the claim's bytes with the server's time, ON CONFLICT DO NOTHING RETURNING
   *     -> a row: ours, claimed at that time
   *     -> no row: something is stored; the transaction above decides on it
   *     -> no answer: read back; our bytes (our runId) mean it landed, else the transaction decides
   * The bytes are core's, decided for an absent record: only the two times come from the server.
   */
  async claim(input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome> {
    const fresh = freshBytes(input, ctx.clockSkewMs);
    if (fresh !== undefined) {
      const [head, tail] = fresh;
      const labels = labelsJson(input.labels);
      try {
        const rows = await this.run(`claim of ${input.name}`, async (c) => {
          try {
            return (await this.query(c, this.sql.insertFresh, [input.name, head, tail, input.leaseMs, labels])).rows;
          } catch (error) {
            if (definite(error)) throw error;
            throw new Ambiguous(error);
          }
        });
        if (rows.length === 1) return decideClaim(undefined, input, Number(rows[0]!.now), ctx.clockSkewMs).value;
      } catch (error) {
        if (!(error instanceof Ambiguous)) this.failure(error, `claim of ${input.name}`);
        const back = await this.readRow(input.name);
        const at = back?.body !== undefined ? landedAt(back.body.toString('utf8'), head, tail, input.leaseMs) : undefined;
        if (at !== undefined) return decideClaim(undefined, input, at, ctx.clockSkewMs).value;
      }
    }
    return claimWith(this.atomicUpdate, input, ctx);
  }

  finish: Driver['finish'] = (lease, op, ctx) => finishWith(this.atomicUpdate, lease, op, ctx);

  private async readRow(name: string): Promise<{ now: number; body?: Buffer }> {
    try {
      const row = await this.run(`read of ${name}`, async (c) => (await this.query(c, this.sql.read, [name])).rows[0]!);
      return { now: Number(row.now), ...(row.body != null ? { body: row.body as Buffer } : {}) };
    } catch (error) {
      this.failure(error, `read of ${name}`);
    }
  }

  /** The live record: past retention by the server's clock counts as absent. */
  async read(name: string): Promise<IdemRecord | undefined> {
    const { now, body } = await this.readRow(name);
    if (body === undefined) return undefined;
    const record = parseRecord(name, body);
    return record.expiresAt !== undefined && record.expiresAt <= now ? undefined : record;
  }

  /** Live records in name order, a keyset page at a time; labels are matched in SQL through the labels index. */
  async list(query: ListQuery): Promise<ListPage> {
    if (query.cursor !== undefined && !STORAGE_NAME.test(query.cursor)) throw new InvalidArgumentError('cursor must be a string from a previous page');
    const records: IdemRecord[] = [];
    const corrupt: CorruptEntry[] = [];
    const page = (cursor?: string): ListPage => ({ records, ...(corrupt.length > 0 ? { corrupt } : {}), ...(cursor !== undefined ? { cursor } : {}) });
    const labels = query.labels !== undefined ? labelsJson(query.labels) : null;
    let after = query.cursor ?? null;
    for (;;) {
      let rows: Record<string, unknown>[];
      try {
        rows = await this.run('list', async (c) => (await this.query(c, this.sql.list, [after, labels, BATCH])).rows);
      } catch (error) {
        this.failure(error, 'list');
      }
      const found = rows.filter((r) => r.name != null);
      for (const [i, row] of found.entries()) {
        const name = row.name as string;
        let record: IdemRecord;
        try {
          record = parseRecord(name, row.body as Buffer);
        } catch (error) {
          if (!(error instanceof CorruptRecordError)) throw error;
          corrupt.push({ name, reason: (error as Error).message });
          continue;
        }
        if (!query.filter(record)) continue;
        records.push(record);
        if (records.length === query.limit) return i < found.length - 1 || found.length === BATCH ? page(name) : page();
      }
      if (found.length < BATCH) return page();
      after = found[found.length - 1]!.name as string;
    }
  }

  /** Deletes what is past retention or holds a dead lease, in batches through the sweep_at index. */
  async sweep(): Promise<SweepCounts> {
    const counts: SweepCounts = { expired: 0, deadLeases: 0 };
    for (;;) {
      let rows: Record<string, unknown>[];
      try {
        rows = await this.run('sweep', async (c) => (await this.query(c, this.sql.sweep, [BATCH])).rows);
      } catch (error) {
        this.failure(error, 'sweep');
      }
      for (const row of rows) {
        // Only rows the store wrote have a sweep time: every body here parses.
        const record = parseRecord('(swept)', row.body as Buffer);
        const now = Number(row.now);
        if (!isSweepable(record, now)) continue;
        if (record.expiresAt !== undefined && record.expiresAt <= now) counts.expired++;
        else counts.deadLeases++;
      }
      if (rows.length < BATCH) return counts;
    }
  }

  async remove(name: string): Promise<boolean> {
    try {
      return await this.run(`delete of ${name}`, async (c) => ((await this.query(c, this.sql.remove, [name])).rowCount ?? 0) > 0);
    } catch (error) {
      this.failure(error, `delete of ${name}`);
    }
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    await this.run('writeRaw', async (c) => this.query(c, this.sql.raw, [name, Buffer.from(bytes)]));
  }

  async close(): Promise<void> {
    if (this.owned) await this.pool.end();
  }
}

/**
 * The bytes of a fresh claim around its two times: core's record for an absent key, decided at
 * time 0, cut where `"claimedAt":0,"leaseExpiresAt":<leaseMs>` stands (a key or label holding that
 * text is escaped inside a JSON string, so it occurs once). Undefined if it does not.
 */
function freshBytes(input: ClaimInput, skewMs: number): [string, string] | undefined {
  const bytes = serializeRecord(decideClaim(undefined, input, 0, skewMs).write!);
  const times = `,"claimedAt":0,"leaseExpiresAt":${input.leaseMs}`;
  const at = bytes.indexOf(times);
  if (at < 0 || bytes.indexOf(times, at + 1) >= 0) return undefined;
  return [bytes.slice(0, at), bytes.slice(at + times.length)];
}

/** The time a fresh claim with these bytes was taken, if `stored` is it. */
function landedAt(stored: string, head: string, tail: string, leaseMs: number): number | undefined {
  if (!stored.startsWith(head) || !stored.endsWith(tail)) return undefined;
  const m = /^,"claimedAt":(\d+),"leaseExpiresAt":(\d+)$/.exec(stored.slice(head.length, stored.length - tail.length));
  return m && Number(m[2]) - Number(m[1]) === leaseMs ? Number(m[1]) : undefined;
}
