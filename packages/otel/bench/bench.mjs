// @idem/otel bench: what attaching it costs runOnce, in one run. Prints ratios; never asserts.
//   node bench/bench.mjs [--rounds=N]      (pnpm --filter @idem/otel bench; build first)
// runOnce over fresh keys on the in-memory store (runOnce's own CPU is all there is, so the
// instrumentation's cost shows at its largest) and on a durable LMDB store (what a user pays),
// each without any subscriber and with @idem/otel attached to a real SDK: the AsyncLocalStorage
// context manager, a batch span processor whose exporter drops the spans, and a meter provider
// with a reader. Rounds alternate the two sides and rotate their order; medians of the ratios.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { runOnce } from '@idem/core';
import { createMemoryStore } from '@idem/core/memory';
import { createLmdbStore } from '@idem/lmdb';
import { instrumentIdem } from '@idem/otel';

const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice(9) ?? 7);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const dropped = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => undefined };
const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter: dropped })] });
const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
const dir = mkdtempSync(join(tmpdir(), 'idem-otel-bench-'));
const lmdb = await createLmdbStore({ path: dir });

let seq = 0;
/** runOnce/s over `n` fresh keys, 16 at a time (one at a time on LMDB would measure fsync alone). */
async function rate(store, n) {
  const work = () => 1;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < n) await runOnce(store, `k-${seq++}`, work);
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}
const withOtel = async (fn) => {
  const idem = instrumentIdem({ tracerProvider, meterProvider });
  try {
    return await fn();
  } finally {
    idem.disable();
  }
};

const stores = { memory: [createMemoryStore(), 20_000], lmdb: [lmdb, 4_000] };
console.log(
  `load average at start: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; ${rounds} rounds`,
);
console.log('| store | runOnce/s, no subscriber | runOnce/s, @idem/otel | ratio (median, rounds) |');
console.log('| --- | --- | --- | --- |');
for (const [name, [store, n]] of Object.entries(stores)) {
  await rate(store, 1000); // warm-up
  await withOtel(() => rate(store, 1000));
  const plain = [];
  const otel = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      plain.push(await rate(store, n));
      otel.push(await withOtel(() => rate(store, n)));
    } else {
      otel.push(await withOtel(() => rate(store, n)));
      plain.push(await rate(store, n));
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ratios = otel.map((x, i) => x / plain[i]);
  console.log(
    `| ${name} | ${Math.round(median(plain))} | ${Math.round(median(otel))} | ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) |`,
  );
}
console.log(
  `load average at end: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
await lmdb.close();
await tracerProvider.shutdown();
await meterProvider.shutdown();
rmSync(dir, { recursive: true, force: true });
