// The fetch-standard core behind a real Hono server on loopback, driven by fetch, on every backend
// the environment provides: the IETF draft's status rules as a table, replay, scoping, in-flight
// answers, what is not stored, body bounds, and 64 concurrent identical requests.
import type { IdempotencyStore } from '@idem/core';
import { idempotent, type FetchIdempotencyOptions } from '@idem/http';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, openStore, unique } from './backends.js';
import { gate, post, serveFetch, type Running } from './servers.js';

describe.each(BACKENDS)('@idem/http on $name', (backend) => {
  let store: IdempotencyStore;
  let server: Running;
  let runs = 0;
  const ran: string[] = [];
  let hold: Promise<void> | undefined;
  let options: Partial<FetchIdempotencyOptions> = {};
  const app = new Hono();

  beforeAll(async () => {
    store = await openStore(backend.url());
    const handler = async (request: Request) => {
      runs++;
      const body =
        request.method === 'POST' && request.headers.get('content-type') === 'application/octet-stream' ? null : await request.json().catch(() => null);
      ran.push(JSON.stringify(body));
      if (hold) await hold;
      const url = new URL(request.url);
      if (url.searchParams.get('status')) return new Response(JSON.stringify({ failed: true }), { status: Number(url.searchParams.get('status')) });
      if (url.pathname === '/binary') {
        const bytes = new Uint8Array(await request.arrayBuffer());
        return new Response(bytes.reverse(), { status: 200, headers: { 'content-type': 'application/octet-stream' } });
      }
      const headers = new Headers({ 'content-type': 'application/json', location: `/orders/${runs}`, etag: `"v${runs}"`, 'x-internal': 'not replayed' });
      headers.append('set-cookie', 'session=first-caller; HttpOnly');
      return new Response(JSON.stringify({ order: runs, body }), { status: 201, headers });
    };
    // One guarded handler per test's options; the server reads the current one.
    let guarded = idempotent(handler, { store, identity: (r) => r.headers.get('x-tenant') ?? 'anonymous' });
    const route = (request: Request) => guarded(request);
    app.post('/*', (c) => route(c.req.raw));
    app.patch('/*', (c) => route(c.req.raw));
    app.put('/*', (c) => route(c.req.raw));
    server = await serveFetch(app.fetch);
    reconfigure = (next) => {
      options = next;
      guarded = idempotent(handler, { store, identity: (r) => r.headers.get('x-tenant') ?? 'anonymous', ...options });
    };
  });
  let reconfigure: (next: Partial<FetchIdempotencyOptions>) => void = () => {};

  afterAll(async () => {
    await server?.close();
    await store?.close();
  });

  const key = () => ({ 'idempotency-key': unique('k') });

  it('the draft status table: 400 missing, 400 malformed, 201 first, replay, 422 other payload, pass-through of uncovered methods', async () => {
    reconfigure({});
    const k = key();
    const rows: [string, () => Promise<{ status: number; code?: unknown; replayed: string | null }>, number, unknown][] = [
      ['no key', () => call({ a: 1 }, {}), 400, 'IDEMPOTENCY_KEY_MISSING'],
      ['key with a space', () => call({ a: 1 }, { 'idempotency-key': 'has space' }), 400, 'IDEMPOTENCY_KEY_INVALID'],
      ['key of 256 characters', () => call({ a: 1 }, { 'idempotency-key': 'x'.repeat(256) }), 400, 'IDEMPOTENCY_KEY_INVALID'],
      ['first request', () => call({ a: 1, b: 2 }, k), 201, undefined],
      ['same request again', () => call({ a: 1, b: 2 }, k), 201, undefined],
      ['same JSON, other key order and spacing', () => call('{ "b": 2,  "a": 1 }', k), 201, undefined],
      ['same key as an sf-string', () => call({ a: 1, b: 2 }, { 'idempotency-key': `"${k['idempotency-key']}"` }), 201, undefined],
      ['other payload', () => call({ a: 1, b: 3 }, k), 422, 'KEY_REUSE_MISMATCH'],
      ['other query', () => call({ a: 1, b: 2 }, k, '/orders?x=1'), 422, 'KEY_REUSE_MISMATCH'],
      ['PUT is not covered', () => call({ a: 1 }, {}, '/orders', 'PUT'), 201, undefined],
    ];
    for (const [name, request, status, code] of rows) {
      const got = await request();
      expect({ name, status: got.status, code: got.code }).toEqual({ name, status, code });
    }
    async function call(body: unknown, headers: Record<string, string>, path = '/orders', method = 'POST') {
      const r = await post(`${server.url}${path}`, body, headers, method);
      const problem = r.headers.get('content-type') === 'application/problem+json' ? r.json() : undefined;
      if (problem) expect(problem).toMatchObject({ type: 'about:blank', status: r.status, title: expect.any(String), detail: expect.any(String) });
      return { status: r.status, code: problem?.code, replayed: r.headers.get('idempotent-replayed') };
    }
  });

  it('a replay gives the first status, body and allowed headers, marked, never Set-Cookie', async () => {
    reconfigure({});
    const k = key();
    const first = await post(`${server.url}/orders`, { item: 'book' }, k);
    expect(first.status).toBe(201);
    expect(first.headers.get('set-cookie')).toContain('first-caller');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const before = runs;
    const again = await post(`${server.url}/orders`, { item: 'book' }, k);
    expect(runs).toBe(before);
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    for (const h of ['content-type', 'location', 'etag']) expect(again.headers.get(h)).toBe(first.headers.get(h));
    expect(again.headers.get('set-cookie')).toBeNull();
    expect(again.headers.get('x-internal')).toBeNull();
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it("tenant A's key never replays to tenant B; the route and method scope keys too", async () => {
    reconfigure({});
    const k = key();
    const a = await post(`${server.url}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' });
    const b = await post(`${server.url}/orders`, { n: 1 }, { ...k, 'x-tenant': 'B' });
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(b.json().order).not.toBe(a.json().order);
    const other = await post(`${server.url}/refunds`, { n: 1 }, { ...k, 'x-tenant': 'A' });
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    const patch = await post(`${server.url}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' }, 'PATCH');
    expect(patch.headers.get('idempotent-replayed')).toBeNull();
    expect((await post(`${server.url}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' })).json()).toEqual(a.json());
  });

  it('optional keys pass through; 5xx is not stored and the retry runs; binary bodies replay byte for byte; 413 before any claim', async () => {
    reconfigure({ required: false, maxRequestBytes: 1000 });
    const before = runs;
    expect((await post(`${server.url}/orders`, { a: 1 })).status).toBe(201);
    expect(runs).toBe(before + 1);

    const k = key();
    expect((await post(`${server.url}/orders?status=503`, { a: 1 }, k)).status).toBe(503);
    expect((await post(`${server.url}/orders?status=503`, { a: 1 }, k)).status).toBe(503);
    expect(runs).toBe(before + 3);
    // 4xx is stored (Stripe's rule): the retry gets the same 409 back without running.
    const k4 = key();
    expect((await post(`${server.url}/orders?status=409`, { a: 1 }, k4)).status).toBe(409);
    const replayed = await post(`${server.url}/orders?status=409`, { a: 1 }, k4);
    expect([replayed.status, replayed.headers.get('idempotent-replayed'), runs]).toEqual([409, 'true', before + 4]);

    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const kb = key();
    const send = () => fetch(`${server.url}/binary`, { method: 'POST', headers: { ...kb, 'content-type': 'application/octet-stream' }, body: bytes });
    const one = new Uint8Array(await (await send()).arrayBuffer());
    const two = await send();
    expect(two.headers.get('idempotent-replayed')).toBe('true');
    expect(new Uint8Array(await two.arrayBuffer())).toEqual(one);
    expect(one).toEqual(bytes.slice().reverse());

    const big = await post(`${server.url}/orders`, 'x'.repeat(1001), { ...key(), 'content-type': 'text/plain' });
    expect(big.status).toBe(413);
    expect(big.json()).toMatchObject({ code: 'REQUEST_TOO_LARGE' });
    expect(runs).toBe(before + 5);
  });

  it('in flight: 409 with Retry-After at once, or the first response after waiting', async () => {
    reconfigure({});
    const held = gate();
    hold = held.promise;
    const k = key();
    const first = post(`${server.url}/orders`, { x: 1 }, k);
    while (!ran.includes('{"x":1}')) await new Promise((r) => setTimeout(r, 10));
    const busy = await post(`${server.url}/orders`, { x: 1 }, k);
    expect(busy.status).toBe(409);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(busy.json()).toMatchObject({ code: 'IN_FLIGHT', status: 409 });
    // 422 comes before 409: another payload under a key in flight is told so now, not "retry later".
    expect((await post(`${server.url}/orders`, { x: 2 }, k)).status).toBe(422);
    reconfigure({ waitMs: 600_000 });
    const waiter = post(`${server.url}/orders`, { x: 1 }, k);
    hold = undefined;
    held.open();
    const [a, b] = await Promise.all([first, waiter]);
    expect(b.status).toBe(201);
    expect(b.text).toBe(a.text);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
  });

  it('64 concurrent identical requests run the handler once and all get the same response', async () => {
    reconfigure({ waitMs: 600_000 });
    const k = key();
    const before = runs;
    const all = await Promise.all(Array.from({ length: 64 }, () => post(`${server.url}/orders`, { burst: true }, k)));
    expect(runs).toBe(before + 1);
    expect(new Set(all.map((r) => `${r.status} ${r.text}`)).size).toBe(1);
    expect(all.filter((r) => r.headers.get('idempotent-replayed') === null)).toHaveLength(1);
  });
});
