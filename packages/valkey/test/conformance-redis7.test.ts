// The shared conformance suite once more, on Debian's Redis 7.0 (standalone and a 3-master
// cluster, scripts/servers/redis7.sh): every other valkey suite runs on Valkey 8 only.
// Under CI=true a missing Redis 7.0 server fails the run (findServer), it never skips.
import { runConformance } from '@idem/conformance';
import { createValkeyStore } from '../src/index.js';
import { findRedis7Cluster, findRedis7Standalone, freshPrefix } from './server.js';

const url = await findRedis7Standalone();
const cluster = await findRedis7Cluster();
const processes = (target: object) => ({ module: new URL('./open-store.mjs', import.meta.url).href, options: () => ({ ...target, prefix: freshPrefix() }) });

runConformance({
  name: 'redis 7.0 standalone',
  enabled: url !== undefined,
  createStore: (options) => createValkeyStore({ url: url!, prefix: freshPrefix(), ...options }),
  processes: processes({ url }),
});

runConformance({
  name: 'redis 7.0 cluster',
  enabled: cluster !== undefined,
  createStore: (options) => createValkeyStore({ cluster: cluster!, prefix: freshPrefix(), ...options }),
  processes: processes({ cluster }),
});
