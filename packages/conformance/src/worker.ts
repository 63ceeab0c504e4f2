// One OS process of the multi-process race: opens the shared store through
// the adapter's module, waits for a common start time, then claims every key
// and "executes" (records) those it wins. Runs under plain `node`, outside vitest.
import * as nodeModule from 'node:module';
import type { IdempotencyStore } from '@idem/core';

interface Args {
  module: string;
  options: unknown;
  keys: number;
  startAt: number;
  worker: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;

// An adapter written in TypeScript: Node (22.18+, 24) strips the types of a
// `.ts` module, but its imports say `./x.js` (as tsc wants) while only `x.ts`
// exists in its source tree. Resolve such a relative `.js` import from a
// `.ts` module to the `.ts` file when the `.js` one is missing.
if (args.module.endsWith('.ts') && typeof nodeModule.registerHooks === 'function') {
  nodeModule.registerHooks({
    resolve(specifier, context, next) {
      try {
        return next(specifier, context);
      } catch (error) {
        const fromTs = context.parentURL?.endsWith('.ts') === true;
        const relativeJs = specifier.startsWith('.') && specifier.endsWith('.js');
        if (!(fromTs && relativeJs && (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND')) throw error;
        return next(`${specifier.slice(0, -3)}.ts`, context);
      }
    },
  });
}

const open = (await import(args.module)).default as (options: unknown) => Promise<IdempotencyStore>;
const store = await open(args.options);
await new Promise((r) => setTimeout(r, Math.max(0, args.startAt - Date.now())));

const executed: number[] = [];
let inFlight = 0;
let completed = 0;
const CONCURRENCY = 16;
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < args.keys) {
      const i = next++;
      const got = await store.claim(`race-key-${i}`, { runId: `w${args.worker}-${i}`, leaseMs: 120_000 });
      if (got.outcome === 'acquired' || got.outcome === 'adopted') {
        executed.push(i);
        await store.complete(got.lease, { result: args.worker });
      } else if (got.outcome === 'in_flight') inFlight++;
      else completed++;
    }
  }),
);
await store.close();
process.stdout.write(JSON.stringify({ executed, inFlight, completed }));
