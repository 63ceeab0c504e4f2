// What the claim becomes when a response is not stored (fail or release), and the store down:
// 503 problem with Retry-After, told to onError, with nothing of the store's URL in the body.
import type { IdempotencyStore } from '@idem/core';
import { idempotent } from '@idem/http';
import { createLmdbStore } from '@idem/lmdb';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore } from './backends.js';

let store: IdempotencyStore;
beforeAll(async () => {
  store = await createLmdbStore({ path: tempDir('idem-http-errors-') });
});
afterAll(() => store.close());

const request = (key: string) =>
  new Request('http://api.test/orders', { method: 'POST', headers: { 'idempotency-key': key, 'content-type': 'application/json' }, body: '{"a":1}' });

it.each(['fail', 'release'] as const)('uncached: %s leaves the key free for the retry, recording a failure or nothing', async (uncached) => {
  let runs = 0;
  const handler = idempotent(
    async () => {
      runs++;
      return new Response('down', { status: 502 });
    },
    { store, identity: () => `tenant-${uncached}`, uncached },
  );
  expect((await handler(request('k'))).status).toBe(502);
  const failed = await store.list({ status: 'failed' });
  const mine = failed.records.filter((r) => r.key.includes(`tenant-${uncached}`));
  expect(mine).toHaveLength(uncached === 'fail' ? 1 : 0);
  expect((await handler(request('k'))).status).toBe(502);
  expect(runs).toBe(2);
});

it('a handler that throws: the error reaches the caller after the claim is settled, and the retry runs', async () => {
  let runs = 0;
  const handler = idempotent(
    async () => {
      runs++;
      throw new Error(`boom ${runs}`);
    },
    { store, identity: () => 'tenant-throw' },
  );
  await expect(handler(request('t'))).rejects.toThrow('boom 1');
  await expect(handler(request('t'))).rejects.toThrow('boom 2');
});

it('the store unreachable: 503 BACKEND_UNAVAILABLE with Retry-After, the cause told to onError, no secret in the body', async () => {
  const down = await openStore('redis://:s3cret-pass@127.0.0.1:1?prefix=idem-http-down:');
  const seen: unknown[] = [];
  try {
    const handler = idempotent(async () => new Response('never'), { store: down, identity: () => 'x', retryAfterSeconds: 7, onError: (e) => seen.push(e) });
    const res = await handler(request('d'));
    const text = await res.text();
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(JSON.parse(text)).toMatchObject({ code: 'BACKEND_UNAVAILABLE', status: 503 });
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('127.0.0.1');
    expect(seen).toHaveLength(1);
  } finally {
    await down.close();
  }
});
