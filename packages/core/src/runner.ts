// runOnce: claim, keep the lease alive while the work runs, then finish on
// every exit path. The one function most callers need.
import type { Lease } from './decide.js';
import { InFlightError, InvalidArgumentError, LeaseLostError } from './errors.js';
import { heartbeat } from './heartbeat.js';
import type { IdemRecord, JsonValue } from './record.js';
import type { ClaimOptions, IdempotencyStore } from './store.js';
import { MAX_TIMER_MS, validateDuration, validateLeaseMs } from './validate.js';

export type OnInFlight = 'skip' | 'wait' | 'throw';

export interface RunOptions extends ClaimOptions {
  /** What to do when another run holds a live lease. Default "skip". */
  onInFlight?: OnInFlight;
  /** Cancels the run: the claim is released (no outcome recorded) and the error rethrown. */
  signal?: AbortSignal;
  /** Heartbeat period. Default a third of the lease. */
  renewEveryMs?: number;
  /** Under "wait": give up with InFlightError after this long. Default 1 hour. */
  waitTimeoutMs?: number;
}

export interface RunContext {
  /** Aborted when the caller's signal aborts or the lease is lost to another run. */
  readonly signal: AbortSignal;
  /** The current lease (renewed in the background); its fence orders writes downstream. */
  readonly lease: Lease;
  /** How this run got the key: a fresh claim, or taken over from a dead run (or forced). */
  readonly outcome: 'acquired' | 'adopted';
  /** The record this run took over, when adopted. */
  readonly previous: IdemRecord | undefined;
}

export type RunResult<T> =
  /** This call ran fn. `outcome` tells whether it took over a dead run. */
  | { status: 'executed'; value: T; outcome: 'acquired' | 'adopted'; lease: Lease; record: IdemRecord; previous?: IdemRecord }
  /** An earlier run finished; fn was not called. `record.result` is its result, `record.runId` its run. */
  | { status: 'completed'; record: IdemRecord; result: JsonValue | undefined }
  /** Another run holds a live lease (onInFlight "skip"); fn was not called. */
  | { status: 'in_flight'; record: IdemRecord };

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    // An abort event never fires again for a signal that is already aborted.
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
    function done() {
      signal?.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener('abort', abort, { once: true });
  });

/**
 * Runs `fn` at most once per key across every process sharing the store.
 * fn's return value (JSON) is stored and handed to later duplicates.
 */
export async function runOnce<T>(store: IdempotencyStore, key: string, fn: (ctx: RunContext) => Promise<T> | T, options: RunOptions = {}): Promise<RunResult<T>> {
  const { onInFlight = 'skip', signal, renewEveryMs, waitTimeoutMs = 3_600_000, ...claimOptions } = options;
  if (onInFlight !== 'skip' && onInFlight !== 'wait' && onInFlight !== 'throw') {
    throw new InvalidArgumentError(`onInFlight must be skip, wait or throw, got ${String(onInFlight)}`);
  }
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn must be a function');
  const leaseMs = validateLeaseMs('leaseMs', claimOptions.leaseMs ?? store.leaseMs);
  // Node fires a timer longer than 2^31-1 ms (about 24.8 days) after 1 ms, which would renew a
  // 75-day lease every millisecond: clamp. Renewing a little sooner than asked is always safe.
  const every = Math.min(validateDuration('renewEveryMs', renewEveryMs ?? Math.max(1, Math.floor(leaseMs / 3))), MAX_TIMER_MS);
  validateDuration('waitTimeoutMs', waitTimeoutMs);
  signal?.throwIfAborted();

  const runId = claimOptions.runId ?? crypto.randomUUID();
  const started = Date.now();
  let backoff = 50;
  for (;;) {
    const claimed = await store.claim(key, { ...claimOptions, runId, leaseMs });
    if (claimed.outcome === 'completed') return { status: 'completed', record: claimed.record, result: claimed.record.result };
    if (claimed.outcome === 'in_flight') {
      if (onInFlight === 'skip') return { status: 'in_flight', record: claimed.record };
      if (onInFlight === 'throw' || Date.now() - started >= waitTimeoutMs) throw new InFlightError(claimed.record);
      // Poll with backoff, but never sleep far past the moment the owner's lease could die.
      const untilDead = Math.max(10, (claimed.record.leaseExpiresAt ?? 0) - store.clock() + 10);
      await sleep(Math.min(backoff, untilDead) * (0.75 + Math.random() / 2), signal);
      backoff = Math.min(backoff * 2, 2000);
      continue;
    }
    return execute(store, claimed.lease, claimed.outcome, claimed.previous, fn, leaseMs, every, signal);
  }
}

async function execute<T>(
  store: IdempotencyStore,
  first: Lease,
  outcome: 'acquired' | 'adopted',
  previous: IdemRecord | undefined,
  fn: (ctx: RunContext) => Promise<T> | T,
  leaseMs: number,
  every: number,
  signal: AbortSignal | undefined,
): Promise<RunResult<T>> {
  // Aborted while the claim was under way: give the key back without starting fn.
  if (signal?.aborted) {
    await store.release(first);
    throw signal.reason;
  }
  let lease = first;
  let lost: LeaseLostError | undefined;
  // ctx.signal is made on first use: most handlers never read it, and an AbortController per call
  // is a measurable share of runOnce's own cost. Made late, it starts aborted if it should be.
  let inner: AbortController | undefined;
  const innerSignal = () => {
    if (inner === undefined) {
      inner = new AbortController();
      if (lost) inner.abort(lost);
      else if (signal?.aborted) inner.abort(signal.reason);
    }
    return inner.signal;
  };
  const onAbort = () => inner?.abort(signal!.reason);
  signal?.addEventListener('abort', onAbort, { once: true });

  // Heartbeat: one renew in flight at a time. A transient error is retried on
  // the next tick (the lease is still ours until its deadline); only a lost lease stops it.
  let renewing: Promise<void> | undefined;
  const beat = heartbeat(every, () => {
    if (renewing || lost) return;
    renewing = store
      .renew(lease, leaseMs)
      .then((next) => {
        lease = next;
      })
      .catch((error: unknown) => {
        if (error instanceof LeaseLostError) {
          lost = error;
          inner?.abort(error);
        }
      })
      .finally(() => {
        renewing = undefined;
      });
  });

  const ctx: RunContext = {
    get signal() {
      return innerSignal();
    },
    get lease() {
      return lease;
    },
    outcome,
    previous,
  };
  try {
    let value: T;
    try {
      value = await fn(ctx);
    } catch (error) {
      beat.stop();
      await renewing;
      if (lost) throw lost;
      if (signal?.aborted) {
        await store.release(lease);
      } else {
        await store.fail(lease, { error });
      }
      throw error;
    }
    beat.stop();
    await renewing;
    if (lost) throw lost;
    let record: IdemRecord;
    try {
      record = await store.complete(lease, value === undefined ? {} : { result: value });
    } catch (error) {
      // A result that cannot be stored must not leave the claim hanging until its lease dies.
      if (error instanceof InvalidArgumentError) await store.fail(lease, { error });
      throw error;
    }
    return { status: 'executed', value, outcome, lease, record, ...(previous ? { previous } : {}) };
  } finally {
    beat.stop();
    signal?.removeEventListener('abort', onAbort);
  }
}
