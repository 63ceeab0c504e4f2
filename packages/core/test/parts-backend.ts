// PartsBackend: a small in-memory backend for core's own tests, built the way
// adapters are: parts handed to createStore (not @idem/core/memory's
// MemoryBackend, which is a plain Map). `transactional()` and `cas()` pick the
// atomic step: a transaction (one synchronous read-decide-write) or
// compare-and-swap primitives.
import {
  CONFLICT,
  parseRecord,
  serializeRecord,
  type AtomicUpdate,
  type CasParts,
  type ScanPage,
  type TransactionalParts,
  type Versioned,
} from '../src/adapter.js';

export class PartsBackend {
  readonly objects = new Map<string, { bytes: string; version: number }>();
  private next = 1;
  /** Counts calls to each primitive, to show what a store did. */
  readonly calls: Record<string, number> = {};

  private count(what: string) {
    this.calls[what] = (this.calls[what] ?? 0) + 1;
  }

  private put(name: string, bytes: string): string {
    const version = this.next++;
    this.objects.set(name, { bytes, version });
    return String(version);
  }

  private common() {
    return {
      capabilities: { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: false } as const,
      concurrency: 4,
      read: async (name: string): Promise<Versioned | undefined> => {
        this.count('read');
        const o = this.objects.get(name);
        return o === undefined ? undefined : { record: parseRecord(name, o.bytes), version: String(o.version) };
      },
      scan: async (after: string | undefined, limit: number): Promise<ScanPage> => {
        this.count('scan');
        const names = [...this.objects.keys()].sort().filter((n) => after === undefined || n > after);
        const page = names.slice(0, limit);
        return { entries: page.map((name) => ({ name })), ...(names.length > limit ? { next: page.at(-1)! } : {}) };
      },
      delete: async (name: string, expected?: Versioned): Promise<boolean> => {
        this.count('delete');
        const o = this.objects.get(name);
        if (o === undefined || (expected !== undefined && String(o.version) !== expected.version)) return false;
        return this.objects.delete(name);
      },
      close: async () => undefined,
      writeRaw: async (name: string, bytes: string | Uint8Array) => {
        this.put(name, typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('latin1'));
      },
    };
  }

  transactional(): TransactionalParts {
    const update: AtomicUpdate = async (name, step) => {
      this.count('update');
      const o = this.objects.get(name);
      const decided = step(o === undefined ? undefined : parseRecord(name, o.bytes));
      if (decided.write === undefined) return { value: decided.value };
      return { value: decided.value, version: this.put(name, serializeRecord(decided.write)) };
    };
    return { ...this.common(), update };
  }

  cas(): CasParts {
    return {
      ...this.common(),
      create: async (name, body) => {
        this.count('create');
        return this.objects.has(name) ? CONFLICT : this.put(name, body);
      },
      replace: async (name, body, version) => {
        this.count('replace');
        const o = this.objects.get(name);
        return o === undefined || String(o.version) !== version ? CONFLICT : this.put(name, body);
      },
    };
  }
}
