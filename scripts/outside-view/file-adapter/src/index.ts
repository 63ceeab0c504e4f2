// An adapter written outside the repo, as a user would: one JSON file per
// record in a directory, built from core's casUpdate over three file
// primitives. Every write of a name happens under that name's lock (an
// atomic mkdir), and lands by rename, so readers never see a partial file.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  casUpdate,
  claimWith,
  CONFLICT,
  CorruptRecordError,
  finishWith,
  IdempotencyStore,
  isExpired,
  isSweepable,
  parseRecord,
  type AtomicUpdate,
  type Driver,
  type IdemRecord,
  type StoreOptions,
} from '@idem/core';

export interface FileStoreOptions extends StoreOptions {
  dir: string;
}

export async function createFileStore({ dir, ...options }: FileStoreOptions): Promise<IdempotencyStore> {
  for (const sub of ['records', 'locks', 'tmp']) await mkdir(join(dir, sub), { recursive: true });
  return new IdempotencyStore(new FileDriver(dir), options);
}

const versionOf = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

class FileDriver implements Driver {
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  private readonly dir: string;
  private readonly update: AtomicUpdate;

  // No parameter properties: Node runs this file by stripping types, which allows only erasable syntax.
  constructor(dir: string) {
    this.dir = dir;
    this.update = casUpdate({
      read: (name) => this.readVersioned(name),
      // Timeline: lock(name) -> file absent? -> rename(tmp, name) -> unlock. Present: CONFLICT.
      create: (name, body) => this.locked(name, async () => ((await this.readBytes(name)) !== undefined ? CONFLICT : this.put(name, body))),
      // Timeline: lock(name) -> bytes still hash to `version`? -> rename(tmp, name) -> unlock. Else: CONFLICT.
      replace: (name, body, version) =>
        this.locked(name, async () => {
          const bytes = await this.readBytes(name);
          return bytes === undefined || versionOf(bytes) !== version ? CONFLICT : this.put(name, body);
        }),
    });
  }

  claim: Driver['claim'] = (input, ctx) => claimWith(this.update, input, ctx);
  finish: Driver['finish'] = (lease, op, retentionMs, ctx) => finishWith(this.update, lease, op, retentionMs, ctx);

  async read(name: string): Promise<IdemRecord | undefined> {
    return (await this.readVersioned(name))?.record;
  }

  async list(query: Parameters<Driver['list']>[0]) {
    // The cursor is the last name returned: the next page starts after it.
    const names = (await readdir(join(this.dir, 'records'))).sort().filter((n) => query.cursor === undefined || n > query.cursor);
    const records: IdemRecord[] = [];
    for (const name of names) {
      const record = await this.read(name);
      if (record === undefined || !query.filter(record)) continue;
      records.push(record);
      if (records.length === query.limit) return { records, cursor: name };
    }
    return { records };
  }

  async sweep(ctx: Parameters<Driver['sweep']>[0]) {
    const counts = { expired: 0, deadLeases: 0 };
    for (const name of await readdir(join(this.dir, 'records'))) {
      await this.locked(name, async () => {
        let record: IdemRecord | undefined;
        try {
          record = await this.read(name);
        } catch (error) {
          // A record we cannot read is left for a human, never deleted.
          if (error instanceof CorruptRecordError) return;
          throw error;
        }
        const now = ctx.now();
        if (record === undefined || !isSweepable(record, now)) return;
        await unlink(join(this.dir, 'records', name));
        if (isExpired(record, now)) counts.expired++;
        else counts.deadLeases++;
      });
    }
    return counts;
  }

  remove(name: string) {
    return this.locked(name, async () => {
      try {
        await unlink(join(this.dir, 'records', name));
        return true;
      } catch (error) {
        if (isMissing(error)) return false;
        throw error;
      }
    });
  }

  writeRaw(name: string, bytes: string | Uint8Array) {
    return this.locked(name, async () => void (await this.put(name, bytes)));
  }

  async close() {}

  private async readBytes(name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(join(this.dir, 'records', name));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  private async readVersioned(name: string) {
    const bytes = await this.readBytes(name);
    return bytes === undefined ? undefined : { record: parseRecord(name, bytes), version: versionOf(bytes) };
  }

  private async put(name: string, bytes: string | Uint8Array): Promise<string> {
    const tmp = join(this.dir, 'tmp', randomUUID());
    await writeFile(tmp, bytes);
    await rename(tmp, join(this.dir, 'records', name));
    return versionOf(bytes);
  }

  /** Runs fn while holding name's lock. A process that dies holding it blocks the name (fine for a fixture). */
  private async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const lock = join(this.dir, 'locks', name);
    for (;;) {
      try {
        await mkdir(lock);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    try {
      return await fn();
    } finally {
      await rmdir(lock);
    }
  }
}

