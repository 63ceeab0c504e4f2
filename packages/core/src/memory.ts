// The reference in-memory driver, and the template for adapter authors: a
// driver is a handful of storage primitives; every decision (claim outcomes,
// fencing, expiry) comes from core through claimWith/finishWith. Copy this
// file, replace the Map with your backend, and keep the atomic step atomic.
// It passes @idem/conformance; it lives in one process (sharedAcrossProcesses: false).
import { claimWith, finishWith, type AtomicUpdate } from './atomic.js';
import type { Capabilities, Driver, DriverContext, ListPage, ListQuery, SweepCounts } from './driver.js';
import { InvalidArgumentError } from './errors.js';
import { parseRecord, serializeRecord, type IdemRecord } from './record.js';
import { scanList, scanSweep, type ScanPage, type ScanPrimitives } from './scan.js';
import type { TransactionalParts } from './factory.js';
import { IdempotencyStore, type StoreOptions } from './store.js';

/** What a backend holds: storage name → stored bytes. Bytes, not objects, so that corrupt records can exist as they do on disk. */
export type MemoryBackend = Map<string, string | Uint8Array>;

export interface MemoryStoreOptions extends StoreOptions {
  /** Share one backend between stores to model several clients of one server; a new one by default. */
  backend?: MemoryBackend;
}

/** A store held in this process's memory: for tests, and as the shape of a real adapter's factory. */
export function createMemoryStore(options: MemoryStoreOptions = {}): IdempotencyStore {
  const { backend = new Map(), ...storeOptions } = options ?? {};
  if (!(backend instanceof Map)) throw new InvalidArgumentError('backend must be a Map of storage name to stored bytes');
  // IdempotencyStore validates the options before the driver sees any call.
  return new IdempotencyStore(new MemoryDriver(backend), storeOptions);
}

/**
 * A class with protected parts (backend, update, load, scanning) rather than closures, because
 * @idem/conformance's mutants (packages/conformance/src/mutants.ts) subclass it, each breaking
 * one rule; keep that shape when changing it.
 */
export class MemoryDriver implements Driver {
  readonly kind: string = 'memory';
  // Leases and retention are judged by the store's clock (injectable), not the backend's.
  readonly capabilities: Capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: false };

  constructor(protected readonly backend: MemoryBackend = new Map()) {}

  /**
   * The atomic step: read, decide, write. Here they run in one synchronous
   * stretch, so no other call of this process can come between them. A real
   * backend puts the same three inside a transaction (LMDB), a server-side
   * script (Valkey) or a write conditioned on what was read (casUpdate: S3, GCS).
   */
  protected update: AtomicUpdate = async (name, step) => {
    const decided = step(this.load(name));
    if (decided.write !== undefined) this.backend.set(name, serializeRecord(decided.write));
    return { value: decided.value };
  };

  /** Parses what is stored; CorruptRecordError for anything unreadable, which then is never overwritten. */
  protected load(name: string): IdemRecord | undefined {
    const raw = this.backend.get(name);
    return raw === undefined ? undefined : parseRecord(name, raw);
  }

  claim: Driver['claim'] = (input, ctx) => claimWith(this.update, input, ctx);
  finish: Driver['finish'] = (lease, op, ctx) => finishWith(this.update, lease, op, ctx);

  async read(name: string): Promise<IdemRecord | undefined> {
    return this.load(name);
  }

  /**
   * What core needs to list and sweep (docs/adapters.md): names in sorted
   * order strictly after `after`, the record under a name, and a delete that
   * removes only the record read. list() and sweep() are core's, over these.
   */
  protected readonly scanning: ScanPrimitives = {
    scan: async (after, limit): Promise<ScanPage> => {
      const names = [...this.backend.keys()].sort().filter((name) => after === undefined || name > after);
      const page = names.slice(0, limit);
      return { entries: page.map((name) => ({ name })), ...(names.length > limit ? { next: page.at(-1)! } : {}) };
    },
    read: async (name) => {
      const record = this.load(name);
      return record === undefined ? undefined : { record };
    },
    // Compared and deleted in one synchronous stretch: a renewal or takeover since the read keeps the record.
    delete: async (name, expected) => {
      const raw = this.backend.get(name);
      if (raw === undefined || (expected !== undefined && raw !== serializeRecord(expected.record))) return false;
      return this.backend.delete(name);
    },
  };

  async list(query: ListQuery, _ctx: DriverContext): Promise<ListPage> {
    return scanList(this.scanning, query);
  }

  async sweep(ctx: DriverContext): Promise<SweepCounts> {
    return scanSweep(this.scanning, ctx);
  }

  async remove(name: string): Promise<boolean> {
    return this.backend.delete(name);
  }

  /** Lets the conformance suite plant corrupt bytes; without it the corrupt-record tests are skipped. */
  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    this.backend.set(name, typeof bytes === 'string' ? bytes : Uint8Array.from(bytes));
  }

  /** The same primitives as parts (Driver.parts), for the conformance suite to recompose with pauses. */
  get parts(): TransactionalParts {
    return {
      capabilities: this.capabilities,
      update: this.update,
      ...this.scanning,
      writeRaw: (name, bytes) => this.writeRaw(name, bytes),
      close: () => this.close(),
    };
  }

  async close(): Promise<void> {
    // Nothing to release: the backend is garbage once no store refers to it.
  }
}
