// An adapter written outside the repo, as a user would: one JSON file per
// record in a directory, built by core's createStore from compare-and-swap
// file primitives. Every write of a name happens under that name's lock (an
// atomic mkdir), and lands by rename, so readers never see a partial file.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONFLICT, createStore, parseRecord, type CasParts, type IdempotencyStore, type ScanPage, type StoreOptions, type Versioned } from '@idem/core/adapter';

export interface FileStoreOptions extends StoreOptions {
  dir: string;
}

/** Built as adapter authors are told to (docs/adapters.md): compare-and-swap parts that core composes. */
export async function createFileStore({ dir, ...options }: FileStoreOptions): Promise<IdempotencyStore> {
  return createStore(options, async () => {
    for (const sub of ['records', 'locks', 'tmp']) await mkdir(join(dir, sub), { recursive: true });
    return new FileParts(dir);
  });
}

const versionOf = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

class FileParts implements CasParts {
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  private readonly dir: string;

  // No parameter properties: Node runs this file by stripping types, which allows only erasable syntax.
  constructor(dir: string) {
    this.dir = dir;
  }

  // Timeline: lock(name) -> file absent? -> rename(tmp, name) -> unlock. Present: CONFLICT.
  create(name: string, body: string) {
    return this.locked(name, async () => ((await this.readBytes(name)) !== undefined ? CONFLICT : this.put(name, body)));
  }

  // Timeline: lock(name) -> bytes still hash to `version`? -> rename(tmp, name) -> unlock. Else: CONFLICT.
  replace(name: string, body: string, version: string) {
    return this.locked(name, async () => {
      const bytes = await this.readBytes(name);
      return bytes === undefined || versionOf(bytes) !== version ? CONFLICT : this.put(name, body);
    });
  }

  async read(name: string): Promise<Versioned | undefined> {
    const bytes = await this.readBytes(name);
    return bytes === undefined ? undefined : { record: parseRecord(name, bytes), version: versionOf(bytes) };
  }

  /** Names in byte order, strictly after `after`. */
  async scan(after: string | undefined, limit: number): Promise<ScanPage> {
    const names = (await readdir(join(this.dir, 'records'))).sort().filter((n) => after === undefined || n > after);
    const page = names.slice(0, limit);
    const last = page.at(-1);
    return { entries: page.map((name) => ({ name })), ...(names.length > limit && last !== undefined ? { next: last } : {}) };
  }

  // Timeline: lock(name) -> (with `expected`) bytes still that version? -> unlink -> unlock.
  delete(name: string, expected?: Versioned) {
    return this.locked(name, async () => {
      const bytes = await this.readBytes(name);
      if (bytes === undefined) return false;
      if (expected !== undefined && versionOf(bytes) !== expected.version) return false;
      await unlink(join(this.dir, 'records', name));
      return true;
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
