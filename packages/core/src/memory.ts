// The reference in-memory driver, and the template for adapter authors: a
// driver is a handful of storage primitives; every decision (claim outcomes,
// fencing, expiry) comes from core through claimWith/finishWith. Copy this
// file, replace the Map with your backend, and keep the atomic step atomic.
// It passes @idem/conformance; it lives in one process (sharedAcrossProcesses: false).
import { claimWith, finishWith, type AtomicUpdate } from './atomic.js';
import type { Capabilities, Driver, DriverContext, ListPage, ListQuery, SweepCounts } from './driver.js';
import { CorruptRecordError, InvalidArgumentError } from './errors.js';
import { isSweepable } from './decide.js';
import { isExpired, parseRecord, serializeRecord, type IdemRecord } from './record.js';
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

export class MemoryDriver implements Driver {
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
   * The cursor is the storage name the next page starts at. Names are
   * scanned in sorted order, so a record present for the whole listing is on
   * some page however others come and go.
   */
  async list(query: ListQuery, _ctx: DriverContext): Promise<ListPage> {
    const records: IdemRecord[] = [];
    for (const name of [...this.backend.keys()].sort()) {
      if (query.cursor !== undefined && name < query.cursor) continue;
      if (records.length === query.limit) return { records, cursor: name };
      const record = this.load(name);
      if (record !== undefined && query.filter(record)) records.push(record);
    }
    return { records };
  }

  async sweep(ctx: DriverContext): Promise<SweepCounts> {
    const counts = { expired: 0, deadLeases: 0 };
    const now = ctx.now();
    for (const name of [...this.backend.keys()]) {
      let record: IdemRecord | undefined;
      try {
        record = this.load(name);
      } catch (error) {
        // Corrupt records are left for a human: sweep never deletes what it cannot read.
        if (error instanceof CorruptRecordError) continue;
        throw error;
      }
      // Judged and deleted in the same synchronous stretch as the read, so a
      // renewal or takeover cannot land in between (a real backend re-checks
      // inside its atomic step, or deletes conditioned on the version read).
      if (record === undefined || !isSweepable(record, now)) continue;
      this.backend.delete(name);
      if (isExpired(record, now)) counts.expired++;
      else counts.deadLeases++;
    }
    return counts;
  }

  async remove(name: string): Promise<boolean> {
    return this.backend.delete(name);
  }

  /** Lets the conformance suite plant corrupt bytes; without it the corrupt-record tests are skipped. */
  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    this.backend.set(name, typeof bytes === 'string' ? bytes : Uint8Array.from(bytes));
  }

  async close(): Promise<void> {
    // Nothing to release: the backend is garbage once no store refers to it.
  }
}
