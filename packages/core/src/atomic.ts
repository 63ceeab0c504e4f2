// Building blocks for drivers: claim and finish from one atomic
// read-decide-write primitive, and that primitive built from compare-and-swap
// writes for object stores (S3 ETags, GCS generations).
import { decideClaim, decideFinish, type ClaimInput, type ClaimOutcome, type FinishOp, type FinishValue, type Lease, type Step } from './decide.js';
import type { DriverContext } from './driver.js';
import { BackendUnavailableError } from './errors.js';
import { serializeRecord, type IdemRecord } from './record.js';

/** What a caller believes is stored, to save a read: `record: undefined` means absent. */
export interface Guess {
  record: IdemRecord | undefined;
  version: string | undefined;
}

/**
 * Runs `step` on the record stored under `name` and applies its write as
 * one atomic step. Returns the step's value and the version of what was written.
 */
export type AtomicUpdate = <T>(name: string, step: (current: IdemRecord | undefined) => Step<T>, guess?: Guess) => Promise<{ value: T; version?: string }>;

export async function claimWith(update: AtomicUpdate, input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome> {
  // Guess "absent": on a CAS store an uncontended claim is then a single create-if-absent.
  const { value, version } = await update(input.name, (current) => decideClaim(current, input, ctx.now(), ctx.clockSkewMs), {
    record: undefined,
    version: undefined,
  });
  if ((value.outcome === 'acquired' || value.outcome === 'adopted') && version !== undefined) value.lease.version = version;
  return value;
}

export async function finishWith(update: AtomicUpdate, lease: Lease, op: FinishOp, ctx: DriverContext): Promise<FinishValue> {
  // Guess that the record is still the one this lease wrote: one conditional write when nobody interfered.
  const guess = lease.version !== undefined ? { record: lease.record, version: lease.version } : undefined;
  const { value, version } = await update(lease.name, (current) => decideFinish(current, lease, op, ctx.now()), guess);
  if (value.lease && version !== undefined) value.lease.version = version;
  return value;
}

export const CONFLICT: unique symbol = Symbol('idem.conflict');
export type Conflict = typeof CONFLICT;

/** Conditional-write primitives of an object store. Writes that may or may not have landed throw BackendUnavailableError. */
export interface CasPrimitives {
  read(name: string): Promise<{ record: IdemRecord; version: string } | undefined>;
  /** Writes only if nothing is stored under name (S3 If-None-Match: *, GCS ifGenerationMatch=0). */
  create(name: string, body: string): Promise<string | Conflict>;
  /** Writes only if the stored version is still `version`; CONFLICT if it changed or is gone. */
  replace(name: string, body: string, version: string): Promise<string | Conflict>;
}

const MAX_CAS_ATTEMPTS = 32;

/** An AtomicUpdate from compare-and-swap writes: decide on what was read, write conditioned on its version, retry on conflict. */
export function casUpdate(p: CasPrimitives): AtomicUpdate {
  return async (name, step, guess) => {
    let current: Guess | undefined = guess;
    let guessed = guess !== undefined;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (current === undefined) {
        const found = await p.read(name);
        current = { record: found?.record, version: found?.version };
        guessed = false;
      }
      let decided: Step<Awaited<ReturnType<typeof step>>['value']>;
      try {
        decided = step(current.record);
      } catch (error) {
        // A decision taken on a guess proves nothing: read the truth and decide again.
        if (guessed) {
          current = undefined;
          continue;
        }
        throw error;
      }
      if (decided.write === undefined) {
        if (guessed) {
          current = undefined;
          continue;
        }
        // The version read comes along: a claim that finds its own live record hands out a lease on it.
        return { value: decided.value, version: current.version };
      }
      const body = serializeRecord(decided.write);
      let written: string | Conflict;
      try {
        written = current.record === undefined ? await p.create(name, body) : await p.replace(name, body, current.version!);
      } catch (error) {
        if (!(error instanceof BackendUnavailableError)) throw error;
        // Ambiguous write (timeout, reset): it may have landed. Read back and
        // recognise our own record by its exact body (runId, fence, times).
        const back = await p.read(name);
        if (back !== undefined && serializeRecord(back.record) === body) return { value: decided.value, version: back.version };
        current = { record: back?.record, version: back?.version };
        guessed = false;
        continue;
      }
      if (written === CONFLICT) {
        current = undefined;
        continue;
      }
      return { value: decided.value, version: written };
    }
    throw new BackendUnavailableError(`gave up on ${name} after ${MAX_CAS_ATTEMPTS} conflicting conditional writes`);
  };
}
