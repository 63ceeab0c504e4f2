// An adapter written in TypeScript (test/fixtures/file-store.ts) through the
// whole suite, including the multi-process race whose workers load its `.ts`
// open-store module under plain `node`.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from '../src/index.js';
import { createFileStore } from './fixtures/file-store.js';

const fresh = () => mkdtempSync(join(tmpdir(), 'idem-file-store-'));

runConformance({
  name: 'file store (TypeScript adapter fixture)',
  createStore: (options) => createFileStore({ dir: fresh(), ...options }),
  createSharedStores: async (options, count) => {
    const dir = fresh();
    return Promise.all(Array.from({ length: count }, () => createFileStore({ dir, ...options })));
  },
  processes: { module: new URL('./fixtures/open-store.ts', import.meta.url).href, options: () => ({ dir: fresh() }) },
  model: { runs: 10 },
});
