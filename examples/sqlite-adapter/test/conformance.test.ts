// The example adapter through the whole exported suite: forced interleavings,
// handles racing on one file, and 4 OS processes over 200 keys.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from '@idem/conformance';
import { createSqliteStore } from '../src/index.ts';

const freshPath = () => join(mkdtempSync(join(tmpdir(), 'idem-sqlite-')), 'idem.db');

runConformance({
  name: 'sqlite (example adapter)',
  createStore: (options) => createSqliteStore({ path: freshPath(), ...options }),
  createSharedStores: async (options, count) => {
    const path = freshPath();
    return Promise.all(Array.from({ length: count }, () => createSqliteStore({ path, ...options })));
  },
  processes: { module: new URL('./open-store.ts', import.meta.url).href, options: () => ({ path: freshPath() }) },
});
