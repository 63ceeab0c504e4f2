// The bench's API server, in its own process, on the store at argv[2]; prints its port. Routes:
//   /noop                  the trivial handler, bare
//   /noop/idem             the same behind @idem/http
//   /noop/node-idempotency the same behind node-idempotency on the same Redis (Valkey runs only)
//   /work, /work/idem      a handler doing what a write endpoint does (see `work`), bare and behind @idem/http
//   GET /cpu               this process's CPU time so far (µs), for the bench's per-request accounting
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import { openStoreUrl } from '@idem/core/url';
import { idempotent } from '@idem/http';
import nodeIdempotency from '@node-idempotency/core';
import nodeIdempotencyRedis from '@node-idempotency/storage-adapter-redis';

const { Idempotency, IdempotencyError, IdempotencyErrorCodes } = nodeIdempotency;
const { RedisStorageAdapter } = nodeIdempotencyRedis;

const [storeUrl, redisUrl] = process.argv.slice(2);
const store = await openStoreUrl(storeUrl, { importer: (s) => import(s) });

/** The trivial handler: echoes the JSON body, 201. */
const noop = async (request) => Response.json({ ok: true, got: await request.json() }, { status: 201 });

/**
 * A handler shaped like a real write endpoint: it awaits a database call (a 2 ms round trip,
 * stood in for by a timer: the awaited latency, not the database's CPU) and spends CPU of its own
 * (validating, serialising: 100 SHA-256 of a KiB, 0.15-0.25 ms of the server's CPU on the machine
 * the README's figures come from).
 */
const WORK_BYTES = Buffer.alloc(1024, 7);
const work = async (request) => {
  const got = await request.json();
  await sleep(2);
  let digest = '';
  for (let i = 0; i < 100; i++) digest = createHash('sha256').update(WORK_BYTES).update(digest).digest('hex');
  return Response.json({ ok: true, got, digest: digest.slice(0, 8) }, { status: 201 });
};

const options = { store, identity: () => 'bench' };
const routes = new Map([
  ['/noop', noop],
  ['/noop/idem', idempotent(noop, options)],
  ['/work', work],
  ['/work/idem', idempotent(work, options)],
]);

if (redisUrl) {
  // node-idempotency has no fetch or Hono integration (its packages are core, storages and NestJS):
  // driven as its README and its NestJS interceptor do, onRequest, the handler, onResponse with the
  // body and status, here on the request's parsed JSON (its fingerprint is a hash of the body).
  const storage = new RedisStorageAdapter({ url: redisUrl });
  await storage.connect();
  const ni = new Idempotency(storage, { cacheKeyPrefix: `idem-http-bench-ni-${process.pid}` });
  routes.set('/noop/node-idempotency', async (request) => {
    const body = await request.json();
    const req = { method: request.method, path: '/noop', headers: { 'idempotency-key': request.headers.get('idempotency-key') }, body };
    let cached;
    try {
      cached = await ni.onRequest(req);
    } catch (error) {
      if (!(error instanceof IdempotencyError)) throw error;
      const status =
        error.code === IdempotencyErrorCodes.REQUEST_IN_PROGRESS ? 409 : error.code === IdempotencyErrorCodes.IDEMPOTENCY_FINGERPRINT_MISSMATCH ? 422 : 400;
      return Response.json({ error: error.code }, { status });
    }
    if (cached !== undefined)
      return new Response(cached.body, { status: cached.additional.status, headers: { ...cached.additional.headers, 'idempotent-replayed': 'true' } });
    // The same handler, handed a request carrying the body it parsed.
    const response = await noop(new Request(request.url, { method: 'POST', headers: request.headers, body: JSON.stringify(body) }));
    const text = await response.text();
    await ni.onResponse(req, { body: text, additional: { status: response.status, headers: { 'content-type': response.headers.get('content-type') } } });
    return new Response(text, { status: response.status, headers: response.headers });
  });
}

serve(
  {
    fetch: (request) => {
      const path = request.url.slice(request.url.indexOf('/', 8));
      if (path === '/cpu') {
        const { user, system } = process.cpuUsage();
        return Response.json({ user, system });
      }
      const route = routes.get(path);
      return route ? route(request) : new Response(null, { status: 404 });
    },
    port: 0,
    hostname: '127.0.0.1',
  },
  (info) => process.stdout.write(`${info.port}\n`),
);
