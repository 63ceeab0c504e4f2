// The decisions of docs/semantics.md §2–3 as pure functions of (stored record, request, now).
// Every backend that can run JS inside its atomic step (LMDB transaction,
// object-store compare-and-swap) uses these; Valkey mirrors them in Lua.
import { CorruptRecordError, KeyReuseError, LeaseLostError } from './errors.js';
import { isExpired, isLeaseDead, RECORD_VERSION, type Holder, type IdemRecord, type JsonValue, type Labels } from './record.js';

export type DedupOn = 'success' | 'any';

/** A claim as drivers receive it: validated, with the store's policy applied. */
export interface ClaimInput {
  /** The caller's key (for messages). */
  key: string;
  /** What the record stores as its key: the key, or its digest under hashKeys. */
  recordKey: string;
  /** Storage name: sha256(key) in hex. */
  name: string;
  runId: string;
  leaseMs: number;
  fingerprint?: string;
  force: boolean;
  dedupOn: DedupOn;
  /** Who claims: written on the record the claim takes (the store always gives it). */
  holder?: Holder;
  /** The claim's labels (validated, names sorted); without them a takeover keeps the live record's. */
  labels?: Labels;
}

/** Proof of ownership returned by claim; pass it to complete/fail/renew/release. */
export interface Lease {
  key: string;
  name: string;
  runId: string;
  fence: number;
  leaseExpiresAt: number;
  /** The record this lease last wrote. */
  record: IdemRecord;
  /** Driver-specific version of that record (ETag, generation); opaque. */
  version?: string;
}

export type ClaimOutcome =
  /** Free key (or a retryable failure, or a record past retention), or the caller's own live claim asked for again (same runId): do the work. */
  | { outcome: 'acquired'; lease: Lease; previous?: IdemRecord }
  /** A dead lease (crashed owner) or a forced claim: do the work; `previous` is the old owner's record. */
  | { outcome: 'adopted'; lease: Lease; previous: IdemRecord }
  /** Someone holds a live lease: skip or wait. */
  | { outcome: 'in_flight'; record: IdemRecord }
  /** Finished (succeeded, or failed under dedupOn "any"): skip and reuse record.result. */
  | { outcome: 'completed'; record: IdemRecord };

/** complete and fail start the record's retention (`retentionMs` from now); renew and release do not. */
export type FinishOp =
  | { op: 'complete'; retentionMs: number; result?: JsonValue }
  | { op: 'fail'; retentionMs: number; error?: string }
  | { op: 'renew'; leaseMs: number }
  | { op: 'release' };

/** What an atomic step decided: write a record or leave it as it is; and what to answer. */
export interface Step<T> {
  write?: IdemRecord;
  value: T;
}

/** Why a lease can be taken over late: clocks of different machines differ by up to skewMs. */
export function decideClaim(current: IdemRecord | undefined, input: ClaimInput, now: number, skewMs = 0): Step<ClaimOutcome> {
  const live = current !== undefined && !isExpired(current, now) ? current : undefined;
  if (live && input.fingerprint !== undefined && live.fingerprint !== undefined && live.fingerprint !== input.fingerprint && !input.force) {
    throw new KeyReuseError(live, input.fingerprint);
  }
  const take = (outcome: 'acquired' | 'adopted'): Step<ClaimOutcome> => {
    // The next fence would not be a safe integer, and no later claim could be fenced: refuse before anyone runs.
    if (current !== undefined && (current.fence >= Number.MAX_SAFE_INTEGER || current.attempt >= Number.MAX_SAFE_INTEGER)) {
      throw new CorruptRecordError(
        input.name,
        'its fence is 2^53-1, the largest that can be stored: no later claim can be fenced; delete the record to use the key again',
      );
    }
    const record: IdemRecord = {
      v: RECORD_VERSION,
      key: input.recordKey,
      status: 'in_flight',
      runId: input.runId,
      // A fence that outlives retention: the record past retention still tells us the last fence.
      fence: (current?.fence ?? 0) + 1,
      attempt: (live?.attempt ?? 0) + 1,
      claimedAt: now,
      leaseExpiresAt: now + input.leaseMs,
    };
    if (input.holder !== undefined) record.holder = input.holder;
    if (input.fingerprint !== undefined) record.fingerprint = input.fingerprint;
    const labels = input.labels ?? live?.labels;
    if (labels !== undefined) record.labels = labels;
    const lease = leaseOf(input.key, input.name, record);
    const value: ClaimOutcome = outcome === 'adopted' ? { outcome, lease, previous: live! } : live ? { outcome, lease, previous: live } : { outcome, lease };
    return { write: record, value };
  };
  if (!live) return take('acquired');
  if (input.force) return take('adopted');
  switch (live.status) {
    case 'in_flight':
      if (isLeaseDead(live, now - skewMs)) return take('adopted');
      // The caller's own live claim asked for again (a retry whose first reply was lost): its lease, nothing written.
      if (live.runId === input.runId) return { value: { outcome: 'acquired', lease: leaseOf(input.key, input.name, live) } };
      return { value: { outcome: 'in_flight', record: live } };
    case 'succeeded':
      return { value: { outcome: 'completed', record: live } };
    case 'failed':
      return input.dedupOn === 'any' ? { value: { outcome: 'completed', record: live } } : take('acquired');
  }
}

export function leaseOf(key: string, name: string, record: IdemRecord, version?: string): Lease {
  return new IssuedLease(key, name, record, version);
}

/**
 * A lease as core issued it, with the key and storage name it was issued with (core computed the
 * name from the key) in private fields, so that the store's lease check hashes the key again only
 * for a lease that was made or changed by hand: a sha256 per finish is a measurable share of a
 * first execution's client CPU. Private fields, unlike a WeakMap of leases, cost the collector
 * nothing, and they are invisible: a copy or a JSON round trip is a plain Lease. Its public
 * fields are Lease's, declared there once (this interface merges into the class).
 */
// biome-ignore lint/correctness/noUnusedVariables: merges into the class below
interface IssuedLease extends Lease {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor sets every field of Lease
class IssuedLease {
  readonly #key: string;
  readonly #name: string;

  constructor(key: string, name: string, record: IdemRecord, version: string | undefined) {
    this.#key = this.key = key;
    this.#name = this.name = name;
    this.runId = record.runId;
    this.fence = record.fence;
    this.leaseExpiresAt = record.leaseExpiresAt ?? 0;
    this.record = record;
    if (version !== undefined) this.version = version;
  }

  static asIssued(lease: { key?: unknown; name?: unknown }): boolean {
    return #key in lease && lease.#key === lease.key && lease.#name === lease.name;
  }
}

/** True when `lease` came from leaseOf and still has the key and name it was issued with. */
export const issuedAsIs = (lease: { key?: unknown; name?: unknown }): boolean => IssuedLease.asIssued(lease);

/** The result of a finish: the renewed lease, the finished record, or nothing (released). */
export type FinishValue = { lease?: Lease; record?: IdemRecord };

/**
 * Fenced finish. Only the record this lease created (same fence and runId)
 * may be changed, whether or not its deadline has passed: a deadline alone
 * never lets anyone else in, only a takeover does (docs/semantics.md §3).
 */
export function decideFinish(current: IdemRecord | undefined, lease: Lease, op: FinishOp, now: number): Step<FinishValue> {
  const gone = current === undefined || isExpired(current, now);
  // Releasing what is already gone leaves the key free, which is all release promises.
  if (gone && op.op === 'release') return { value: {} };
  if (gone || current.fence !== lease.fence || current.runId !== lease.runId) {
    // Another run at this very fence, claimed while this lease was live: two writers won one
    // fence, which a backend keeping its preconditions never allows (or someone ran `delete` by
    // hand, which is legitimate): still LEASE_LOST for the caller, with the suspicion said loudly.
    const sameFence = !gone && current.fence === lease.fence && current.claimedAt < lease.leaseExpiresAt;
    throw new LeaseLostError(lease.key, gone ? undefined : current, sameFence ? (current.fence === 1 ? 'create-if-absent' : 'replace-if-match') : undefined);
  }
  if (current.status !== 'in_flight') {
    // A repeated finish (e.g. a retry after a lost reply) of the same outcome is answered, not redone.
    const same = (op.op === 'complete' && current.status === 'succeeded') || (op.op === 'fail' && current.status === 'failed');
    if (same) return { value: { record: current } };
    throw new LeaseLostError(lease.key, current);
  }
  switch (op.op) {
    case 'renew': {
      const record = { ...current, leaseExpiresAt: now + op.leaseMs };
      return { write: record, value: { lease: leaseOf(lease.key, lease.name, record) } };
    }
    case 'release':
      // Kept as a record past retention rather than deleted, so the next claim's
      // fence still continues from this one on backends without a counter.
      return { write: { ...current, leaseExpiresAt: now, expiresAt: now }, value: {} };
    case 'complete':
    case 'fail': {
      const record = finished(current, op, now);
      return { write: record, value: { record } };
    }
  }
}

/**
 * The record a complete or fail writes: the claim's fields without its lease deadline, the
 * final status, the two times, then the result or error. A loop over the fields, not a rest
 * copy: on Valkey this runs once per first execution, and a rest copy cost more than the rest
 * of a finish's JS.
 */
function finished(current: IdemRecord, op: FinishOp & { op: 'complete' | 'fail' }, now: number): IdemRecord {
  const record: Record<string, unknown> = {};
  const status = op.op === 'complete' ? 'succeeded' : 'failed';
  for (const k in current) if (k !== 'leaseExpiresAt') record[k] = k === 'status' ? status : current[k as keyof IdemRecord];
  record.completedAt = now;
  record.expiresAt = now + op.retentionMs;
  if (op.op === 'complete' && op.result !== undefined) record.result = op.result;
  if (op.op === 'fail' && op.error !== undefined) record.error = op.error;
  return record as unknown as IdemRecord;
}

/** What sweep() removes: records past retention and in_flight records whose lease is dead. */
export function isSweepable(record: IdemRecord, now: number): boolean {
  return isExpired(record, now) || isLeaseDead(record, now);
}
