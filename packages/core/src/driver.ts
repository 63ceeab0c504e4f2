// What an adapter implements. The public store (store.ts) validates every
// argument and applies policy first, so a driver only sees well-formed input.
import type { AtomicUpdate } from './atomic.js';
import type { ClaimInput, ClaimOutcome, FinishOp, FinishValue, Lease } from './decide.js';
import type { IdemRecord, Labels } from './record.js';

/** Declared by each driver; the conformance suite branches on these, never on names. */
export interface Capabilities {
  /** The backend forgets records by itself (Valkey PX); sweep() is a no-op that returns zeros. */
  nativeExpiry: boolean;
  /** 'client': leases and retention are judged with the store's injectable clock. 'server': with the backend's. */
  clock: 'client' | 'server';
  /** Several OS processes may share one store (a path, a server, a bucket); the suite's multi-process race runs only then. */
  sharedAcrossProcesses: boolean;
  /**
   * false: this store's sweep deletes without a condition (a backend that ignores conditional
   * deletes, used with the user's explicit opt-in), so a sweep racing a takeover may delete the
   * new owner's record; the suite then skips that race. Absent means true.
   */
  conditionalSweep?: boolean;
}

/** Policy the store hands to every driver call. */
export interface DriverContext {
  /** Epoch ms by the store's clock (injectable in tests). */
  now(): number;
  /** How far other machines' clocks may run behind ours: a lease is taken over only this much after its deadline. */
  clockSkewMs: number;
}

export interface ListQuery {
  limit: number;
  cursor?: string;
  /** Core's predicate (status, expiry); the driver keeps scanning until `limit` records pass it. */
  filter: (record: IdemRecord) => boolean;
  /** The labels `filter` requires (validated): a driver may narrow its scan with them (SQL); `filter` still applies. */
  labels?: Labels;
}

/** A record list() could not read: named, never hidden, never removed. */
export interface CorruptEntry {
  /** Storage name (sha256(key) in hex), as in CorruptRecordError.storageName. */
  name: string;
  /** Why it cannot be read (not JSON, unknown schema version…). */
  reason: string;
}

export interface ListPage {
  records: IdemRecord[];
  /**
   * Records met on this page that cannot be read; the others are listed all
   * the same. Absent when there are none (and on stores that do not report them).
   */
  corrupt?: CorruptEntry[];
  /**
   * Pass back to get the next page; absent on the last one. A record present
   * for the whole listing is on some page; a scanning backend (Valkey) may
   * repeat one across pages when its keyspace is resized meanwhile.
   */
  cursor?: string;
}

export interface SweepCounts {
  /** Records removed because their retention passed. */
  expired: number;
  /** in_flight records removed because their lease was dead. */
  deadLeases: number;
}

export interface Driver {
  readonly capabilities: Capabilities;
  claim(input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome>;
  /** Fenced: throws LeaseLostError unless the stored fence and runId are the lease's. */
  finish(lease: Lease, op: FinishOp, ctx: DriverContext): Promise<FinishValue>;
  /** The stored record, expired or not (the store filters); throws CorruptRecordError. */
  read(name: string): Promise<IdemRecord | undefined>;
  list(query: ListQuery, ctx: DriverContext): Promise<ListPage>;
  sweep(ctx: DriverContext): Promise<SweepCounts>;
  /** Unconditional administrative removal. */
  remove(name: string): Promise<boolean>;
  close(): Promise<void>;
  /** Test hook: store raw bytes under a storage name, e.g. to prove corrupt records are never overwritten. */
  writeRaw?(name: string, bytes: string | Uint8Array): Promise<void>;
  /**
   * The atomic read-decide-write step this driver was composed from (composeDriver sets it;
   * full drivers such as Valkey's have none). A tiered store writes its archive through it.
   */
  atomicUpdate?: AtomicUpdate;
}
