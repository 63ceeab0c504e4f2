// @idem/postgres: a store on PostgreSQL. Its atomic step is the database's own: one transaction
// per claim and finish, the row locked with SELECT … FOR UPDATE while core decides; a fresh key is
// one INSERT … ON CONFLICT DO NOTHING. Leases and retention are judged by the database server's
// clock: every statement reads it, and core's decisions run on that time. sql.ts holds the SQL.
import { createHash } from 'node:crypto';
import {
  BackendUnavailableError,
  backendError,
  claimWith,
  CorruptRecordError,
  createStore,
  decideClaim,
  decideFinish,
  finishWith,
  IdemError,
  InvalidArgumentError,
  isSweepable,
  parseRecord,
  RECORD_LAYOUT,
  ServerClock,
  serializeRecord,
  STORAGE_NAME,
  validateDuration,
  type AtomicUpdate,
  type ClaimInput,
  type ClaimOutcome,
  type FinishOp,
  type FinishValue,
  type Lease,
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
import { checkIdentifier, DEFAULT_SCHEMA, DEFAULT_TABLE, statements, type Shape, type Statements } from './sql.js';
import { parse as parseUrl } from './url.js';

export { DEFAULT_SCHEMA, DEFAULT_TABLE } from './sql.js';

/** What the store needs of a `pg` client: `pg.PoolClient` is one. */
export interface PgClient {
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
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
  return [record.expiresAt ?? null, sweepAt(record), labelsJson(record.labels)];
}

/** When sweep may remove the record: its retention end, or its lease deadline while in flight, whichever is first. */
function sweepAt(record: IdemRecord): number | null {
  const { expiresAt } = record;
  if (record.status !== 'in_flight') return expiresAt ?? null;
  const lease = record.leaseExpiresAt ?? 0;
  return expiresAt === undefined ? lease : Math.min(expiresAt, lease);
}

/** Labels as the labels column holds them: jsonb holds no NUL, so "\" and NUL are escaped (one way, only for matching). */
function labelsJson(labels: Labels | undefined): string | null {
  if (labels === undefined) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[k] = v.replaceAll('\\', '\\\\').replaceAll('\0', '\\0');
  return JSON.stringify(out);
}

class PostgresDriver implements Driver {
  readonly kind = 'postgres';
  readonly capabilities = { nativeExpiry: false, clock: 'server', sharedAcrossProcesses: true } as const;

  constructor(
    private readonly pool: PgPool,
    private readonly owned: boolean,
    private readonly sql: Statements,
    private readonly timeoutMs: number,
    private readonly clock: PinnedClock,
  ) {}

  /** The one-statement claim's and finish's texts by shape (see shaped). */
  private readonly fresh = new Map<number, string>();
  private readonly finishes = new Map<number, string>();

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
    // Named: each connection parses and plans a statement once, then only binds.
    const result = await c.query(values.length > 0 ? { name: statementName(text), text, values } : { text });
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
   *   INSERT core's record for an absent key at the server's time, ON CONFLICT DO NOTHING
   *     -> the time: ours, claimed then
   *     -> nothing: something is stored; the transaction above decides on it
   *     -> no answer: the transaction above decides too; if the INSERT landed, it finds this
   *        claim's own live record (same runId) and hands its lease back
   */
  async claim(input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome> {
    const decide = (now: number) => decideClaim(undefined, input, now, ctx.clockSkewMs);
    const write = atServerTime((now) => decide(now).write);
    if (write !== undefined) {
      const now = await this.oneShot(`claim of ${input.name}`, this.shaped('insertFresh', write.shape), [input.name, ...write.values]);
      if (now !== undefined) return decide(now).value;
    }
    return claimWith(this.atomicUpdate, input, ctx);
  }

  /**
   * A finish. On the record the lease wrote, one round trip, its own transaction:
   *   UPDATE to core's decision at the server's time, only if the stored bytes are still the lease's
   *     -> the time: done, decided then
   *     -> nothing: the record changed (a takeover, a sweep, corrupt bytes); the transaction decides
   *     -> no answer: the transaction decides too; a repeated complete or fail is answered, not redone
   * A record already past a retention end (released) is left to the transaction: its decision depends on the time.
   */
  async finish(lease: Lease, op: FinishOp, ctx: DriverContext): Promise<FinishValue> {
    const guess = lease.record;
    if (guess?.status === 'in_flight' && guess.expiresAt === undefined && guess.fence === lease.fence && guess.runId === lease.runId) {
      const decide = (now: number) => decideFinish(guess, lease, op, now);
      const write = atServerTime((now) => decide(now).write);
      if (write !== undefined) {
        const now = await this.oneShot(`finish of ${lease.name}`, this.shaped('updateIf', write.shape), [
          lease.name,
          ...write.values,
          Buffer.from(serializeRecord(guess)),
        ]);
        if (now !== undefined) return decide(now).value;
      }
    }
    return finishWith(this.atomicUpdate, lease, op, ctx);
  }

  /** The text of a one-statement write for a record's shape, built once per shape. */
  private shaped(statement: 'insertFresh' | 'updateIf', shape: Shape): string {
    const id = (shape.fields * 2 + Number(shape.expiresAfter)) * 2 + Number(shape.sweepAfter);
    const texts = statement === 'insertFresh' ? this.fresh : this.finishes;
    let text = texts.get(id);
    if (text === undefined) {
      text = this.sql[statement](shape);
      texts.set(id, text);
    }
    return text;
  }

  /** One conditional statement; the server's time if it wrote, undefined if not or if its answer was lost. */
  private async oneShot(what: string, text: string, values: unknown[]): Promise<number | undefined> {
    try {
      const rows = await this.run(what, async (c) => {
        try {
          return (await this.query(c, text, values)).rows;
        } catch (error) {
          if (definite(error)) throw error;
          throw new Ambiguous(error);
        }
      });
      return rows.length === 1 ? Number(rows[0]!.now) : undefined;
    } catch (error) {
      if (error instanceof Ambiguous) return undefined;
      this.failure(error, what);
    }
  }

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

const names = new Map<string, string>();
/** A prepared statement's name: the same text, the same name, on every connection. */
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `idem_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/** Far from 0: a time field differs by exactly this between the two probes. */
const PROBE = 2 ** 40;
const MARK = 'idem:time';
/** Where a marked field stands in the record's bytes: `"field":"mark"`. */
const CUT = Object.fromEntries(RECORD_LAYOUT.map(([field]) => [field, `"${field}":${JSON.stringify(MARK)}`])) as Record<keyof IdemRecord, string>;

/** A record to write at the server's time: its shape (which statement) and that statement's values from $2 on. */
interface AtServerTime {
  shape: Shape;
  values: unknown[];
}

/**
 * The values `timed` (sql.ts) reads for the record core decides at the server's time `now`:
 * decided at two times, the fields that differ by exactly those times are `now` plus an offset;
 * the record's bytes (the one layout) are cut where each stands, as `"field":"mark"` (a quote
 * cannot stand unescaped inside a JSON string, so only there). Undefined when the decision's
 * shape itself depends on the time, or it writes nothing: the transaction decides then.
 */
function atServerTime(decide: (now: number) => IdemRecord | undefined): AtServerTime | undefined {
  let a: IdemRecord | undefined;
  let b: IdemRecord | undefined;
  try {
    a = decide(0);
    b = decide(PROBE);
  } catch (error) {
    if (error instanceof IdemError) return undefined; // refused on the guess: the transaction decides on the truth
    throw error;
  }
  if (a === undefined || b === undefined) return undefined;
  const marked: Record<string, unknown> = { ...b };
  const timed: (keyof IdemRecord)[] = [];
  for (const [field] of RECORD_LAYOUT) {
    const x = a[field];
    const y = b[field];
    if (x === y) continue;
    if (typeof x !== 'number' || typeof y !== 'number' || y - x !== PROBE) return undefined;
    timed.push(field);
    marked[field] = MARK;
  }
  const expires = offset(a.expiresAt ?? null, b.expiresAt ?? null);
  const sweep = offset(sweepAt(a), sweepAt(b));
  if (expires === undefined || sweep === undefined) return undefined;
  const bytes = serializeRecord(marked as unknown as IdemRecord);
  const values: unknown[] = [];
  let from = 0;
  for (const field of timed) {
    const cut = CUT[field];
    const at = bytes.indexOf(cut, from);
    if (at < 0) return undefined;
    values.push(bytes.slice(from, at + field.length + 3), a[field]);
    from = at + cut.length;
  }
  values.push(bytes.slice(from), expires[0], sweep[0], labelsJson(a.labels));
  return { shape: { fields: timed.length, expiresAfter: expires[1], sweepAfter: sweep[1] }, values };
}

/** A column decided at the two probes: a number as it is, or an offset from the server's time (true). */
function offset(x: number | null, y: number | null): [number | null, boolean] | undefined {
  if (x === y) return [x, false];
  return x !== null && y !== null && y - x === PROBE ? [x, true] : undefined;
}
