// @idem/otel with the real OpenTelemetry SDK (in-memory span and metric exporters) against a
// real LMDB store: the span tree, attributes and metric values of a first run, a duplicate, a
// crash takeover, a lost lease and a failure.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { runOnce, type IdempotencyStore } from '@idem/core';
import { createLmdbStore } from '@idem/lmdb';
import { tempDir } from '@idem/test-fixtures';
import { instrumentIdem, type IdemInstrumentation } from '../src/index.js';

const spans = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
let instrumentation: IdemInstrumentation;
let store: IdempotencyStore;
let now = Date.now();

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  instrumentation = instrumentIdem({ tracerProvider, meterProvider });
  store = await createLmdbStore({ path: tempDir(), clock: () => now });
});
afterAll(async () => {
  instrumentation.disable();
  await store.close();
  context.disable();
});
beforeEach(() => spans.reset());

/** The finished spans as a tree: "name[:operation] [outcome] [error.type]" lines, children indented under their parent. */
async function tree(): Promise<string[]> {
  await tracerProvider.forceFlush(); // spans are exported asynchronously
  const all = spans.getFinishedSpans();
  const lines: string[] = [];
  const walk = (parent: ReadableSpan | undefined, depth: number) => {
    for (const s of all.filter(
      (x) =>
        x.parentSpanContext?.spanId === parent?.spanContext().spanId &&
        (parent !== undefined || !all.some((p) => p.spanContext().spanId === x.parentSpanContext?.spanId)),
    )) {
      const outcome = [s.attributes['idem.outcome'], s.attributes['error.type']].filter((x) => x !== undefined).join(' ');
      lines.push(
        `${'  '.repeat(depth)}${s.name}${s.attributes['idem.operation'] === undefined || s.name === 'idem.claim' || s.name === 'idem.run' ? '' : `:${s.attributes['idem.operation']}`} ${outcome}`.trimEnd(),
      );
      walk(s, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

/** Sum of a metric's data points whose attributes include `match`. */
async function metric(name: string, match: Record<string, unknown> = {}): Promise<number> {
  metricExporter.reset();
  await reader.forceFlush();
  const points = metricExporter
    .getMetrics()
    .flatMap((r) => r.scopeMetrics)
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === name)
    .flatMap((m) => m.dataPoints as { attributes: Record<string, unknown>; value: number | { count: number } }[]);
  return points
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((sum, p) => sum + (typeof p.value === 'number' ? p.value : p.value.count), 0);
}

describe('@idem/otel on LMDB', () => {
  it('a first run: idem.run parents idem.claim, the user span and idem.finish; then a duplicate', async () => {
    const tracer = tracerProvider.getTracer('app');
    await tracer.startActiveSpan('request', async (request) => {
      await runOnce(store, 'first', () => tracer.startSpan('send-mail').end(), { labels: { job: 'mail' } });
      await runOnce(store, 'first', () => 'unused');
      request.end();
    });
    expect(await tree()).toEqual([
      'request',
      '  idem.run acquired',
      '    idem.claim acquired',
      '    send-mail',
      '    idem.finish:complete succeeded',
      '  idem.run completed',
      '    idem.claim completed',
    ]);
    const run = spans.getFinishedSpans().find((s) => s.name === 'idem.run')!;
    expect(run.attributes).toMatchObject({
      'idem.store.kind': 'lmdb',
      'idem.key': 'first',
      'idem.fence': 1,
      'idem.attempt': 1,
      'idem.outcome': 'acquired',
      'idem.label.job': 'mail',
    });
    expect(await metric('idem.claims', { 'idem.outcome': 'acquired', 'idem.store.kind': 'lmdb' })).toBe(1);
    expect(await metric('idem.claims', { 'idem.outcome': 'completed' })).toBe(1);
    expect(await metric('idem.claim.duration')).toBe(2);
    expect(await metric('idem.finish.duration', { 'idem.operation': 'complete', 'idem.outcome': 'succeeded' })).toBe(1);
    expect(await metric('idem.runs.in_flight')).toBe(0);
    // Outside the run, the caller's context is its own again.
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it('runs in flight counts a run while its work runs', async () => {
    let during = -1;
    await runOnce(store, 'in-flight', async () => {
      during = await metric('idem.runs.in_flight', { 'idem.store.kind': 'lmdb' });
    });
    expect(during).toBe(1);
    expect(await metric('idem.runs.in_flight')).toBe(0);
  });

  it('a crash takeover is adopted; the dead owner finishing later is a lost lease', async () => {
    const dead = await store.claim('crashed', { leaseMs: 1_000 });
    now += 5_000; // the owner's lease dies
    await runOnce(store, 'crashed', () => 'recovered');
    if (dead.outcome !== 'acquired') throw new Error('expected acquired');
    await expect(store.complete(dead.lease)).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await tree()).toEqual([
      'idem.claim acquired',
      'idem.run adopted',
      '  idem.claim adopted',
      '  idem.finish:complete succeeded',
      'idem.finish:complete LEASE_LOST',
    ]);
    const adopted = spans.getFinishedSpans().find((s) => s.name === 'idem.run')!;
    expect(adopted.attributes).toMatchObject({ 'idem.fence': 2, 'idem.attempt': 2 });
    expect(await metric('idem.claims', { 'idem.outcome': 'adopted' })).toBe(1);
    expect(await metric('idem.lease.lost', { 'idem.operation': 'complete', 'idem.store.kind': 'lmdb' })).toBe(1);
  });

  it('a lease lost during the run: the run span carries LEASE_LOST', async () => {
    const run = runOnce(store, 'stolen', async () => {
      await store.claim('stolen', { force: true, runId: 'thief' });
    });
    await expect(run).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await tree()).toEqual(['idem.run acquired LEASE_LOST', '  idem.claim acquired', '  idem.claim adopted', '  idem.finish:complete LEASE_LOST']);
    expect(await metric('idem.lease.lost')).toBe(2);
  });

  it('a failure: the run and its fail are spans; the error is typed, its message is not recorded', async () => {
    await expect(runOnce(store, 'fails', () => Promise.reject(new TypeError('secret detail')))).rejects.toThrow('secret detail');
    expect(await tree()).toEqual(['idem.run acquired TypeError', '  idem.claim acquired', '  idem.finish:fail failed']);
    const run = spans.getFinishedSpans().find((s) => s.name === 'idem.run')!;
    expect(run.status.code).toBe(2);
    expect(JSON.stringify(spans.getFinishedSpans().map((s) => [s.attributes, s.status, s.events]))).not.toContain('secret detail');
    expect(await metric('idem.finish.duration', { 'idem.operation': 'fail', 'idem.outcome': 'failed' })).toBe(1);
  });

  it('renewals are counted', async () => {
    const got = await store.claim('renewed', { leaseMs: 60_000 });
    if (got.outcome !== 'acquired') throw new Error('expected acquired');
    const before = await metric('idem.lease.renewals', { 'idem.store.kind': 'lmdb' });
    const lease = await store.renew(got.lease);
    await store.claim('renewed', { force: true });
    await expect(store.renew(lease)).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await metric('idem.lease.renewals', { 'idem.store.kind': 'lmdb' })).toBe(before + 1);
    expect(await metric('idem.lease.renewal_failures', { 'error.type': 'LEASE_LOST' })).toBe(1);
  });

  it('keys: false keeps idem.key off the spans', async () => {
    instrumentation.disable();
    const quiet = instrumentIdem({ tracerProvider, meterProvider: new MeterProvider(), keys: false });
    try {
      await runOnce(store, 'no-key-attribute', () => 1);
    } finally {
      quiet.disable();
      instrumentation = instrumentIdem({ tracerProvider, meterProvider });
    }
    await tracerProvider.forceFlush();
    const all = spans.getFinishedSpans();
    expect(all.length).toBe(3);
    for (const s of all) expect(s.attributes).not.toHaveProperty('idem.key');
  });
});
