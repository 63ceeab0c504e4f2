import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import {
  BackendUnavailableError,
  claimWith,
  CorruptRecordError,
  finishWith,
  IdempotencyStore,
  IdemError,
  InvalidArgumentError,
  isSweepable,
  isExpired,
  parseRecord,
  resolveStoreOptions,
  serializeRecord,
  type AtomicUpdate,
  type Driver,
  type StoreOptions,
} from '@idem/core';
import { checkDataFile, createDataFile, DATA_FILE, ensureWritableDirectory } from './files.js';
import { WriteTurn } from './turn.js';

const SCHEMA = 1;
const SWEEP_BATCH = 512;

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

/** Opens (creating if needed, unless readOnly) an embedded store. */
export async function createLmdbStore(options: LmdbStoreOptions): Promise<IdempotencyStore> {
  const { path, durability = 'flush', readOnly = false, ...storeOptions } = options ?? ({} as LmdbStoreOptions);
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty directory path');
  if (durability !== 'flush' && durability !== 'commit') throw new InvalidArgumentError('durability must be "flush" or "commit"');
  if (typeof readOnly !== 'boolean') throw new InvalidArgumentError('readOnly must be a boolean');
  resolveStoreOptions(storeOptions); // bad options fail before the disk is touched
  const driver = readOnly ? await LmdbDriver.openReadOnly(path) : await LmdbDriver.open(path, durability);
  return new IdempotencyStore(driver, storeOptions);
}

class LmdbDriver implements Driver {
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  private readonly update: AtomicUpdate;

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
      const cause = commitError ? await commitError.then(() => error, (reason: unknown) => reason) : error;
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
      const { env, records } = await turn.run(() => openTables(path, durability, false));
      return new LmdbDriver(env, records, durability, turn, path);
    } catch (error) {
      if (error instanceof IdemError) throw error;
      throw new BackendUnavailableError(`cannot open LMDB store at ${path}: ${(error as Error).message}`, error);
    }
  }

  /** Opens for reading: no directory, file or lock is created; a missing store reads as empty. */
  static async openReadOnly(path: string): Promise<Driver> {
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

  claim: Driver['claim'] = (input, ctx) => claimWith(this.update, input, ctx);
  finish: Driver['finish'] = (lease, op, retentionMs, ctx) => finishWith(this.update, lease, op, retentionMs, ctx);

  async read(name: string) {
    const raw = this.records.getBinary(name);
    return raw === undefined ? undefined : parseRecord(name, raw);
  }

  async list(query: Parameters<Driver['list']>[0]) {
    const records = [];
    for (const { key, value } of this.records.getRange(query.cursor !== undefined ? { start: query.cursor } : {})) {
      if (records.length === query.limit) return { records, cursor: key };
      const record = parseRecord(key, value);
      if (query.filter(record)) records.push(record);
    }
    return { records };
  }

  async sweep(ctx: Parameters<Driver['sweep']>[0]) {
    if (this.turn === readOnlyTurn) throw readOnlyError();
    const counts = { expired: 0, deadLeases: 0 };
    let batch: string[] = [];
    const flush = async () => {
      const names = batch;
      batch = [];
      // Re-check inside the transaction: a record may have been renewed or reclaimed since it was scanned.
      await this.write(() => {
        const now = ctx.now();
        for (const name of names) {
          const raw = this.records.getBinary(name);
          if (raw === undefined) continue;
          const record = parseRecord(name, raw);
          if (!isSweepable(record, now)) continue;
          this.records.removeSync(name);
          if (isExpired(record, now)) counts.expired++;
          else counts.deadLeases++;
        }
      }, false);
    };
    const now = ctx.now();
    for (const { key, value } of this.records.getRange()) {
      let sweepable: boolean;
      try {
        sweepable = isSweepable(parseRecord(key, value), now);
      } catch (error) {
        // Corrupt records are left for a human: sweep never deletes what it cannot read.
        if (error instanceof CorruptRecordError) continue;
        throw error;
      }
      if (sweepable) batch.push(key);
      if (batch.length >= SWEEP_BATCH) await flush();
    }
    if (batch.length > 0) await flush();
    return counts;
  }

  async remove(name: string) {
    return this.write(() => this.records.getBinary(name) !== undefined && this.records.removeSync(name), false);
  }

  async writeRaw(name: string, bytes: string | Uint8Array) {
    await this.write(() => this.records.putSync(name, Buffer.from(bytes)), false);
  }

  async close() {
    await this.env.close();
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
      schema === undefined ? 'has no schema stamp: not a store idem made' : `store schema ${String(schema)} is not ${SCHEMA}: written by another version of @idem/lmdb`,
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
const emptyStore: Driver = {
  capabilities: { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true },
  claim: async () => Promise.reject(readOnlyError()),
  finish: async () => Promise.reject(readOnlyError()),
  read: async () => undefined,
  list: async () => ({ records: [] }),
  sweep: async () => Promise.reject(readOnlyError()),
  remove: async () => Promise.reject(readOnlyError()),
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
