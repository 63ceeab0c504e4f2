// Forced interleavings: a store composed again from the parts an adapter gave
// createStore (Driver.parts), with a pause before each write that depends on
// an earlier read. A test arms a pause with a competing operation; the
// operation runs to its end inside the window, then the write goes on. So a
// window is proved closed on every backend, synchronous ones included,
// instead of hoping the scheduler lands a rival there.
import { composeDriver, IdempotencyStore, type CasParts, type TransactionalParts } from '@idem/core/adapter';

/** The writes that act on an earlier check: sweep's conditional delete, and an object store's conditional create and replace. */
export type Window = 'delete' | 'create' | 'replace';

export interface Interposed {
  /** The same backend as the store it was built from, with pausing writes. Closing it is left to that store. */
  store: IdempotencyStore;
  /** 'transaction': claims and finishes are the adapter's own atomic update (no window core can reach). 'cas': core's read then conditional write. */
  kind: 'transaction' | 'cas';
  /** The next time `window` is reached, run `rival` there and wait for it before the write. */
  arm(window: Window, rival: () => Promise<unknown>): void;
  /** Rivals armed but never reached: a test asserts this is empty, so that it proved the window it names. */
  unreached(): Window[];
}

/** Undefined when the store is a full Driver (its atomic steps are the backend's, e.g. a Valkey script). */
export function interpose(store: IdempotencyStore): Interposed | undefined {
  const parts = store.driver.parts;
  if (parts === undefined) return undefined;
  const armed = new Map<Window, () => Promise<unknown>>();
  const pause = async (window: Window) => {
    const rival = armed.get(window);
    armed.delete(window);
    if (rival) await rival();
  };
  // Methods are called on `parts` (adapters are often classes); close is the original store's.
  const common = {
    capabilities: parts.capabilities,
    scan: (after: string | undefined, limit: number) => parts.scan(after, limit),
    read: (name: string, version?: string) => parts.read(name, version),
    delete: async (name: string, expected?: Parameters<TransactionalParts['delete']>[1]) => {
      if (expected !== undefined) await pause('delete');
      return parts.delete(name, expected);
    },
    close: async () => {},
    ...(parts.concurrency !== undefined ? { concurrency: parts.concurrency } : {}),
    ...(parts.beforeSweep ? { beforeSweep: () => parts.beforeSweep!() } : {}),
  };
  let recomposed: TransactionalParts | CasParts;
  if ('update' in parts && typeof parts.update === 'function') {
    const tx = parts;
    recomposed = { ...common, update: (name, step, guess) => tx.update(name, step, guess) };
  } else {
    const cas = parts as CasParts;
    recomposed = {
      ...common,
      create: async (name, body) => {
        await pause('create');
        return cas.create(name, body);
      },
      replace: async (name, body, version) => {
        await pause('replace');
        return cas.replace(name, body, version);
      },
    };
  }
  const options = {
    leaseMs: store.leaseMs,
    retentionMs: store.retentionMs,
    dedupOn: store.dedupOn,
    hashKeys: store.hashKeys,
    maxResultBytes: store.maxResultBytes,
    clock: store.clock,
    clockSkewMs: store.clockSkewMs,
  };
  return {
    store: new IdempotencyStore(composeDriver(recomposed), options),
    kind: 'update' in recomposed ? 'transaction' : 'cas',
    arm: (window, rival) => void armed.set(window, rival),
    unreached: () => [...armed.keys()],
  };
}
