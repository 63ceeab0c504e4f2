// Bad input gets a typed error before any I/O, and nothing is stored.
import { describe, expect, it } from 'vitest';
import type { Lease } from '@idem/core';
import { BAD_DURATIONS, BAD_KEYS, BAD_RESULTS } from '../bad-input.js';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

export function inputTests(s: Suite): void {
  describe('bad input is rejected before any I/O', () => {
    it('bad keys get INVALID_KEY on every method that takes a key', async () => {
      const store = await s.open();
      for (const [, bad] of BAD_KEYS) {
        await expectCode(store.claim(bad as string), 'INVALID_KEY');
        await expectCode(store.get(bad as string), 'INVALID_KEY');
        await expectCode(store.delete(bad as string), 'INVALID_KEY');
      }
      expect((await store.list()).records).toEqual([]);
    });

    it('bad durations and options get INVALID_ARGUMENT', async () => {
      const store = await s.open();
      const k = s.key('bad-args');
      for (const [, bad] of BAD_DURATIONS) {
        await expectCode(store.claim(k, { leaseMs: bad as number }), 'INVALID_ARGUMENT');
        await expectCode(async () => s.opts.createStore({ retentionMs: bad as number }), 'INVALID_ARGUMENT');
      }
      await expectCode(store.claim(k, { dedupOn: 'never' as 'any' }), 'INVALID_ARGUMENT');
      await expectCode(store.claim(k, { runId: '' }), 'INVALID_ARGUMENT');
      await expectCode(store.claim(k, { fingerprint: 7 as unknown as string }), 'INVALID_ARGUMENT');
      await expectCode(store.claim(k, { force: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT');
      await expectCode(store.list({ status: 'done' as 'failed' }), 'INVALID_ARGUMENT');
      await expectCode(store.list({ limit: 0 }), 'INVALID_ARGUMENT');
      expect(await store.get(k)).toBeUndefined();
    });

    it('a bad lease or an unstorable result is refused and the claim is kept', async () => {
      const store = await s.open();
      const k = s.key('bad-result');
      const lease = expectLease(await store.claim(k));
      for (const [, bad] of BAD_RESULTS) await expectCode(store.complete(lease, { result: bad }), 'INVALID_ARGUMENT');
      await expectCode(store.complete(lease, { result: 'x'.repeat(70_000) }), 'INVALID_ARGUMENT');
      for (const bad of [null, {}, { ...lease, key: 'another key' }, { ...lease, fence: 'one' }]) {
        await expectCode(store.complete(bad as Lease), 'INVALID_ARGUMENT');
      }
      expect(await store.get(k)).toMatchObject({ status: 'in_flight', runId: lease.runId });
      expect((await store.complete(lease, { result: 'fine' })).result).toBe('fine');
    });
  });
}
