// @idem/postgres: a store on PostgreSQL. Its atomic step is the database's own: one transaction
// per claim and finish, the row locked with SELECT … FOR UPDATE while core decides; a fresh key is
// one INSERT … ON CONFLICT DO NOTHING. Leases and retention are judged by the database server's
// clock: every statement reads it, and core's decisions run on that time. This file is the options
// and createPostgresStore; the rest, by job: driver.ts (the store's operations), sql.ts (every
// statement and the schema), connection.ts (pooled connections, the deadline, pg's errors),
// server-time.ts (deciding at the server's time, and records it writes its time into).
import { createStore, InvalidArgumentError, validateDuration, type IdempotencyStore, type StoreOptions } from '@idem/core/adapter';
import { Connections, type PgPool } from './connection.js';
import { PostgresDriver } from './driver.js';
import { PinnedClock } from './server-time.js';
import { checkIdentifier, DEFAULT_SCHEMA, DEFAULT_TABLE, statements } from './sql.js';
import { parse as parseUrl } from './url.js';

export type { PgClient, PgPool } from './connection.js';
export { DEFAULT_SCHEMA, DEFAULT_TABLE } from './sql.js';

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
    const driver = new PostgresDriver(new Connections(owned ?? pool!, timeoutMs, clock.estimate), owned !== undefined, statements(schema, table), clock);
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
