// An idem adapter on Node's built-in SQLite (node:sqlite), written from
// docs/adapters.md alone: transactional parts handed to createStore. Core
// decides everything; this file stores bytes under names, atomically.
// One table, `records(name TEXT PRIMARY KEY, body)`: the body is
// serializeRecord's text (or raw bytes planted by the suite's writeRaw).
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import {
  backendError,
  createStore,
  InvalidArgumentError,
  parseRecord,
  serializeRecord,
  type AtomicUpdate,
  type IdempotencyStore,
  type ScanPage,
  type StoreOptions,
  type TransactionalParts,
  type Versioned,
} from '@idem/core/adapter';

export interface SqliteStoreOptions extends StoreOptions {
  /** The database file; every process opening it shares the store. */
  path: string;
}

/** How long a writer waits for another process's transaction before BACKEND_UNAVAILABLE: far beyond any one claim. */
const BUSY_TIMEOUT_MS = 60_000;

export function createSqliteStore(options: SqliteStoreOptions): Promise<IdempotencyStore> {
  // Our own option first, before any I/O; createStore then checks the store options before open runs.
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object with a path');
  const { path, ...storeOptions } = options;
  if (typeof path !== 'string' || path === '' || path.includes('\0')) throw new InvalidArgumentError('path must be a file path');
  return createStore(storeOptions, () => sqliteParts(path));
}

/** The primitives core composes into a store (exported so that a test can break one on purpose). */
export function sqliteParts(path: string): TransactionalParts {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
    // WAL: readers do not wait for the writer; the writer still excludes other writers.
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, body) WITHOUT ROWID');
  } catch (error) {
    throw backendError(error, `open ${path}`, false);
  }
  const select = db.prepare('SELECT body FROM records WHERE name = ?');
  const upsert = db.prepare('INSERT INTO records (name, body) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET body = excluded.body');
  const page = db.prepare('SELECT name FROM records WHERE name > ? ORDER BY name LIMIT ?');
  const deleteIf = db.prepare('DELETE FROM records WHERE name = ? AND body = ?');
  const deleteAny = db.prepare('DELETE FROM records WHERE name = ?');

  /** What is stored under name: text as written, bytes as planted. */
  const body = (name: string): string | Uint8Array | undefined => {
    const row = select.get(name) as { body: string | Uint8Array } | undefined;
    return row?.body;
  };
  /** Runs a statement, turning SQLite's failures (busy, I/O, full disk) into idem's errors. */
  const sql = <T>(what: string, run: () => T): T => {
    try {
      return run();
    } catch (error) {
      throw backendError(error, what, false);
    }
  };

  // Timeline: t0 BEGIN IMMEDIATE takes the database's write lock (other writers, in any process,
  // wait up to BUSY_TIMEOUT_MS), t1 read the record, t2 core's step decides, t3 write its record,
  // t4 COMMIT. Nothing can write `name` between t1 and t3. If the step throws (LEASE_LOST,
  // KEY_REUSE_MISMATCH, CORRUPT_RECORD), ROLLBACK and let that very error through.
  // No versions: SQLite has none to give, so `version` is left out.
  const update: AtomicUpdate = async (name, step) => {
    sql(`begin a transaction on ${name}`, () => db.exec('BEGIN IMMEDIATE'));
    try {
      const stored = body(name);
      const decided = step(stored === undefined ? undefined : parseRecord(name, stored));
      if (decided.write !== undefined) upsert.run(name, serializeRecord(decided.write));
      db.exec('COMMIT');
      return { value: decided.value };
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw backendError(error, `update ${name}`, false); // an IdemError (the step's) passes unchanged
    }
  };

  return {
    capabilities: { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true, conditionalSweep: true },
    update,
    // Names in byte order: TEXT compares with memcmp (BINARY collation).
    scan: async (after, limit): Promise<ScanPage> => {
      const rows = sql('scan', () => page.all(after ?? '', limit) as { name: string }[]);
      const entries = rows.map((row) => ({ name: row.name }));
      return rows.length === limit ? { entries, next: rows.at(-1)!.name } : { entries };
    },
    read: async (name): Promise<Versioned | undefined> => {
      const stored = sql(`read ${name}`, () => body(name));
      return stored === undefined ? undefined : { record: parseRecord(name, stored) };
    },
    // Timeline: one DELETE statement, atomic by itself: with `expected`, it deletes only if the
    // stored bytes are still those of the record read (every write stores serializeRecord's
    // layout, so equal records have equal bytes); a renewal or takeover since then keeps its row.
    delete: async (name, expected) => {
      const args: SQLInputValue[] = expected === undefined ? [name] : [name, serializeRecord(expected.record)];
      const result = sql(`delete ${name}`, () => (expected === undefined ? deleteAny : deleteIf).run(...args));
      return Number(result.changes) > 0;
    },
    writeRaw: async (name, bytes) => {
      sql(`write ${name}`, () => upsert.run(name, bytes));
    },
    close: async () => {
      if (db.isOpen) db.close();
    },
  };
}
