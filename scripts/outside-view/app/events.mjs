// An outside project reads idem's events with node:diagnostics_channel alone (docs/observability.md),
// without @idem/otel: one first run and one duplicate on LMDB, their claim outcomes and store kind.
import { tracingChannel } from 'node:diagnostics_channel';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runOnce } from '@idem/core';
import { createLmdbStore } from '@idem/lmdb';

const seen = [];
const noop = () => undefined;
tracingChannel('idem:claim').subscribe({
  start: noop,
  end: noop,
  asyncStart: noop,
  error: noop,
  asyncEnd: (e) => seen.push(`${e.storeKind}:${e.outcome}:${e.key}`),
});
const store = await createLmdbStore({ path: mkdtempSync(join(tmpdir(), 'idem-events-')) });
await runOnce(store, 'job', () => 1);
await runOnce(store, 'job', () => 2);
await store.close();
if (seen.join(' ') !== 'lmdb:acquired:job lmdb:completed:job') throw new Error(`events: ${seen.join(' ')}`);
console.log(`events: ${seen.join(' ')}`);
