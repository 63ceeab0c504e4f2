// @idem/otel with the real OpenTelemetry SDK (in-memory span and metric exporters) against real
// stores: the span tree, attributes and metric values of a first run and a duplicate on LMDB,
// Valkey and S3 (MinIO); a crash takeover, lost leases and a failure on LMDB.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { S3Client } from '@aws-sdk/client-s3';
import { runOnce, type IdempotencyStore } from '@idem/core';
import { createLmdbStore } from '@idem/lmdb';
import { createS3Store } from '@idem/s3';
import { findServer, tempDir } from '@idem/test-fixtures';
import { createValkeyStore } from '@idem/valkey';
import { instrumentIdem, type IdemInstrumentation } from '../src/index.js';

const spans = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
let instrumentation: IdemInstrumentation;
let store: IdempotencyStore;
let now = Date.now();
const prefix = `otel-${process.pid}-${Date.now().toString(36)}/`;

const redis = await findServer({ label: '@idem/otel on Valkey', env: ['IDEM_TEST_REDIS_URL'] });
const s3 = await findServer({
  label: '@idem/otel on S3',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
});
const backends: { kind: string; open: (() => Promise<IdempotencyStore>) | undefined }[] = [
  { kind: 'lmdb', open: () => createLmdbStore({ path: tempDir() }) },
  { kind: 'valkey', open: redis && (() => createValkeyStore({ url: redis.IDEM_TEST_REDIS_URL!, prefix })) },
  {
    kind: 's3',
    open:
      s3 &&
      (() => {
        const client = new S3Client({
          endpoint: s3.IDEM_TEST_S3_ENDPOINT,
          region: s3.IDEM_TEST_S3_REGION,
          forcePathStyle: true,
          credentials: { accessKeyId: s3.IDEM_TEST_S3_ACCESS_KEY!, secretAccessKey: s3.IDEM_TEST_S3_SECRET_KEY! },
        });
        return createS3Store({ client, bucket: s3.IDEM_TEST_S3_BUCKET!, prefix });
      }),
  },
];

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

describe.each(backends)('@idem/otel on $kind', ({ kind, open }) => {
  it.skipIf(open === undefined)('a first run: idem.run parents idem.claim, the user span and idem.finish; then a duplicate', async () => {
    const store = await open!();
    const tracer = tracerProvider.getTracer('app');
    const key = `first/${kind}`;
    const before = await metric('idem.claims', { 'idem.store.kind': kind });
    try {
      await tracer.startActiveSpan('request', async (request) => {
        await runOnce(store, key, () => tracer.startSpan('send-mail').end(), { labels: { job: 'mail' } });
        await runOnce(store, key, () => 'unused');
        request.end();
      });
    } finally {
      await store.close();
    }
    expect(await tree()).toEqual([
      'request',
      '  idem.run acquired',
      '    idem.claim acquired',
      '    send-mail',
      '    idem.finish:complete succeeded',
      '  idem.run completed',
      '    idem.claim completed',
    ]);
    const runs = spans.getFinishedSpans().filter((s) => s.name === 'idem.run');
    expect(runs[0]!.attributes).toMatchObject({
      'idem.store.kind': kind,
      'idem.key': key,
      'idem.attempt': 1,
      'idem.outcome': 'acquired',
      'idem.label.job': 'mail',
    });
    // A duplicate's span carries the fence of the record it found.
    expect(runs[1]!.attributes['idem.fence']).toBe(runs[0]!.attributes['idem.fence']);
    expect(await metric('idem.claims', { 'idem.store.kind': kind })).toBe(before + 2);
    expect(await metric('idem.claim.duration', { 'idem.store.kind': kind, 'idem.outcome': 'completed' })).toBeGreaterThanOrEqual(1);
    expect(await metric('idem.finish.duration', { 'idem.store.kind': kind, 'idem.operation': 'complete', 'idem.outcome': 'succeeded' })).toBe(1);
    expect(await metric('idem.runs.in_flight', { 'idem.store.kind': kind })).toBe(0);
    // Outside the run, the caller's context is its own again.
    expect(trace.getActiveSpan()).toBeUndefined();
  });
});

describe('@idem/otel on LMDB', () => {
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
