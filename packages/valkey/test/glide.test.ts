// The whole conformance suite on a caller's Valkey GLIDE client (@valkey/valkey-glide, the Valkey
// project's own client, Rust core): GlideClient over RESP3 (its default) and RESP2, and
// GlideClusterClient. GLIDE cannot put WAIT (WAITAOF) on the connection that ran the scripts, in
// their round trip, so minReplicas and fsync are refused at open: tested below.
import { afterAll, describe, expect, it } from 'vitest';
import { GlideClient, GlideClusterClient, ProtocolVersion } from '@valkey/valkey-glide';
import { runConformance } from '@idem/conformance';
import { IdemError } from '@idem/core';
import { createValkeyStore } from '../src/index.js';
import { findCluster, findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();
const cluster = await findCluster();
const address = (hostPort: string) => ({ host: hostPort.split(':')[0]!, port: Number(hostPort.split(':')[1]) });
const standalone = url === undefined ? undefined : [address(new URL(url).host)];
const seeds = cluster?.map(address);
// GLIDE's requestTimeout defaults to 250 ms, which a loaded 2-core machine can exceed; the store
// retries a timed-out attempt within its own timeoutMs either way.
const requestTimeout = 2000;

const clients = [
  ...(standalone
    ? ([
        ['GlideClient, RESP3', await GlideClient.createClient({ addresses: standalone, requestTimeout })],
        ['GlideClient, RESP2', await GlideClient.createClient({ addresses: standalone, requestTimeout, protocol: ProtocolVersion.RESP2 })],
      ] as const)
    : []),
  ...(seeds ? ([['GlideClusterClient', await GlideClusterClient.createClient({ addresses: seeds, requestTimeout })]] as const) : []),
];
afterAll(() => {
  for (const [, c] of clients) c.close();
});

const suites = [
  ['GlideClient, RESP3', standalone, false],
  ['GlideClient, RESP2', standalone, false],
  ['GlideClusterClient', seeds, true],
] as const;
for (const [label, addresses, isCluster] of suites) {
  const client = clients.find(([l]) => l === label)?.[1];
  runConformance({
    name: `valkey ${isCluster ? 'cluster' : 'standalone'}, Valkey GLIDE ${label} client`,
    enabled: client !== undefined,
    createStore: (options) => createValkeyStore({ client: client!, prefix: freshPrefix(), ...options }),
    // The 4-process race on RESP3 and on the cluster: each process opens a GLIDE client of its own.
    ...(label !== 'GlideClient, RESP2'
      ? {
          processes: {
            module: new URL('./open-glide-store.mjs', import.meta.url).href,
            options: () => ({ addresses: addresses!, cluster: isCluster, prefix: freshPrefix() }),
          },
        }
      : {}),
  });
}

describe('a Valkey GLIDE client: what it cannot guarantee is refused at open', () => {
  it.skipIf(clients.length === 0)('minReplicas and fsync are INVALID_ARGUMENT, naming GLIDE; close() leaves the client open', async () => {
    for (const [label, client] of clients) {
      for (const options of [{ minReplicas: 1 }, { fsync: true }, { minReplicas: 1, fsync: true }]) {
        const error = await createValkeyStore({ client, ...options }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, `${label} ${JSON.stringify(options)}`).toBeInstanceOf(IdemError);
        expect((error as IdemError).code).toBe('INVALID_ARGUMENT');
        expect((error as IdemError).message).toMatch(/not supported on a Valkey GLIDE client/);
      }
      const store = await createValkeyStore({ client, prefix: freshPrefix() });
      await store.close();
      expect(await client.customCommand(['PING'])).toBe('PONG');
    }
  });
});
