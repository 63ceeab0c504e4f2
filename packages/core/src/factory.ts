// The one way a store is built: options are validated first (before the
// adapter touches its backend), then the adapter's parts are composed into a
// Driver (the claim/finish pass-through written once), then the store.
import { casUpdate, claimWith, finishWith, type AtomicUpdate, type CasPrimitives } from './atomic.js';
import type { Capabilities, Driver } from './driver.js';
import { BackendUnavailableError, InvalidArgumentError } from './errors.js';
import type { IdemRecord } from './record.js';
import { scanList, scanSweep, type ScanPrimitives } from './scan.js';
import { IdempotencyStore, resolveStoreOptions, type ResolvedStoreOptions, type StoreOptions } from './store.js';

interface CommonParts extends ScanPrimitives {
  readonly capabilities: Capabilities;
  /** The backend's kind as events name it (lmdb, s3, gcs…). */
  readonly kind?: string;
  close(): Promise<void>;
  /** Test hook: raw bytes under a storage name (the conformance suite's corrupt-record tests need it). */
  writeRaw?(name: string, bytes: string | Uint8Array): Promise<void>;
  /** Throws when this backend cannot sweep safely (e.g. it ignores conditional deletes); called before every sweep. */
  beforeSweep?(): void;
}

/** A store with a transaction: one read-decide-write step (see AtomicUpdate). */
export interface TransactionalParts extends CommonParts {
  update: AtomicUpdate;
}

/** An object store: conditional create and replace; `read` must return the version they condition on. */
export interface CasParts extends CommonParts {
  create: CasPrimitives['create'];
  replace: CasPrimitives['replace'];
}

/** What an adapter provides: a full Driver, or parts that core composes into one. */
export type DriverSource = Driver | TransactionalParts | CasParts;

/** Composes a Driver from parts: claim/finish through the atomic step, get/list/sweep/delete through the scan primitives. */
export function composeDriver(parts: TransactionalParts | CasParts): Driver {
  let update: AtomicUpdate;
  if ('update' in parts && typeof parts.update === 'function') {
    update = parts.update;
  } else if ('create' in parts && typeof parts.create === 'function' && typeof parts.replace === 'function') {
    const cas = parts;
    update = casUpdate({
      read: async (name) => {
        const found = await parts.read(name);
        if (found !== undefined && found.version === undefined)
          throw new BackendUnavailableError(`read of ${name}: no version, so no conditional write is possible`);
        return found as { record: IdemRecord; version: string } | undefined;
      },
      // Called as methods: adapters are often classes.
      create: (name, body) => cas.create(name, body),
      replace: (name, body, version) => cas.replace(name, body, version),
    });
  } else {
    throw new InvalidArgumentError('driver parts need either update() or create() and replace()');
  }
  return {
    capabilities: parts.capabilities,
    ...(parts.kind !== undefined ? { kind: parts.kind } : {}),
    claim: (input, ctx) => claimWith(update, input, ctx),
    finish: (lease, op, ctx) => finishWith(update, lease, op, ctx),
    read: async (name) => (await parts.read(name))?.record,
    list: (query) => scanList(parts, query),
    sweep: async (ctx) => {
      parts.beforeSweep?.();
      return scanSweep(parts, ctx);
    },
    remove: (name) => parts.delete(name),
    close: () => parts.close(),
    atomicUpdate: update,
    parts,
    ...(parts.writeRaw ? { writeRaw: parts.writeRaw.bind(parts) } : {}),
  };
}

const isDriver = (source: DriverSource): source is Driver => typeof (source as Driver).claim === 'function' && typeof (source as Driver).finish === 'function';

/**
 * Builds a store. `options` are validated once, before `open` runs, so bad
 * options never reach the backend; `open` gets them resolved (defaults
 * applied) and returns a Driver or parts to compose.
 *
 *   export const createMyStore = (o: MyOptions) => {
 *     const { path, ...storeOptions } = o; // check your own options first
 *     return createStore(storeOptions, async () => ({ capabilities, update, scan, read, delete, close }));
 *   };
 */
export async function createStore(
  options: StoreOptions | undefined,
  open: (resolved: ResolvedStoreOptions) => DriverSource | Promise<DriverSource>,
): Promise<IdempotencyStore> {
  const resolved = resolveStoreOptions(options);
  const source = await open(resolved);
  return new IdempotencyStore(isDriver(source) ? source : composeDriver(source), resolved);
}
