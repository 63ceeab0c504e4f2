// @idem/valkey accepts ioredis ^5.9.3 || ^6.0.0 (package.json): the rest of
// the suites run on 6, this file runs the whole conformance suite on clients
// of ioredis 5 (the `ioredis5` alias), standalone and cluster, caller-owned.
import { afterAll } from 'vitest';
import { Cluster, Redis } from 'ioredis5';
import { runConformance } from '@idem/conformance';
import { createValkeyStore } from '../src/index.js';
import { findCluster, findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();
const cluster = await findCluster();
const seeds = () => cluster!.map((a) => ({ host: a.split(':')[0]!, port: Number(a.split(':')[1]) }));

const standaloneClient = url !== undefined ? new Redis(url) : undefined;
const clusterClient = cluster !== undefined ? new Cluster(seeds()) : undefined;
afterAll(async () => {
  await Promise.all([standaloneClient?.quit(), clusterClient?.quit()]);
});

runConformance({
  name: 'valkey standalone, ioredis 5 client',
  enabled: standaloneClient !== undefined,
  createStore: (options) => createValkeyStore({ client: standaloneClient!, prefix: freshPrefix(), ...options }),
});

runConformance({
  name: 'valkey cluster, ioredis 5 client',
  enabled: clusterClient !== undefined,
  createStore: (options) => createValkeyStore({ client: clusterClient!, prefix: freshPrefix(), ...options }),
});
