import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import {
  BackendUnavailableError,
  CorruptRecordError,
  createStore,
  IdemError,
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
import { checkDataFile, createDataFile, DATA_FILE, ensureWritableDirectory, verifyDataFile } from './files.js';
import { WriteTurn } from './turn.js';

// lmdb-js through its CommonJS build: one file instead of its ESM graph (~25 modules with
// msgpackr's), which loads ~15 ms faster, and a CLI's startup is mostly module loading.
// Same native addon and same behaviour; only this package calls it.
const { open } = createRequire(import.meta.url)('lmdb') as typeof import('lmdb');

const SCHEMA = 1;

export interface LmdbStoreOptions extends StoreOptions {
  /** Directory of the store; created if missing. Every process that shares it shares the keys. */
  path: string;
  /**
   * "flush" (default): a claim or finish is acknowledged once it is fsynced, so it
   * survives a power loss. "commit": once committed and visible to other
   * processes, which survives kill -9 of the process but not of the machine.
   */
  durability?: 'flush' | 'commit';
  /**
   * Open for reading only (get, list): nothing is created or written, no
   * write turn is taken, and a read-only filesystem is fine. A directory
   * without a store reads as an empty store. Writes raise INVALID_ARGUMENT.
   */
  readOnly?: boolean;
}

/**
 * Reads the whole B-tree of the store in `path` without mapping it, and throws
 * CORRUPT_RECORD naming the file and the first damaged page: damage that would
 * otherwise end a reading process with SIGBUS or SIGSEGV. Changes nothing.
 * Reads every page, so it is for on-demand checks (after a crash, a disk
 * error, a restore), not for every open. Resolves with the pages checked.
 */
export async function verifyLmdbStore(path: string): Promise<{ pages: number }> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty directory path');
  return verifyDataFile(path);
}

/** Opens (creating if needed, unless readOnly) an embedded store. */
export async function createLmdbStore(options: LmdbStoreOptions): Promise<IdempotencyStore> {
  const { path, durability = 'flush', readOnly = false, ...storeOptions } = options ?? ({} as LmdbStoreOptions);
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty directory path');
  if (durability !== 'flush' && durability !== 'commit') throw new InvalidArgumentError('durability must be "flush" or "commit"');
  if (typeof readOnly !== 'boolean') throw new InvalidArgumentError('readOnly must be a boolean');
  // createStore checks the store options before open runs: bad options fail before the disk is touched.
  return createStore(storeOptions, () => (readOnly ? LmdbDriver.openReadOnly(path) : LmdbDriver.open(path, durability)));
}

/** The primitives core composes into a store: a transactional atomic step for claims and finishes, a key range scan for list and sweep. */
class LmdbDriver implements TransactionalParts {
  readonly kind = 'lmdb';
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  readonly update: AtomicUpdate;

  private constructor(
    private readonly env: RootDatabase,
    private readonly records: Database<Buffer, string>,
    private readonly durability: 'flush' | 'commit',
    turn: WriteTurn | undefined,
    private readonly path: string,
  ) {
    this.turn = turn ?? readOnlyTurn;
    // The atomic step: one LMDB write transaction reads, decides and writes.
    this.update = async (name, step) => ({
      value: await this.write(() => {
        const raw = this.records.getBinary(name);
        const decided = step(raw === undefined ? undefined : parseRecord(name, raw));
        if (decided.write !== undefined) this.records.putSync(name, Buffer.from(serializeRecord(decided.write)));
        return decided.value;
      }, true),
    });
  }

  private readonly turn: Pick<WriteTurn, 'run'>;

  /**
   * One write transaction in this process's write turn (see turn.ts),
   * flushed before the turn ends when `flush` and durability say so.
   */
  private write<T>(body: () => T, flush: boolean): Promise<T> {
    return this.turn.run(() =>
      this.written(async () => {
        const value = await this.records.transaction(() => {
          observeCommit(this.env);
          return body();
        });
        if (flush && this.durability === 'flush') await this.env.flushed;
        return value;
      }),
    );
  }

  /** A failed commit (ENOSPC, EIO, map full) is BACKEND_UNAVAILABLE: LMDB aborted it, the records are as they were. */
  private async written<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (error instanceof IdemError) throw error;
      // lmdb-js rejects a failed commit with a generic error whose commitError promise carries the cause
      // (ENOSPC...); unobserved, that promise would crash the host as an unhandled rejection.
      const commitError = (error as { commitError?: Promise<unknown> }).commitError;
      const cause = commitError
        ? await commitError.then(
            () => error,
            (reason: unknown) => reason,
          )
        : error;
      throw new BackendUnavailableError(`LMDB write to ${join(this.path, DATA_FILE)} failed: ${(cause as Error).message}`, cause);
    }
  }

  /**
   * Opens a store, creating it whole if the directory has none (see
   * createDataFile). The data file is checked before LMDB maps it. Opening
   * takes a write turn (lmdb-js may open tables in a write transaction).
   */
  static async open(path: string, durability: 'flush' | 'commit'): Promise<LmdbDriver> {
    await ensureWritableDirectory(path);
    if ((await checkDataFile(path)) === 'missing') await createDataFile(path, (file) => initialise(file, durability));
    const turn = await WriteTurn.of(path);
    try {
      const { env, records } = await turn.run(() => openTablesRetrying(path, durability));
      return new LmdbDriver(env, records, durability, turn, path);
    } catch (error) {
      if (error instanceof IdemError) throw error;
      throw new BackendUnavailableError(`cannot open LMDB store at ${path}: ${(error as Error).message}`, error);
    }
  }

  /** Opens for reading: no directory, file or lock is created; a missing store reads as empty. */
  static async openReadOnly(path: string): Promise<TransactionalParts> {
    if ((await checkDataFile(path)) === 'missing') return emptyStore;
    try {
      const { env, records } = await openTables(path, 'commit', true);
      return new LmdbDriver(env, records, 'commit', undefined, path);
    } catch (error) {
      if (error instanceof IdemError) throw error;
      const detail = /permission denied|EACCES/i.test((error as Error).message)
        ? ' (LMDB registers readers in idem.mdb-lock: a reader needs write permission on that file, not on the data)'
        : '';
      throw new BackendUnavailableError(`cannot open LMDB store at ${path} for reading: ${(error as Error).message}${detail}`, error);
    }
  }

  async read(name: string): Promise<Versioned | undefined> {
    const raw = this.records.getBinary(name);
    return raw === undefined ? undefined : { record: parseRecord(name, raw) };
  }

  /** Keys in LMDB's (byte) order, strictly after `after`. */
  async scan(after: string | undefined, limit: number): Promise<ScanPage> {
    const names: string[] = [];
    for (const key of this.records.getKeys({ ...(after !== undefined ? { start: after } : {}), limit: limit + 1 })) {
      if (key !== after) names.push(key);
      if (names.length === limit) break;
    }
    const last = names.at(-1);
    return { entries: names.map((name) => ({ name })), ...(names.length === limit && last !== undefined ? { next: last } : {}) };
  }

  /**
   * One write transaction: with `expected` (sweep), removes the record only
   * if it is still the one read (a renewal or re-claim since the scan keeps
   * it); without, unconditionally.
   */
  async delete(name: string, expected?: Versioned): Promise<boolean> {
    return this.write(() => {
      const raw = this.records.getBinary(name);
      if (raw === undefined) return false;
      if (expected !== undefined && !sameRecord(name, raw, expected.record)) return false;
      return this.records.removeSync(name);
    }, false);
  }

  beforeSweep(): void {
    if (this.turn === readOnlyTurn) throw readOnlyError();
  }

  async writeRaw(name: string, bytes: string | Uint8Array) {
    await this.write(() => this.records.putSync(name, Buffer.from(bytes)), false);
  }

  async close() {
    await this.env.close();
  }
}

/** Whether stored bytes still hold `record` (compared parsed, so formatting does not matter). */
function sameRecord(name: string, raw: Buffer, record: Versioned['record']): boolean {
  try {
    return serializeRecord(parseRecord(name, raw)) === serializeRecord(record);
  } catch (error) {
    // Turned corrupt since the scan read it: not the record read, so not removed.
    if (error instanceof CorruptRecordError) return false;
    throw error;
  }
}

/** Makes a new data file: its tables and schema stamp, committed and flushed before it is linked in. */
async function initialise(file: string, durability: 'flush' | 'commit'): Promise<void> {
  const env = openEnv(file, durability);
  try {
    env.openDB<Buffer, string>({ name: 'records', encoding: 'binary' }); // creates the table
    await env.openDB<number, string>({ name: 'meta' }).put('schema', SCHEMA);
    await env.flushed;
  } finally {
    await env.close();
  }
}

/**
 * lmdb-js's open() has failed, rarely, with "No transaction to renew" when
 * several processes open one new store at once (it ignores the return code of
 * its first mdb_txn_begin; see docs/decisions/lmdb-write-turns.md). The
 * environment is closed by then, so a fresh open is safe: tried a few times.
 */
async function openTablesRetrying(path: string, durability: 'flush' | 'commit') {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openTables(path, durability, false);
    } catch (error) {
      if (attempt >= 3 || error instanceof IdemError || !/No transaction to renew/.test((error as Error).message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 * attempt));
    }
  }
}

async function openTables(path: string, durability: 'flush' | 'commit', readOnly: boolean) {
  const env = openEnv(join(path, DATA_FILE), durability, readOnly);
  let schema: number | undefined;
  try {
    schema = env.openDB<number, string>({ name: 'meta' }).get('schema');
  } catch (error) {
    await env.close();
    throw error;
  }
  if (schema !== SCHEMA) {
    await env.close();
    throw new CorruptRecordError(
      join(path, DATA_FILE),
      schema === undefined
        ? 'has no schema stamp: not a store idem made'
        : `store schema ${String(schema)} is not ${SCHEMA}: written by another version of @idem/lmdb`,
    );
  }
  return { env, records: env.openDB<Buffer, string>({ name: 'records', encoding: 'binary' }) };
}

/**
 * lmdb-js starts each batch with a commit promise of its own that no caller
 * holds; when the commit fails (ENOSPC) it rejects unobserved and Node ends
 * the host for an unhandled rejection. Called inside a transaction, this
 * observes that batch's promise; the failure reaches the caller through its
 * own transaction's promise.
 */
function observeCommit(env: RootDatabase): void {
  void env.committed.then(
    () => undefined,
    () => undefined, // reported to each writer by its transaction promise (see LmdbDriver.written)
  );
}

const readOnlyError = () => new InvalidArgumentError('this store was opened with readOnly: true; open it without readOnly to write');
const readOnlyTurn = { run: async () => Promise.reject(readOnlyError()) } as Pick<WriteTurn, 'run'>;

/** A read-only view of a directory that holds no store: nothing to read, nothing created. */
const emptyStore: TransactionalParts = {
  kind: 'lmdb',
  capabilities: { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true },
  update: async () => Promise.reject(readOnlyError()),
  read: async () => undefined,
  scan: async () => ({ entries: [] }),
  delete: async () => Promise.reject(readOnlyError()),
  beforeSweep: () => {
    throw readOnlyError();
  },
  writeRaw: async () => Promise.reject(readOnlyError()),
  close: async () => undefined,
};

/**
 * overlappingSync (lmdb-js's default) releases the writer lock before a commit
 * is flushed; with processes sharing the file that lost claims (see
 * docs/decisions/lmdb-write-turns.md). Off, each commit is whole before the
 * next writer starts; 'commit' durability then skips the fsync instead (noSync).
 */
function openEnv(file: string, durability: 'flush' | 'commit', readOnly = false): RootDatabase {
  return open({ path: file, overlappingSync: false, noSync: durability === 'commit', readOnly });
}
