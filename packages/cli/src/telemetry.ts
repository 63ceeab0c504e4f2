// `idem run --otel` (or IDEM_OTEL=1): the run's spans exported over OTLP/HTTP, configured by the
// standard OTEL_* variables, continuing the trace given in TRACEPARENT and handing the command
// its own context as TRACEPARENT. Everything here is imported only when telemetry is on: a run
// without it loads none of the SDK (startup is the CLI's main cost).
import type { Env } from './args.js';
import { usage } from './errors.js';

export interface Telemetry {
  /** Runs `fn` inside the trace given in TRACEPARENT (or a new one). */
  within<T>(fn: () => Promise<T>): Promise<T>;
  /** TRACEPARENT (and TRACESTATE) of the current span, for the command's environment. */
  childEnv(): Record<string, string>;
  /** Ends the export: every span is sent before idem exits. */
  shutdown(): Promise<void>;
}

/** IDEM_OTEL's values that turn telemetry on, and off. */
const ON = new Set(['1', 'true', 'yes', 'on']);
const OFF = new Set(['', '0', 'false', 'no', 'off']);

/** Whether telemetry is asked for: the flag, else IDEM_OTEL. */
export function telemetryWanted(flag: boolean | undefined, env: Env): boolean {
  if (flag) return true;
  const value = env.IDEM_OTEL?.trim().toLowerCase();
  if (value === undefined || OFF.has(value)) return false;
  if (ON.has(value)) return true;
  throw usage(`IDEM_OTEL must be 1, true, yes or on (or 0, false, no, off), got ${JSON.stringify(env.IDEM_OTEL)}`);
}

export async function startTelemetry(env: Env): Promise<Telemetry> {
  const [
    api,
    { W3CTraceContextPropagator },
    { AsyncLocalStorageContextManager },
    { BatchSpanProcessor, TracerProvider },
    { OTLPTraceExporter },
    resources,
    { instrumentIdem },
  ] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@idem/otel'),
  ]);
  const { context, defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT } = api;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS and _TIMEOUT itself.
  const resource = resources.defaultResource().merge(resources.resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || 'idem' }));
  const provider = new TracerProvider({ resource, spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })] });
  const idem = instrumentIdem({ tracerProvider: provider });
  const propagator = new W3CTraceContextPropagator();
  const carrier: Record<string, string> = {};
  if (env.TRACEPARENT) carrier.traceparent = env.TRACEPARENT;
  if (env.TRACESTATE) carrier.tracestate = env.TRACESTATE;
  // A malformed TRACEPARENT is ignored, as the W3C specification asks: the run starts a new trace.
  const parent = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
  return {
    within: (fn) => context.with(parent, fn),
    childEnv() {
      const out: Record<string, string> = {};
      propagator.inject(context.active(), out, defaultTextMapSetter);
      return { ...(out.traceparent ? { TRACEPARENT: out.traceparent } : {}), ...(out.tracestate ? { TRACESTATE: out.tracestate } : {}) };
    },
    async shutdown() {
      idem.disable();
      await provider.shutdown();
      context.disable();
    },
  };
}
