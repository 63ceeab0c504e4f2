import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import {
  BackendUnavailableError,
  claimWith,
  CorruptRecordError,
  finishWith,
  IdempotencyStore,
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
}

/** Opens (creating if needed) an embedded store. */
export async function createLmdbStore(options: LmdbStoreOptions): Promise<IdempotencyStore> {
  const { path, durability = 'flush', ...storeOptions } = options ?? ({} as LmdbStoreOptions);
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('path must be a non-empty directory path');
  if (durability !== 'flush' && durability !== 'commit') throw new InvalidArgumentError('durability must be "flush" or "commit"');
  resolveStoreOptions(storeOptions); // bad options fail before the disk is touched
  return new IdempotencyStore(await LmdbDriver.open(path, durability), storeOptions);
}

class LmdbDriver implements Driver {
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  private readonly update: AtomicUpdate;

  private constructor(
    private readonly env: RootDatabase,
    private readonly records: Database<Buffer, string>,
    durability: 'flush' | 'commit',
  ) {
    // The atomic step: one LMDB write transaction reads, decides and writes.
    // LMDB's own writer lock (shared by every process mapping the file)
    // serialises these, so no file lock is taken per claim.
    this.update = async (name, step) => {
      const value = await this.records.transaction(() => {
        const raw = this.records.getBinary(name);
        const decided = step(raw === undefined ? undefined : parseRecord(name, raw));
        if (decided.write !== undefined) this.records.putSync(name, Buffer.from(serializeRecord(decided.write)));
        return decided.value;
      });
      if (durability === 'flush') await this.env.flushed;
      return { value };
    };
  }

  /**
   * proper-lockfile guards the one step LMDB does not order by itself: the
   * first creation of a store (its directory, its environment file and the
   * schema-version stamp), so that a crowd of processes starting on an empty
   * directory meets one finished store. An existing store is opened without
   * it (the stamp check is an LMDB write transaction, atomic on its own), and
   * the lock is never taken per claim: there it would add a lock-file round
   * trip to every claim (see the bench) while guarding nothing LMDB's writer
   * lock does not. Skipping it on reopen also keeps it, and its import, off
   * the start of every `idem run`.
   */
  static async open(path: string, durability: 'flush' | 'commit'): Promise<LmdbDriver> {
    try {
      await mkdir(path, { recursive: true });
      const file = join(path, 'idem.mdb');
      const unlock = existsSync(file) ? undefined : await lockCreation(path);
      try {
        const env = open({ path: file });
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
        return new LmdbDriver(env, env.openDB<Buffer, string>({ name: 'records', encoding: 'binary' }), durability);
      } finally {
        await unlock?.();
      }
    } catch (error) {
      if (error instanceof CorruptRecordError) throw error;
      throw new BackendUnavailableError(`cannot open LMDB store at ${path}: ${(error as Error).message}`, error);
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
    const counts = { expired: 0, deadLeases: 0 };
    let batch: string[] = [];
    const flush = async () => {
      const names = batch;
      batch = [];
      // Re-check inside the transaction: a record may have been renewed or reclaimed since it was scanned.
      await this.records.transaction(() => {
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
      });
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
    return this.records.transaction(() => this.records.getBinary(name) !== undefined && this.records.removeSync(name));
  }

  async writeRaw(name: string, bytes: string | Uint8Array) {
    await this.records.put(name, Buffer.from(bytes));
  }

  async close() {
    await this.env.close();
  }
}

async function lockCreation(path: string): Promise<() => Promise<void>> {
  const { default: lockfile } = await import('proper-lockfile');
  return lockfile.lock(path, { lockfilePath: join(path, 'open.lock'), retries: { retries: 100, minTimeout: 10, maxTimeout: 100 }, stale: 10_000 });
}
