// The whole conformance suite on a caller's node-redis client (createClient of @redis/client),
// standalone: 6.3.1 (the current major, also the bench's) on RESP2 and RESP3, and 5.x (the
// `@redis/client5` alias). node-redis cluster and Sentinel clients are refused (node-redis-client.test.ts).
import { afterAll } from 'vitest';
import { createClient } from '@redis/client';
import { createClient as createClient5 } from '@redis/client5';
import { runConformance } from '@idem/conformance';
import { createValkeyStore } from '../src/index.js';
import { findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();
// node-redis emits 'error' on a broken connection and throws if nothing listens: the caller's job, done here.
const open = async <C extends { on(e: 'error', f: () => void): unknown; connect(): Promise<unknown> }>(c: C) => (
  c.on('error', () => undefined), await c.connect(), c
);
const clients =
  url === undefined
    ? []
    : ([
        ['6, RESP2', await open(createClient({ url }))],
        ['6, RESP3', await open(createClient({ url, RESP: 3 }))],
        ['5, RESP2', await open(createClient5({ url }))],
      ] as const);
afterAll(async () => {
  await Promise.all(clients.map(([, c]) => c.close()));
});

for (const [label, client] of url === undefined ? ([['6, RESP2', undefined]] as const) : clients) {
  runConformance({
    name: `valkey standalone, node-redis ${label} client`,
    enabled: client !== undefined,
    createStore: (options) => createValkeyStore({ client: client!, prefix: freshPrefix(), ...options }),
    // The 4-process race once, on 6 over RESP2: each process opens a node-redis client of its own.
    ...(label === '6, RESP2'
      ? { processes: { module: new URL('./open-node-redis-store.mjs', import.meta.url).href, options: () => ({ url: url!, prefix: freshPrefix() }) } }
      : {}),
  });
}
