// runOnce: claim, keep the lease alive while the work runs, then finish on
// every exit path. The one function most callers need.
import type { Lease } from './decide.js';
import { InFlightError, InvalidArgumentError, LeaseLostError } from './errors.js';
import { channels, newEvent, noteClaim, traced, type IdemEvent } from './events.js';
import { heartbeat } from './heartbeat.js';
import { PROCESS_HOLDER } from './holder.js';
import type { IdemRecord, JsonValue } from './record.js';
import type { ClaimOptions, IdempotencyStore } from './store.js';
import { MAX_TIMER_MS, validateDuration, validateKey, validateLeaseMs, validateProgram, validateRunId } from './validate.js';

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
  /**
   * Under "wait": told each time the key is found held, before the next pause: the holder's
   * record and how long this run has waited so far (ms). For progress displays; must not throw.
   */
  onWait?: (record: IdemRecord, waitedMs: number) => void;
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
export function runOnce<T>(store: IdempotencyStore, key: string, fn: (ctx: RunContext) => Promise<T> | T, options: RunOptions = {}): Promise<RunResult<T>> {
  // Not async, as store.claim: the run's own promise is returned as it is; bad input still rejects.
  try {
    return start(store, key, fn, options);
  } catch (error) {
    return Promise.reject(error);
  }
}

function start<T>(store: IdempotencyStore, key: string, fn: (ctx: RunContext) => Promise<T> | T, options: RunOptions): Promise<RunResult<T>> {
  const { onInFlight = 'skip', signal, renewEveryMs, waitTimeoutMs = 3_600_000 } = options;
  if (onInFlight !== 'skip' && onInFlight !== 'wait' && onInFlight !== 'throw') {
    throw new InvalidArgumentError(`onInFlight must be skip, wait or throw, got ${String(onInFlight)}`);
  }
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn must be a function');
  const leaseMs = validateLeaseMs('leaseMs', options.leaseMs ?? store.leaseMs);
  // Node fires a timer longer than 2^31-1 ms (about 24.8 days) after 1 ms, which would renew a
  // 75-day lease every millisecond: clamp. Renewing a little sooner than asked is always safe.
  const every = Math.min(validateDuration('renewEveryMs', renewEveryMs ?? Math.max(1, Math.floor(leaseMs / 3))), MAX_TIMER_MS);
  validateDuration('waitTimeoutMs', waitTimeoutMs);
  signal?.throwIfAborted();

  const runId = options.runId ?? crypto.randomUUID();
  // The claim's own options, named (a rest copy of `options` per call is slow); the same for every attempt.
  const claimOptions: ClaimOptions = {
    runId,
    leaseMs,
    fingerprint: options.fingerprint,
    force: options.force,
    dedupOn: options.dedupOn,
    labels: options.labels,
    program: options.program,
  };
  if (!channels.runOnce.hasSubscribers) return attempt(store, key, fn, options, claimOptions, every, undefined);
  // The key and run checked before the event starts, as every store call checks its input before any I/O.
  validateKey(key);
  if (options.runId !== undefined) validateRunId(options.runId);
  const holder = options.program === undefined ? PROCESS_HOLDER : { ...PROCESS_HOLDER, program: validateProgram(options.program) };
  const event = newEvent(store, 'runOnce', key, runId, holder);
  // attempt() notes the claim's outcome on the event as soon as it has one, so that a run whose
  // fn throws still says how it got the key; the result itself never goes on the event.
  return traced(channels.runOnce, event, () => attempt(store, key, fn, options, claimOptions, every, event), noop);
}

const noop = () => undefined;

/** runOnce after its options are checked: claim (waiting if asked), then execute. */
async function attempt<T>(
  store: IdempotencyStore,
  key: string,
  fn: (ctx: RunContext) => Promise<T> | T,
  options: RunOptions,
  claimOptions: ClaimOptions,
  every: number,
  event: IdemEvent | undefined,
): Promise<RunResult<T>> {
  const { onInFlight = 'skip', signal, waitTimeoutMs = 3_600_000 } = options;
  const leaseMs = claimOptions.leaseMs!;
  const started = Date.now();
  let backoff = 50;
  for (;;) {
    const claimed = await store.claim(key, claimOptions);
    if (event !== undefined) noteClaim(event, claimed);
    if (claimed.outcome === 'completed') return { status: 'completed', record: claimed.record, result: claimed.record.result };
    if (claimed.outcome === 'in_flight') {
      if (onInFlight === 'skip') return { status: 'in_flight', record: claimed.record };
      if (onInFlight === 'throw' || Date.now() - started >= waitTimeoutMs) throw new InFlightError(claimed.record);
      options.onWait?.(claimed.record, Date.now() - started);
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
  const run = new Execution(store, first, outcome, previous, leaseMs, signal);
  const onAbort = signal && (() => Execution.abort(run, signal.reason));
  signal?.addEventListener('abort', onAbort!, { once: true });
  const beat = heartbeat(every, run, Execution.tick);
  try {
    let value: T;
    try {
      value = await fn(run);
    } catch (error) {
      beat.stop();
      const lease = await Execution.settled(run);
      if (signal?.aborted) {
        await store.release(lease);
      } else {
        await store.fail(lease, { error });
      }
      throw error;
    }
    beat.stop();
    const lease = await Execution.settled(run);
    let record: IdemRecord;
    try {
      record = await store.complete(lease, value === undefined ? {} : { result: value });
    } catch (error) {
      // A result that cannot be stored must not leave the claim hanging until its lease dies.
      if (error instanceof InvalidArgumentError) await store.fail(lease, { error });
      throw error;
    }
    return previous ? { status: 'executed', value, outcome, lease, record, previous } : { status: 'executed', value, outcome, lease, record };
  } finally {
    beat.stop();
    if (onAbort) signal!.removeEventListener('abort', onAbort);
  }
}

/**
 * One execution: its current lease, its heartbeat, and the context fn is given. One object per run
 * where closures over local variables cost one allocation each, a measurable share of runOnce's
 * own CPU. fn sees on it only what RunContext says: its state is in private fields, and runOnce
 * drives it through static functions.
 */
class Execution implements RunContext {
  #lease: Lease;
  #lost: LeaseLostError | undefined;
  // ctx.signal is made on first use: most handlers never read it, and an AbortController per call
  // is a measurable share of runOnce's own cost. Made late, it starts aborted if it should be.
  #inner: AbortController | undefined;
  /** The renewal in flight: one at a time. */
  #renewing: Promise<void> | undefined;
  readonly #store: IdempotencyStore;
  readonly #leaseMs: number;
  readonly #outer: AbortSignal | undefined;
  readonly outcome: 'acquired' | 'adopted';
  readonly previous: IdemRecord | undefined;

  constructor(
    store: IdempotencyStore,
    first: Lease,
    outcome: 'acquired' | 'adopted',
    previous: IdemRecord | undefined,
    leaseMs: number,
    outer: AbortSignal | undefined,
  ) {
    this.#store = store;
    this.#lease = first;
    this.outcome = outcome;
    this.previous = previous;
    this.#leaseMs = leaseMs;
    this.#outer = outer;
  }

  get signal(): AbortSignal {
    if (this.#inner === undefined) {
      this.#inner = new AbortController();
      if (this.#lost) this.#inner.abort(this.#lost);
      else if (this.#outer?.aborted) this.#inner.abort(this.#outer.reason);
    }
    return this.#inner.signal;
  }

  get lease(): Lease {
    return this.#lease;
  }

  /** The caller's signal aborted: ctx.signal follows, if it was made. */
  static abort(run: Execution, reason: unknown): void {
    run.#inner?.abort(reason);
  }

  /**
   * Heartbeat: one renew in flight at a time. A transient error is retried on the next tick (the
   * lease is still ours until its deadline); only a lost lease stops it.
   */
  static tick(run: Execution): void {
    if (run.#renewing || run.#lost) return;
    run.#renewing = run.#store.renew(run.#lease, run.#leaseMs).then(
      (next) => {
        run.#lease = next;
        run.#renewing = undefined;
      },
      (error: unknown) => {
        run.#renewing = undefined;
        if (error instanceof LeaseLostError) {
          run.#lost = error;
          run.#inner?.abort(error);
        }
      },
    );
  }

  /** Once the heartbeat is stopped: the lease to finish with, after any renewal still in flight; LeaseLostError if it was lost. */
  static async settled(run: Execution): Promise<Lease> {
    await run.#renewing;
    if (run.#lost) throw run.#lost;
    return run.#lease;
  }
}
