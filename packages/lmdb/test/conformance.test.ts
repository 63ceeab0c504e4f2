import { runConformance } from '@idem/conformance';
import { tempDir } from '@idem/test-fixtures';
import { createLmdbStore } from '../src/index.js';

runConformance({
  name: 'lmdb',
  createStore: (options) => createLmdbStore({ path: tempDir(), ...options }),
  processes: {
    module: new URL('./open-store.mjs', import.meta.url).href,
    options: () => ({ path: tempDir() }),
  },
});
