// What every topic file of the suite receives: the adapter's options and
// ways to open isolated stores and to make time pass.
import type { IdempotencyStore, JsonValue, StoreOptions } from '@idem/core';
import { TestClock } from './clock.js';
import { sleep } from './testing.js';

export interface ConformanceOptions {
  /** Shown in the test names. */
  name: string;
  /** A fresh store, isolated from every other call's (new directory, prefix or namespace). */
  createStore(options: StoreOptions): Promise<IdempotencyStore> | IdempotencyStore;
  /**
   * Optional: `count` handles (clients, connections, environments) on ONE
   * fresh isolated store, all with these options. The suite races them
   * against each other in this process: a lock that holds within one
   * handle but not across handles fails here, before the multi-process race.
   */
  createSharedStores?(options: StoreOptions, count: number): Promise<IdempotencyStore[]>;
  /**
   * For the multi-process race: `module` (a file URL; `.mjs`, `.js`, or `.ts`
   * run by Node's type stripping) default-exports `async (options) =>
   * IdempotencyStore`; `options()` describes a fresh isolated store as JSON,
   * handed to every worker process. Skipped when the store declares
   * `sharedAcrossProcesses: false`.
   */
  processes?: { module: string; options(): Promise<JsonValue> | JsonValue };
  /** false skips everything, e.g. when no server is configured outside CI. Default true. */
  enabled?: boolean;
  /** Lease used where real time must pass (server-clock stores). Default 400 ms. */
  realLeaseMs?: number;
  /**
   * Model-based tests: random command sequences against the store and core's
   * decision functions. Runs per store kind (default 25 client-clock, 6
   * server-clock); env IDEM_MODEL_RUNS overrides, IDEM_MODEL_SEED replays a
   * printed seed (IDEM_MODEL_PATH too, to replay one counterexample). `false` skips them.
   */
  model?: { runs?: number; steps?: number } | false;
}

/** A store with a way to make time pass: the injected clock where the store judges time client-side, real sleeping where the server does. */
export interface Timed {
  store: IdempotencyStore;
  /** True when the store judges time by the injected clock. */
  client: boolean;
  /** A lease that a few `pass(leaseMs * 1.5)` calls outlive. */
  leaseMs: number;
  pass(ms: number): Promise<void>;
  /** The injected clock (client-clock stores judge time by it). */
  clock: TestClock;
}

export interface Suite {
  opts: ConformanceOptions;
  open(options?: StoreOptions): Promise<IdempotencyStore>;
  /** Stores on one backend (createSharedStores), or undefined when the adapter offers none. */
  openShared?(options: StoreOptions, count: number): Promise<IdempotencyStore[]>;
  timed(options?: StoreOptions): Promise<Timed>;
  /** A key no other test uses. */
  key(label: string): string;
}

export function createSuite(opts: ConformanceOptions, opened: IdempotencyStore[]): Suite {
  const realLeaseMs = opts.realLeaseMs ?? 400;
  const open = async (options: StoreOptions = {}) => {
    const store = await opts.createStore(options);
    opened.push(store);
    return store;
  };
  let seq = 0;
  const suite: Suite = {
    opts,
    open,
    key: (label) => `${label}/${process.pid}/${seq++}/${Math.random().toString(36).slice(2)}`,
    async timed(options = {}) {
      const clock = new TestClock();
      const store = await open({ ...options, clock: clock.now });
      const client = store.capabilities.clock === 'client';
      return {
        store,
        client,
        clock,
        leaseMs: client ? 60_000 : realLeaseMs,
        pass: async (ms: number) => (client ? clock.advance(ms) : sleep(ms)),
      };
    },
  };
  if (opts.createSharedStores) {
    const create = opts.createSharedStores.bind(opts);
    suite.openShared = async (options, count) => {
      const stores = await create(options, count);
      opened.push(...stores);
      return stores;
    };
  }
  return suite;
}
