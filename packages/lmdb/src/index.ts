import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import {
  BackendUnavailableError,
  CorruptRecordError,
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
}

/** Opens (creating if needed) an embedded store. */
export async function createLmdbStore(options: LmdbStoreOptions): Promise<IdempotencyStore> {
  const { path, durability = 'flush', ...storeOptions } = options ?? ({} as LmdbStoreOptions);
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty directory path');
  if (durability !== 'flush' && durability !== 'commit') throw new InvalidArgumentError('durability must be "flush" or "commit"');
  // createStore checks the store options before open runs: bad options fail before the disk is touched.
  return createStore(storeOptions, () => LmdbDriver.open(path, durability));
}

/** The primitives core composes into a store: a transactional atomic step for claims and finishes, a key range scan for list and sweep. */
class LmdbDriver implements TransactionalParts {
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  readonly update: AtomicUpdate;

  private constructor(
    private readonly env: RootDatabase,
    private readonly records: Database<Buffer, string>,
    durability: 'flush' | 'commit',
    private readonly turn: WriteTurn,
  ) {
    // The atomic step: one LMDB write transaction reads, decides and writes,
    // taken in this process's write turn (see WriteTurn).
    this.update = (name, step) =>
      this.turn.run(async () => {
        const value = await this.records.transaction(() => {
          const raw = this.records.getBinary(name);
          const decided = step(raw === undefined ? undefined : parseRecord(name, raw));
          if (decided.write !== undefined) this.records.putSync(name, Buffer.from(serializeRecord(decided.write)));
          return decided.value;
        });
        if (durability === 'flush') await this.env.flushed;
        return { value };
      });
  }

  /**
   * Opens a store, creating it if the directory has none. Opening takes a
   * write turn (lmdb-js opens tables in a write transaction): a crowd of
   * processes starting on an empty directory create it one at a time, the
   * first stamping the schema version the others then check.
   */
  static async open(path: string, durability: 'flush' | 'commit'): Promise<LmdbDriver> {
    try {
      await mkdir(path, { recursive: true });
      const turn = new WriteTurn(path);
      const { env, records } = await turn.run(async () => {
        const env = openEnv(join(path, 'idem.mdb'), durability);
        const meta = env.openDB<number, string>({ name: 'meta' });
        const found = await meta.transaction(() => {
          const schema = meta.get('schema');
          if (schema === undefined) meta.putSync('schema', SCHEMA);
          return schema ?? SCHEMA;
        });
        if (found !== SCHEMA) {
          await env.close();
          throw new CorruptRecordError(path, `store schema ${String(found)} is not ${SCHEMA}: written by another version of @idem/lmdb`);
        }
        return { env, records: env.openDB<Buffer, string>({ name: 'records', encoding: 'binary' }) };
      });
      return new LmdbDriver(env, records, durability, turn);
    } catch (error) {
      if (error instanceof CorruptRecordError) throw error;
      throw new BackendUnavailableError(`cannot open LMDB store at ${path}: ${(error as Error).message}`, error);
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
    return this.turn.run(() =>
      this.records.transaction(() => {
        const raw = this.records.getBinary(name);
        if (raw === undefined) return false;
        if (expected !== undefined && !sameRecord(name, raw, expected.record)) return false;
        return this.records.removeSync(name);
      }),
    );
  }

  async writeRaw(name: string, bytes: string | Uint8Array) {
    await this.turn.run(() => this.records.put(name, Buffer.from(bytes)));
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

/**
 * overlappingSync (lmdb-js's default) releases the writer lock before a commit
 * is flushed. With processes sharing the file, that lost claims under load in
 * our 8-process test (two winners of one key, or MDB_BAD_TXN: 3 of 70 runs).
 * Off, each commit is whole before the next writer starts; 'commit'
 * durability then skips the fsync instead (noSync).
 */
function openEnv(file: string, durability: 'flush' | 'commit'): RootDatabase {
  return open({ path: file, overlappingSync: false, noSync: durability === 'commit' });
}

type Unlock = () => Promise<void>;
/** A turn held this long takes no new writers, so that other processes get theirs. */
const MAX_TURN_MS = 20;
/** proper-lockfile's minimum: a process that died in its turn holds it up this long. */
const STALE_TURN_MS = 5_000;

/**
 * Processes write in turns: a process takes proper-lockfile's lock before its
 * first write transaction (opening the environment counts: lmdb-js opens
 * tables in one) and gives it back when its last one in flight has
 * committed. LMDB's own writer lock should be enough, but it was not in our
 * tests: 8 processes claiming the same keys of a new store under CPU load
 * gave one key two winners (the second transaction did not see the first's
 * commit) in 8 of 640 runs, whatever we tried short of this (creation under
 * a lock, a ready marker, reopening after creating), and 2 of about
 * 30 with writes but not opens in turns; with opens and writes in turns, 0
 * of 200. Concurrent claims of one process share a turn (lmdb-js batches
 * them), so the lock costs a round trip per turn, not per claim (see the bench).
 */
class WriteTurn {
  private lock: Promise<Unlock> | undefined;
  private since = Number.POSITIVE_INFINITY;
  private writers = 0;
  private ended: Promise<void> = Promise.resolve();
  private end: () => void = () => undefined;

  constructor(private readonly dir: string) {}

  async run<T>(write: () => Promise<T>): Promise<T> {
    while (this.lock !== undefined && Date.now() - this.since > MAX_TURN_MS) await this.ended;
    if (this.lock === undefined) {
      this.ended = new Promise((resolve) => (this.end = resolve));
      this.since = Number.POSITIVE_INFINITY; // a turn being waited for still takes writers
      this.lock = takeTurn(this.dir).then((unlock) => {
        this.since = Date.now();
        return unlock;
      });
    }
    const lock = this.lock;
    const end = this.end;
    this.writers++;
    try {
      await lock;
      return await write();
    } finally {
      if (--this.writers === 0) {
        this.lock = undefined;
        await lock.then(
          (unlock) => unlock(),
          () => undefined, // the turn was never taken: its error already reached every writer
        );
        end();
      }
    }
  }
}

async function takeTurn(dir: string): Promise<Unlock> {
  const { default: lockfile } = await import('proper-lockfile');
  try {
    const unlock = await lockfile.lock(dir, {
      lockfilePath: join(dir, 'write.lock'),
      realpath: false, // the directory is ours and exists: save a syscall per turn
      stale: STALE_TURN_MS,
      retries: { retries: 1_000, minTimeout: 1, maxTimeout: 20 },
      // A turn lasts milliseconds; if its lock was taken over as stale, the writes already ran. Say so, do not crash.
      onCompromised: (error) => process.emitWarning(`@idem/lmdb: write turn lock on ${dir} was compromised: ${error.message}`),
    });
    return () =>
      unlock().catch((error: unknown) => process.emitWarning(`@idem/lmdb: could not release the write turn on ${dir}: ${(error as Error).message}`));
  } catch (error) {
    throw new BackendUnavailableError(`cannot take the write turn on ${dir}: ${(error as Error).message}`, error);
  }
}
