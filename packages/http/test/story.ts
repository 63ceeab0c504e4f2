// One story, every framework, every backend: a real server of the framework on loopback, driven
// by fetch: the IETF draft's status rules as a table, replay, scoping, in-flight answers, what is
// not stored, body bounds, a handler that throws, and 64 concurrent identical requests.
import type { IdempotencyStore } from '@idem/core';
import type { IdempotencyOptions } from '@idem/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, openStore, unique } from './backends.js';
import { gate, post, type Running } from './servers.js';

/** What the test's handler records and how it is held; shared by the story and the framework's app. */
export interface AppState {
  runs: number;
  ran: string[];
  hold: Promise<void> | undefined;
}

/**
 * The app every framework serves, behind the middleware: POST, PATCH and PUT on any path answer
 * 201 JSON `{ order, body }` with Location, ETag, X-Internal and a Set-Cookie; `?status=N` answers N;
 * `/binary` answers the raw body reversed; `/throw` throws; `/stream?size=N` streams N bytes
 * (`chunks(N)`, 100 bytes at a time). The tenant is the `x-tenant` header.
 */
export type Mount = (options: IdempotencyOptions, state: AppState) => Promise<Running>;

/** The response of the app's default route, one builder for every framework. */
export function created(state: AppState, body: unknown): { status: number; headers: [string, string][]; json: string } {
  const n = state.runs;
  return {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['location', `/orders/${n}`],
      ['etag', `"v${n}"`],
      ['x-internal', 'not replayed'],
      ['set-cookie', 'session=first-caller; HttpOnly'],
    ],
    json: JSON.stringify({ order: n, body }),
  };
}

/** The chunks `/stream?size=N` sends: N bytes in all, each chunk numbered by its first byte. */
export function chunks(size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < size; at += 100) out.push(Buffer.alloc(Math.min(100, size - at), 97 + ((at / 100) % 26)));
  return out;
}

export function story(framework: string, mount: Mount): void {
  describe.each(BACKENDS)(`${framework} on $name`, (backend) => {
    let store: IdempotencyStore;
    let server: Running | undefined;
    const state: AppState = { runs: 0, ran: [], hold: undefined };
    beforeAll(async () => {
      store = await openStore(backend.url());
    });
    afterAll(async () => {
      await server?.close();
      await store?.close();
    });
    const reconfigure = async (options: Partial<IdempotencyOptions>) => {
      await server?.close();
      server = await mount({ store, ...options }, state);
    };
    const url = () => server!.url;
    const key = () => ({ 'idempotency-key': unique('k') });

    it('the draft status table: 400 missing, 400 malformed, 201 first, replay, 422 other payload, pass-through of uncovered methods', async () => {
      await reconfigure({});
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
        const r = await post(`${url()}${path}`, body, headers, method);
        const problem = r.headers.get('content-type') === 'application/problem+json' ? r.json() : undefined;
        if (problem) expect(problem).toMatchObject({ type: 'about:blank', status: r.status, title: expect.any(String), detail: expect.any(String) });
        return { status: r.status, code: problem?.code, replayed: r.headers.get('idempotent-replayed') };
      }
    });

    it('a replay gives the first status, body and allowed headers, marked, never Set-Cookie', async () => {
      await reconfigure({});
      const k = key();
      const first = await post(`${url()}/orders`, { item: 'book' }, k);
      expect(first.status).toBe(201);
      expect(first.headers.get('set-cookie')).toContain('first-caller');
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const before = state.runs;
      const again = await post(`${url()}/orders`, { item: 'book' }, k);
      expect(state.runs).toBe(before);
      expect(again.status).toBe(201);
      expect(again.text).toBe(first.text);
      for (const h of ['content-type', 'location', 'etag']) expect(again.headers.get(h)).toBe(first.headers.get(h));
      expect(again.headers.get('set-cookie')).toBeNull();
      expect(again.headers.get('x-internal')).toBeNull();
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    });

    it("tenant A's key never replays to tenant B; the route and method scope keys too", async () => {
      await reconfigure({});
      const k = key();
      const a = await post(`${url()}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' });
      const b = await post(`${url()}/orders`, { n: 1 }, { ...k, 'x-tenant': 'B' });
      expect(b.headers.get('idempotent-replayed')).toBeNull();
      expect(b.json().order).not.toBe(a.json().order);
      const other = await post(`${url()}/refunds`, { n: 1 }, { ...k, 'x-tenant': 'A' });
      expect(other.headers.get('idempotent-replayed')).toBeNull();
      const patch = await post(`${url()}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' }, 'PATCH');
      expect(patch.headers.get('idempotent-replayed')).toBeNull();
      expect((await post(`${url()}/orders`, { n: 1 }, { ...k, 'x-tenant': 'A' })).json()).toEqual(a.json());
    });

    it('optional keys pass through; 5xx is not stored and the retry runs; binary bodies replay byte for byte; 413 before any claim', async () => {
      await reconfigure({ required: false, maxRequestBytes: 1000 });
      const before = state.runs;
      expect((await post(`${url()}/orders`, { a: 1 })).status).toBe(201);
      expect(state.runs).toBe(before + 1);

      const k = key();
      expect((await post(`${url()}/orders?status=503`, { a: 1 }, k)).status).toBe(503);
      expect((await post(`${url()}/orders?status=503`, { a: 1 }, k)).status).toBe(503);
      expect(state.runs).toBe(before + 3);
      // 4xx is stored (Stripe's rule): the retry gets the same 409 back without running.
      const k4 = key();
      expect((await post(`${url()}/orders?status=409`, { a: 1 }, k4)).status).toBe(409);
      const replayed = await post(`${url()}/orders?status=409`, { a: 1 }, k4);
      expect([replayed.status, replayed.headers.get('idempotent-replayed'), state.runs]).toEqual([409, 'true', before + 4]);

      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const kb = key();
      const send = () => fetch(`${url()}/binary`, { method: 'POST', headers: { ...kb, 'content-type': 'application/octet-stream' }, body: bytes });
      const one = new Uint8Array(await (await send()).arrayBuffer());
      const two = await send();
      expect(two.headers.get('idempotent-replayed')).toBe('true');
      expect(new Uint8Array(await two.arrayBuffer())).toEqual(one);
      expect(one).toEqual(bytes.slice().reverse());

      const big = await post(`${url()}/orders`, 'x'.repeat(1001), { ...key(), 'content-type': 'text/plain' });
      expect(big.status).toBe(413);
      expect(big.json()).toMatchObject({ code: 'REQUEST_TOO_LARGE' });
      expect(state.runs).toBe(before + 5);
    });

    it('in flight: 409 with Retry-After at once, or the first response after waiting', async () => {
      await reconfigure({});
      const held = gate();
      state.hold = held.promise;
      const k = key();
      const first = post(`${url()}/orders`, { x: 1 }, k);
      while (!state.ran.includes('{"x":1}')) await new Promise((r) => setTimeout(r, 10));
      const busy = await post(`${url()}/orders`, { x: 1 }, k);
      expect(busy.status).toBe(409);
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(busy.json()).toMatchObject({ code: 'IN_FLIGHT', status: 409 });
      // 422 comes before 409: another payload under a key in flight is told so now, not "retry later".
      expect((await post(`${url()}/orders`, { x: 2 }, k)).status).toBe(422);
      // A second server on the same store, whose middleware waits for the owner.
      const patient = await mount({ store, waitMs: 600_000 }, state);
      const waiter = post(`${patient.url}/orders`, { x: 1 }, k);
      state.hold = undefined;
      held.open();
      const [a, b] = await Promise.all([first, waiter]);
      await patient.close();
      expect(b.status).toBe(201);
      expect(b.text).toBe(a.text);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
    });

    it('64 concurrent identical requests run the handler once and all get the same response', async () => {
      await reconfigure({ waitMs: 600_000 });
      const k = key();
      const before = state.runs;
      const all = await Promise.all(Array.from({ length: 64 }, () => post(`${url()}/orders`, { burst: true }, k)));
      expect(state.runs).toBe(before + 1);
      expect(new Set(all.map((r) => `${r.status} ${r.text}`)).size).toBe(1);
      expect(all.filter((r) => r.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    });

    it('a streamed response past maxResponseBytes goes out whole and uncached (the retry runs); one under it is stored', async () => {
      await reconfigure({ maxResponseBytes: 1000 });
      const before = state.runs;
      const expected = Buffer.concat(chunks(5000)).toString();
      const k = key();
      for (let i = 0; i < 2; i++) {
        const big = await post(`${url()}/stream?size=5000`, { s: 1 }, k);
        expect([big.status, big.text.length, big.text === expected, big.headers.get('idempotent-replayed')]).toEqual([200, 5000, true, null]);
      }
      expect(state.runs).toBe(before + 2);
      const ks = key();
      const small = await post(`${url()}/stream?size=900`, { s: 1 }, ks);
      const again = await post(`${url()}/stream?size=900`, { s: 1 }, ks);
      expect([again.text, again.headers.get('idempotent-replayed'), state.runs]).toEqual([small.text, 'true', before + 3]);
      expect(small.text).toBe(Buffer.concat(chunks(900)).toString());
    });

    it('a handler that throws answers 500 and stores nothing: the retry runs it again', async () => {
      await reconfigure({});
      const k = key();
      const before = state.runs;
      expect((await post(`${url()}/throw`, { t: 1 }, k)).status).toBe(500);
      expect((await post(`${url()}/throw`, { t: 1 }, k)).status).toBe(500);
      expect(state.runs).toBe(before + 2);
    });
  });
}
