// Bad options are a typed INVALID_ARGUMENT when the middleware is made, before any request or I/O.
import { isIdemError, type IdempotencyStore } from '@idem/core';
import { HttpIdempotency, type IdempotencyOptions } from '@idem/http';
import { createLmdbStore } from '@idem/lmdb';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, beforeAll, expect, it } from 'vitest';

let store: IdempotencyStore;
beforeAll(async () => {
  store = await createLmdbStore({ path: tempDir('idem-http-options-') });
});
afterAll(() => store.close());

it.each<[string, Partial<IdempotencyOptions>]>([
  ['set-cookie in replayHeaders', { replayHeaders: ['content-type', 'Set-Cookie'] }],
  ['a method that is not a token', { methods: ['PO ST'] }],
  ['a header name with a colon', { header: 'Idempotency-Key:' }],
  ['an unknown fingerprint field', { fingerprint: ['method', 'headers' as never] }],
  ['maxResponseBytes past what the store holds', { maxResponseBytes: 10 * 1024 * 1024 }],
  ['a zero maxRequestBytes', { maxRequestBytes: 0 }],
  ['a negative waitMs', { waitMs: -1 }],
  ['a lease under 100 ms', { leaseMs: 50 }],
  ['uncached neither fail nor release', { uncached: 'drop' as never }],
  ['a keyPattern that is a string', { keyPattern: '^[a-z]+$' as never }],
])('%s', (_, options) => {
  const make = () => new HttpIdempotency({ store, ...options });
  expect(make).toThrow();
  try {
    make();
  } catch (error) {
    expect(isIdemError(error, 'INVALID_ARGUMENT')).toBe(true);
  }
});

it('no store is INVALID_ARGUMENT', () => {
  expect(() => new HttpIdempotency({} as IdempotencyOptions)).toThrow(/store must be an idem store/);
});
