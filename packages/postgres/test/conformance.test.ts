import { runConformance } from '@idem/conformance';
import { createPostgresStore } from '../src/index.js';
import { findPostgres, freshTable } from './server.js';

const url = await findPostgres();

runConformance({
  name: 'postgres',
  enabled: url !== undefined,
  // Every claim is a commit flushed to disk: sequential claims on a loaded machine take a while.
  realLeaseMs: 1500,
  createStore: (options) => createPostgresStore({ url: url!, table: freshTable(), createSchema: true, ...options }),
  createSharedStores: async (options, count) => {
    const table = freshTable();
    return Promise.all(Array.from({ length: count }, () => createPostgresStore({ url: url!, table, createSchema: true, ...options })));
  },
  processes: { module: new URL('./open-store.mjs', import.meta.url).href, options: () => ({ url: url!, table: freshTable(), createSchema: true }) },
});
