import { runConformance } from '@idem/conformance';
import { createValkeyStore } from '../src/index.js';
import { findCluster, findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();
const cluster = await findCluster();
const processes = (target: object) => ({ module: new URL('./open-store.mjs', import.meta.url).href, options: () => ({ ...target, prefix: freshPrefix() }) });

runConformance({
  name: 'valkey standalone',
  enabled: url !== undefined,
  createStore: (options) => createValkeyStore({ url: url!, prefix: freshPrefix(), ...options }),
  processes: processes({ url }),
});

runConformance({
  name: 'valkey cluster',
  enabled: cluster !== undefined,
  createStore: (options) => createValkeyStore({ cluster: cluster!, prefix: freshPrefix(), ...options }),
  processes: processes({ cluster }),
});
