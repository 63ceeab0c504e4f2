// The public contract. Every method validates its arguments before any I/O
// (docs/semantics.md §8), turns durations into policy, then calls the driver.
import { issuedAsIs, type ClaimInput, type ClaimOutcome, type DedupOn, type FinishOp, type Lease } from './decide.js';
import type { Capabilities, Driver, DriverContext, ListPage, SweepCounts } from './driver.js';
import { InvalidArgumentError } from './errors.js';
import { sha256Hex, storageName } from './keys.js';
import { PROCESS_HOLDER } from './holder.js';
import { isExpired, STATUSES, type IdemRecord, type Labels, type Status } from './record.js';
import {
  describeValue,
  summarizeError,
  validateBoolean,
  validateDedupOn,
  validateDuration,
  validateFingerprint,
  validateKey,
  validateLabels,
  validateLeaseMs,
  validateProgram,
  validateResult,
  validateRunId,
  validateSize,
} from './validate.js';

export const DEFAULT_LEASE_MS = 5 * 60_000;
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600_000;
export const DEFAULT_MAX_RESULT_BYTES = 64 * 1024;

export interface StoreOptions {
  /** Lease of a claim unless the claim says otherwise. Default 5 minutes; at least 100 ms. */
  leaseMs?: number;
  /**
   * How long finished records are kept, counted from the finish. Default 30
   * days. Independent of the lease: a retention shorter than the lease is
   * allowed (the key may run again that soon after finishing).
   */
  retentionMs?: number;
  /** "success" (default): a failed run may be retried. "any": a failure is final too. */
  dedupOn?: DedupOn;
  /** Store only sha256(key) in records, for keys that might hold secrets. */
  hashKeys?: boolean;
  /** Epoch-ms clock used by client-clock drivers; inject one in tests. */
  clock?: () => number;
  /** Bound on clock skew between machines sharing the store; a lease is taken over only this long after its deadline. */
  clockSkewMs?: number;
  /** Largest JSON result stored on complete. Default 64 KiB. */
  maxResultBytes?: number;
}

export interface ClaimOptions {
  /**
   * This attempt's id; a random UUID when absent. Unique per attempt, never
   * shared by two workers (not a message or job id): a claim whose runId
   * already holds the key's live lease gets that lease back, so that a retry
   * after a lost reply finds its own claim.
   */
  runId?: string;
  leaseMs?: number;
  /** Hash of the request's parameters (see fingerprint()); a different one on a known key is a KeyReuseError. */
  fingerprint?: string;
  /** Take the key whatever its state; the previous owner is fenced out. */
  force?: boolean;
  dedupOn?: DedupOn;
  /**
   * Tags stored with the record, to find runs later (`list({ labels })`). A claim without
   * labels that takes over a live record keeps that record's. Stored in clear: no secrets.
   */
  labels?: Labels;
  /** What runs, recorded in `holder.program` (a name such as a command's basename; never arguments). */
  program?: string;
}

export interface ListOptions {
  status?: Status;
  /** Only records carrying every one of these labels with these values. */
  labels?: Labels;
  /** Only records claimed before this time (epoch ms): `Date.now() - 2 * 3600_000` finds claims older than 2 hours. */
  claimedBefore?: number;
  /** Only records claimed at or after this time (epoch ms). */
  claimedAfter?: number;
  /** Only records whose claim was made on this host (`holder.host`). */
  holderHost?: string;
  limit?: number;
  cursor?: string;
}

export type ResolvedStoreOptions = Required<StoreOptions>;

/** Options already checked by resolveStoreOptions, so that the store does not check them twice. */
const resolvedOptions = new WeakSet<object>();

/** Validates store options and applies their defaults. createStore calls it before the adapter does any I/O. */
export function resolveStoreOptions(options: StoreOptions = {}): ResolvedStoreOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`options must be an object, got ${describeValue(options)}`);
  if (resolvedOptions.has(options)) return options as ResolvedStoreOptions;
  const skew = options.clockSkewMs ?? 0;
  if (skew !== 0) validateDuration('clockSkewMs', skew);
  if (options.clock !== undefined && typeof options.clock !== 'function')
    throw new InvalidArgumentError('clock must be a function returning epoch milliseconds');
  const resolved: ResolvedStoreOptions = {
    leaseMs: validateLeaseMs('leaseMs', options.leaseMs ?? DEFAULT_LEASE_MS),
    retentionMs: validateDuration('retentionMs', options.retentionMs ?? DEFAULT_RETENTION_MS),
    dedupOn: validateDedupOn(options.dedupOn ?? 'success'),
    hashKeys: validateBoolean('hashKeys', options.hashKeys ?? false),
    maxResultBytes: validateSize('maxResultBytes', options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES),
    clock: options.clock ?? Date.now,
    clockSkewMs: skew,
  };
  resolvedOptions.add(Object.freeze(resolved));
  return resolved;
}

export class IdempotencyStore {
  readonly driver: Driver;
  readonly leaseMs: number;
  readonly retentionMs: number;
  readonly dedupOn: DedupOn;
  readonly hashKeys: boolean;
  readonly maxResultBytes: number;
  readonly clock: () => number;
  private readonly ctx: DriverContext;

  /** Prefer createStore (factory.ts), which checks options before the backend is touched. */
  constructor(driver: Driver, options: StoreOptions = {}) {
    const resolved = resolveStoreOptions(options);
    this.driver = driver;
    this.leaseMs = resolved.leaseMs;
    this.retentionMs = resolved.retentionMs;
    this.dedupOn = resolved.dedupOn;
    this.hashKeys = resolved.hashKeys;
    this.maxResultBytes = resolved.maxResultBytes;
    this.clock = resolved.clock;
    this.ctx = { now: this.clock, clockSkewMs: resolved.clockSkewMs };
  }

  get capabilities(): Capabilities {
    return this.driver.capabilities;
  }

  /** One atomic claim; see ClaimOutcome for the four answers. */
  claim(key: string, options: ClaimOptions = {}): Promise<ClaimOutcome> {
    // Not async: the driver's promise is returned as it is (an async layer costs a promise per
    // call); bad input still rejects, before any I/O.
    let input: ClaimInput;
    try {
      input = this.claimInput(key, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.driver.claim(input, this.ctx);
  }

  private claimInput(key: string, options: ClaimOptions): ClaimInput {
    validateKey(key);
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`claim options must be an object, got ${describeValue(options)}`);
    const fingerprint = options.fingerprint === undefined ? undefined : validateFingerprint(options.fingerprint);
    const input: ClaimInput = {
      key,
      recordKey: this.hashKeys ? `sha256:${sha256Hex(key)}` : key,
      name: storageName(key),
      runId: options.runId === undefined ? crypto.randomUUID() : validateRunId(options.runId),
      leaseMs: validateLeaseMs('leaseMs', options.leaseMs ?? this.leaseMs),
      force: validateBoolean('force', options.force ?? false),
      dedupOn: validateDedupOn(options.dedupOn ?? this.dedupOn),
      holder: options.program === undefined ? PROCESS_HOLDER : { ...PROCESS_HOLDER, program: validateProgram(options.program) },
    };
    if (fingerprint !== undefined) input.fingerprint = fingerprint;
    if (options.labels !== undefined) input.labels = validateLabels(options.labels);
    return input;
  }

  /** Marks the work done and stores `result` for duplicates. Fenced: LeaseLostError if someone took over. */
  async complete(lease: Lease, options: { result?: unknown } = {}): Promise<IdemRecord> {
    checkLease(lease);
    const op: FinishOp = { op: 'complete', retentionMs: this.retentionMs };
    if (options.result !== undefined) op.result = validateResult(options.result, this.maxResultBytes);
    const done = await this.driver.finish(lease, op, this.ctx);
    return done.record!;
  }

  /** Records a failure: retryable at once under dedupOn "success", final under "any". Fenced. */
  async fail(lease: Lease, options: { error?: unknown } = {}): Promise<IdemRecord> {
    checkLease(lease);
    const op = { op: 'fail', retentionMs: this.retentionMs, ...(options.error !== undefined ? { error: summarizeError(options.error) } : {}) } as const;
    const done = await this.driver.finish(lease, op, this.ctx);
    return done.record!;
  }

  /** Extends the lease (heartbeat); use the returned lease from then on. Fenced. */
  async renew(lease: Lease, leaseMs?: number): Promise<Lease> {
    checkLease(lease);
    const ms = validateLeaseMs('leaseMs', leaseMs ?? this.leaseMs);
    const done = await this.driver.finish(lease, { op: 'renew', leaseMs: ms }, this.ctx);
    return done.lease!;
  }

  /** Gives the claim back without an outcome (cancelled run): the key is free again. Fenced. */
  async release(lease: Lease): Promise<void> {
    checkLease(lease);
    await this.driver.finish(lease, { op: 'release' }, this.ctx);
  }

  /** The live record of a key; records past retention count as absent. */
  async get(key: string): Promise<IdemRecord | undefined> {
    validateKey(key);
    const record = await this.driver.read(storageName(key));
    // A server-clock store has judged expiry already, by the clock that wrote the record.
    if (record === undefined || this.driver.capabilities.clock === 'server') return record;
    return isExpired(record, this.clock()) ? undefined : record;
  }

  /** For operators: stuck in_flight claims, recent failures. Order is the backend's. */
  async list(options: ListOptions = {}): Promise<ListPage> {
    const { status, limit = 100, cursor, claimedBefore, claimedAfter, holderHost } = options;
    if (status !== undefined && !STATUSES.has(status))
      throw new InvalidArgumentError(`status must be in_flight, succeeded or failed, got ${describeValue(status)}`);
    const wanted = options.labels === undefined ? undefined : validateLabels(options.labels);
    const labels = wanted === undefined ? undefined : Object.entries(wanted);
    for (const [name, value] of [
      ['claimedBefore', claimedBefore],
      ['claimedAfter', claimedAfter],
    ] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0))
        throw new InvalidArgumentError(`${name} must be a time in epoch milliseconds, got ${describeValue(value)}`);
    }
    if (holderHost !== undefined && (typeof holderHost !== 'string' || holderHost === ''))
      throw new InvalidArgumentError(`holderHost must be a host name, got ${describeValue(holderHost)}`);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000)
      throw new InvalidArgumentError(`limit must be a whole number in 1..10000, got ${describeValue(limit)}`);
    if (cursor !== undefined && typeof cursor !== 'string') throw new InvalidArgumentError('cursor must be a string from a previous page');
    const now = this.clock();
    const serverClock = this.driver.capabilities.clock === 'server'; // the driver returns only live records
    const filter = (r: IdemRecord) =>
      (serverClock || !isExpired(r, now)) &&
      (status === undefined || r.status === status) &&
      (claimedBefore === undefined || r.claimedAt < claimedBefore) &&
      (claimedAfter === undefined || r.claimedAt >= claimedAfter) &&
      (holderHost === undefined || r.holder?.host === holderHost) &&
      (labels === undefined || labels.every(([name, value]) => r.labels?.[name] === value));
    return this.driver.list({ limit, filter, ...(cursor !== undefined ? { cursor } : {}), ...(wanted !== undefined ? { labels: wanted } : {}) }, this.ctx);
  }

  /** Removes records past retention and in_flight records with a dead lease. A no-op where the backend expires records itself. */
  async sweep(): Promise<SweepCounts> {
    if (this.driver.capabilities.nativeExpiry) return { expired: 0, deadLeases: 0 };
    return this.driver.sweep(this.ctx);
  }

  /** Administrative removal, whatever the record's state. Returns whether something was there. */
  async delete(key: string): Promise<boolean> {
    validateKey(key);
    return this.driver.remove(storageName(key));
  }

  async close(): Promise<void> {
    await this.driver.close();
  }
}

function checkLease(lease: unknown): asserts lease is Lease {
  const l = lease as Partial<Lease> | null;
  const ok =
    typeof l === 'object' &&
    l !== null &&
    typeof l.key === 'string' &&
    typeof l.runId === 'string' &&
    Number.isSafeInteger(l.fence) &&
    typeof l.record === 'object' &&
    (issuedAsIs(l) || l.name === storageName(l.key));
  if (!ok) throw new InvalidArgumentError('lease must be the object returned by claim() or renew()');
}
