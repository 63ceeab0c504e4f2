// @idem/otel: OpenTelemetry spans and metrics made from the events @idem/core publishes on its
// idem:* diagnostics channels (docs/observability.md). It loads nothing of @idem/core: the
// channels are found by name, so @opentelemetry/api is its only peer.
import { AsyncLocalStorage } from 'node:async_hooks';
import { tracingChannel, type TracingChannelSubscribers } from 'node:diagnostics_channel';
import {
  context,
  diag,
  metrics,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type MeterProvider,
  type Span,
  type TracerProvider,
} from '@opentelemetry/api';
// Types only (erased from the build): the package loads nothing of @idem/core.
import type { IdemEvent } from '@idem/core';

export interface IdemInstrumentationOptions {
  /** Default: the global tracer provider. */
  tracerProvider?: TracerProvider;
  /** Default: the global meter provider. */
  meterProvider?: MeterProvider;
  /**
   * false: spans never carry `idem.key`. Default true, and then only where the event has the key:
   * never for a store opened with hashKeys or keysInEvents: false.
   */
  keys?: boolean;
}

export interface IdemInstrumentation {
  /** Stops listening; spans already started end as their operations do not (left unended). */
  disable(): void;
}

const NAME = '@idem/otel';
const VERSION = '0.1.0';
/** Seconds, from half a millisecond (an LMDB claim) to ten seconds (an object store on a bad day). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const FINISHES = ['complete', 'fail', 'release'] as const;

/** What one runOnce carries between its events. */
interface RunState {
  span: Span | undefined;
  context: Context | undefined;
  /** Disposes the run's context when runOnce returns to its caller (see start). */
  token: { dispose(): void } | undefined;
  /** Counted in idem.runs.in_flight: its claim took the key. */
  running: boolean;
}

/**
 * Subscribes to the idem:* channels and makes the spans `idem.run`, `idem.claim` and
 * `idem.finish` and the metrics the README lists. Call it once, after the SDK is registered
 * (the run span is made current with the global context manager).
 */
export function instrumentIdem(options: IdemInstrumentationOptions = {}): IdemInstrumentation {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(NAME, VERSION);
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(NAME, VERSION);
  const keys = options.keys ?? true;
  const advice = { explicitBucketBoundaries: DURATION_BUCKETS };
  const claims = meter.createCounter('idem.claims', { unit: '{claim}', description: 'Claims, by outcome (or error.type) and store kind' });
  const claimDuration = meter.createHistogram('idem.claim.duration', { unit: 's', description: 'Duration of claims', advice });
  const finishDuration = meter.createHistogram('idem.finish.duration', { unit: 's', description: 'Duration of complete, fail and release', advice });
  const renewals = meter.createCounter('idem.lease.renewals', { unit: '{renewal}', description: 'Lease renewals that succeeded' });
  const renewalFailures = meter.createCounter('idem.lease.renewal_failures', { unit: '{renewal}', description: 'Lease renewals that failed, by error.type' });
  const leaseLost = meter.createCounter('idem.lease.lost', {
    unit: '{lease}',
    description: 'Finishes and renewals refused because another run took the key over',
  });
  const inFlight = meter.createUpDownCounter('idem.runs.in_flight', {
    unit: '{run}',
    description: 'runOnce calls whose claim took the key and that have not returned',
  });

  const spans = new WeakMap<object, Span>();
  const runs = new WeakMap<object, RunState>();
  // The run of the operation under way, for claims and finishes made inside a runOnce, and to
  // parent their spans where the context manager cannot make the run span current.
  const runStorage = new AsyncLocalStorage<RunState>();

  const spanAttributes = (e: IdemEvent): Attributes => {
    const a: Attributes = { 'idem.operation': e.operation, 'idem.store.kind': e.storeKind };
    if (keys && e.key !== undefined) a['idem.key'] = e.key;
    if (e.runId !== undefined) a['idem.run_id'] = e.runId;
    if (e.fence !== undefined) a['idem.fence'] = e.fence;
    if (e.attempt !== undefined) a['idem.attempt'] = e.attempt;
    return a;
  };
  const errorType = (e: IdemEvent): string | undefined => {
    if (!('error' in e)) return undefined;
    if (e.errorCode !== undefined) return e.errorCode;
    const name = (e.error as { name?: unknown } | null)?.name;
    return typeof name === 'string' && name !== '' ? name : '_OTHER';
  };
  /** Ends the operation's span with what the event says at its end. */
  const endSpan = (e: IdemEvent, span: Span | undefined) => {
    if (span === undefined) return;
    if (e.outcome !== undefined) span.setAttribute('idem.outcome', e.outcome);
    if (e.fence !== undefined) span.setAttribute('idem.fence', e.fence);
    if (e.attempt !== undefined) span.setAttribute('idem.attempt', e.attempt);
    if (e.labels !== undefined) for (const [name, value] of Object.entries(e.labels)) span.setAttribute(`idem.label.${name}`, value);
    const type = errorType(e);
    // The error's type only: its message is the caller's and may hold anything.
    if (type !== undefined) {
      span.setAttribute('error.type', type);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  };
  /** The span of an operation inside a run: under the current span, else under the run's. */
  const startSpan = (name: string, e: IdemEvent) => {
    const active = context.active();
    const parent = trace.getSpan(active) === undefined ? (runStorage.getStore()?.context ?? active) : active;
    spans.set(e, tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes: spanAttributes(e) }, parent));
  };
  const metricAttributes = (e: IdemEvent, extra?: Attributes): Attributes => {
    const a: Attributes = { 'idem.store.kind': e.storeKind, ...extra };
    const type = errorType(e);
    if (type !== undefined) a['error.type'] = type;
    else if (e.outcome !== undefined) a['idem.outcome'] = e.outcome;
    return a;
  };
  const seconds = (e: IdemEvent) => (e.durationMs ?? 0) / 1000;
  const lost = (e: IdemEvent) => {
    if (e.errorCode === 'LEASE_LOST') leaseLost.add(1, { 'idem.store.kind': e.storeKind, 'idem.operation': e.operation });
  };

  /** An operation that failed before its promise existed gets no asyncEnd: it ends at `end`. */
  const endedEarly = (e: IdemEvent) => 'error' in e;
  /** Ends a claim's or finish's span, once: false when it was ended already (or began before we listened). */
  const endOperation = (e: IdemEvent) => {
    const span = spans.get(e);
    if (span === undefined) return false;
    spans.delete(e);
    endSpan(e, span);
    return true;
  };

  const handlers: Record<string, Partial<TracingChannelSubscribers<IdemEvent>>> = {
    runOnce: {
      start(e) {
        const run = runs.get(e);
        if (run === undefined) return;
        run.span = tracer.startSpan('idem.run', { kind: SpanKind.INTERNAL, attributes: spanAttributes(e) }, context.active());
        run.context = trace.setSpan(context.active(), run.span);
        // The run span is current for the claim, the user's work and the finish, so that a store
        // client's spans and the user's own nest under it. `start` runs inside runOnce, before its
        // body; `end` runs before runOnce returns to its caller, and restores the caller's context.
        const attach = (context as { attach?: (ctx: Context) => { dispose(): void } }).attach;
        if (typeof attach === 'function') run.token = attach.call(context, run.context);
      },
      end(e) {
        const run = runs.get(e);
        run?.token?.dispose();
        if (run !== undefined) run.token = undefined;
        if (endedEarly(e)) this.asyncEnd!(e);
      },
      asyncEnd(e) {
        const run = runs.get(e);
        if (run === undefined) return;
        runs.delete(e);
        if (run.running) inFlight.add(-1, { 'idem.store.kind': e.storeKind });
        endSpan(e, run.span);
      },
    },
    claim: {
      start: (e) => startSpan('idem.claim', e),
      end(e) {
        if (endedEarly(e)) this.asyncEnd!(e);
      },
      asyncEnd(e) {
        if (!endOperation(e)) return;
        const attributes = metricAttributes(e);
        claims.add(1, attributes);
        claimDuration.record(seconds(e), attributes);
        const run = runStorage.getStore();
        if (run !== undefined && !run.running && (e.outcome === 'acquired' || e.outcome === 'adopted')) {
          run.running = true;
          inFlight.add(1, { 'idem.store.kind': e.storeKind });
        }
      },
    },
    renew: {
      end(e) {
        if (endedEarly(e)) this.asyncEnd!(e);
      },
      asyncEnd(e) {
        if (errorType(e) === undefined) renewals.add(1, { 'idem.store.kind': e.storeKind });
        else renewalFailures.add(1, metricAttributes(e));
        lost(e);
      },
    },
  };
  for (const op of FINISHES) {
    handlers[op] = {
      start: (e) => startSpan('idem.finish', e),
      end(e) {
        if (endedEarly(e)) this.asyncEnd!(e);
      },
      asyncEnd(e) {
        if (!endOperation(e)) return;
        finishDuration.record(seconds(e), metricAttributes(e, { 'idem.operation': e.operation }));
        lost(e);
      },
    };
  }

  // A bug here must not reach idem's caller (Node would raise it as an uncaught exception).
  const guard = (name: string, fn: ((e: IdemEvent) => void) | undefined, self: Partial<TracingChannelSubscribers<IdemEvent>>) => (e: unknown) => {
    try {
      fn?.call(self, e as IdemEvent);
    } catch (error) {
      diag.error(`${NAME}: the ${name} handler failed`, error);
    }
  };
  const subscribed: [ReturnType<typeof tracingChannel<unknown, IdemEvent>>, TracingChannelSubscribers<IdemEvent>][] = [];
  for (const [op, h] of Object.entries(handlers)) {
    const ch = tracingChannel<unknown, IdemEvent>(`idem:${op}`);
    const s: TracingChannelSubscribers<IdemEvent> = {
      start: guard(`${op} start`, h.start, h),
      end: guard(`${op} end`, h.end, h),
      asyncStart: () => undefined,
      asyncEnd: guard(`${op} asyncEnd`, h.asyncEnd, h),
      error: () => undefined,
    };
    ch.subscribe(s);
    subscribed.push([ch, s]);
  }
  const runOnceStart = tracingChannel<unknown, IdemEvent>('idem:runOnce').start;
  // Bound stores are entered before `start` is published: the run's state is made here.
  runOnceStart.bindStore(runStorage, (e) => {
    const run: RunState = { span: undefined, context: undefined, token: undefined, running: false };
    runs.set(e, run);
    return run;
  });

  return {
    disable() {
      for (const [ch, s] of subscribed) ch.unsubscribe(s);
      runOnceStart.unbindStore(runStorage);
    },
  };
}
