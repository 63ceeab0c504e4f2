// Typechecked only (never called): the user-facing API with real SDK clients, under strict settings.
import { Storage } from '@google-cloud/storage';
import { S3Client } from '@aws-sdk/client-s3';
import { Cluster, Redis } from 'ioredis';
import { GlideClient, GlideClusterClient } from '@valkey/valkey-glide';
import pg from 'pg';
import { createClient } from '@redis/client';
import { IdemError, runOnce, type IdempotencyStore } from '@idem/core';
import { runConformance } from '@idem/conformance';
import { createGcsStore } from '@idem/gcs';
import { createLmdbStore } from '@idem/lmdb';
import { createPostgresStore, createSchema } from '@idem/postgres';
import { createS3Store } from '@idem/s3';
import { createValkeyStore } from '@idem/valkey';
import * as cli from '@idem/cli';
import { instrumentIdem } from '@idem/otel';
import { idempotent } from '@idem/http';
import { idempotency as expressIdempotency } from '@idem/http/express';
import { idempotency as fastifyIdempotency } from '@idem/http/fastify';
import express from 'express';
import Fastify from 'fastify';

export async function http(store: IdempotencyStore): Promise<(request: Request) => Promise<Response>> {
  const app = express();
  app.use(express.json(), expressIdempotency({ store, identity: (req) => req.get('x-tenant') ?? 'anonymous', waitMs: 5_000 }));
  const fastify = Fastify();
  await fastify.register(fastifyIdempotency({ store, identity: (request) => String(request.headers['x-tenant'] ?? 'anonymous') }));
  return idempotent(async (request, { fence, signal }) => Response.json({ fence, aborted: signal?.aborted, body: await request.json() }), {
    store,
    identity: (request) => request.headers.get('x-tenant') ?? 'anonymous',
    replayHeaders: ['content-type', 'location'],
  });
}

export async function uses(): Promise<void> {
  const stores: IdempotencyStore[] = [
    await createLmdbStore({ path: './.idem', leaseMs: 60_000 }),
    await createValkeyStore({ client: new Redis(), prefix: 'idem:' }),
    await createValkeyStore({ client: new Cluster([{ host: '127.0.0.1', port: 7000 }]) }),
    await createValkeyStore({ url: 'redis://127.0.0.1:6379' }),
    await createValkeyStore({ client: await GlideClient.createClient({ addresses: [{ host: '127.0.0.1', port: 6379 }] }) }),
    await createValkeyStore({ client: await GlideClusterClient.createClient({ addresses: [{ host: '127.0.0.1', port: 7000 }] }) }),
    await createValkeyStore({ client: await createClient().connect(), prefix: 'idem:' }),
    await createS3Store({ client: new S3Client({}), bucket: 'my-bucket', prefix: 'idem/' }),
    await createGcsStore({ bucket: new Storage().bucket('my-bucket') }),
    await createPostgresStore({ url: 'postgres://app@127.0.0.1:5432/app', table: 'idem_jobs' }),
    await createPostgresStore({ pool: new pg.Pool(), createSchema: true }),
  ];
  await createSchema({ pool: new pg.Pool(), schema: 'jobs' });
  for (const store of stores) {
    const run = await runOnce(store, 'key', async () => 42);
    if (run.status === 'completed') console.log(run.result);
    await store.close();
  }
  runConformance({ name: 'x', createStore: (options) => createLmdbStore({ path: './.idem', ...options }) });
  instrumentIdem({ keys: false }).disable();
  console.log(new IdemError('IN_FLIGHT', 'x') instanceof Error, typeof cli);
}
