// What the store and runOnce did, published on node:diagnostics_channel tracing channels
// (docs/observability.md lists the channels and every field). Nothing here runs when nobody
// subscribes: each caller asks `hasSubscribers` first and takes its plain path otherwise.
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import type { ClaimOutcome } from './decide.js';
import { isIdemError } from './errors.js';
import type { Holder, Labels } from './record.js';

export type IdemOperation = 'claim' | 'complete' | 'fail' | 'renew' | 'release' | 'runOnce' | 'sweep' | 'list';

/**
 * One operation, as its tracing channel carries it: the same object from `start` to `asyncEnd`,
 * filled in as the operation goes. Never a result, an error's message as stored, or a secret.
 */
export interface IdemEvent {
  operation: IdemOperation;
  /** The adapter's kind: lmdb, valkey, postgres, s3, gcs, tiered, memory, or an adapter's own name. */
  storeKind: string;
  /** Absent when the store hashes keys (hashKeys) or was opened with keysInEvents: false. */
  key?: string;
  runId?: string;
  labels?: Labels;
  holder?: Holder;
  /**
   * At the end. claim and runOnce: acquired, adopted, in_flight or completed (runOnce: how it
   * got, or did not get, the key). complete: succeeded; fail: failed; renew: renewed; release:
   * released; list and sweep: ok.
   */
  outcome?: string;
  /** The fence of the lease (finishes, and claims that took the key) or of the record found. */
  fence?: number;
  attempt?: number;
  /** Milliseconds from start to the end of the operation. */
  durationMs?: number;
  /** The IdemError code of a failure (LEASE_LOST, BACKEND_UNAVAILABLE…); absent for an error that is not an IdemError. */
  errorCode?: string;
  /** The thrown value, as the caller receives it (the tracing channel convention). */
  error?: unknown;
  /** list: the records on the page. */
  count?: number;
  /** sweep: records removed past retention, and in_flight records removed with a dead lease. */
  expired?: number;
  deadLeases?: number;
}

const channel = (operation: IdemOperation): TracingChannel<unknown, IdemEvent> => tracingChannel<unknown, IdemEvent>(`idem:${operation}`);

/** One tracing channel per operation: `tracing:idem:claim:start`, `…:end`, `…:asyncStart`, `…:asyncEnd`, `…:error`. */
export const channels: Readonly<Record<IdemOperation, TracingChannel<unknown, IdemEvent>>> = Object.freeze({
  claim: channel('claim'),
  complete: channel('complete'),
  fail: channel('fail'),
  renew: channel('renew'),
  release: channel('release'),
  runOnce: channel('runOnce'),
  sweep: channel('sweep'),
  list: channel('list'),
});

/** A new event of `store`, its key only where the store lets keys be published. */
export function newEvent(store: { kind: string; keysInEvents: boolean }, operation: IdemOperation, key?: string, runId?: string, holder?: Holder): IdemEvent {
  const event: IdemEvent = { operation, storeKind: store.kind };
  if (key !== undefined && store.keysInEvents) event.key = key;
  if (runId !== undefined) event.runId = runId;
  if (holder !== undefined) event.holder = holder;
  return event;
}

/** What a claim's event says once it is answered: the outcome, and the fence, attempt and labels of the record it took or found. */
export function noteClaim(event: IdemEvent, out: ClaimOutcome): void {
  event.outcome = out.outcome;
  const record = out.outcome === 'acquired' || out.outcome === 'adopted' ? out.lease.record : out.record;
  event.fence = record.fence;
  event.attempt = record.attempt;
  if (event.labels === undefined && record.labels !== undefined) event.labels = record.labels;
}

/**
 * Runs `run` as one traced operation, in the event sequence of TracingChannel.tracePromise
 * (start, end, then error, asyncStart and asyncEnd), but with `settle` writing what the event
 * may say instead of the raw result. `start.runStores` makes the stores that subscribers bound
 * (a tracer's context) current for the whole operation, the awaits in `run` included.
 */
export function traced<T>(
  ch: TracingChannel<unknown, IdemEvent>,
  event: IdemEvent,
  run: () => Promise<T>,
  settle: (event: IdemEvent, value: T) => void,
): Promise<T> {
  const t0 = performance.now();
  const failed = (error: unknown) => {
    event.durationMs = performance.now() - t0;
    event.error = error;
    // Only idem's own codes: a user's error may carry anything in `code`.
    if (isIdemError(error)) event.errorCode = error.code;
    ch.error.publish(event);
  };
  return ch.start.runStores(event, () => {
    try {
      return run().then(
        (value) => {
          event.durationMs = performance.now() - t0;
          settle(event, value);
          ch.asyncStart.publish(event);
          ch.asyncEnd.publish(event);
          return value;
        },
        (error: unknown) => {
          failed(error);
          ch.asyncStart.publish(event);
          ch.asyncEnd.publish(event);
          throw error;
        },
      );
    } catch (error) {
      failed(error);
      throw error;
    } finally {
      ch.end.publish(event);
    }
  });
}
