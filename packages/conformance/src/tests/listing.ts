// get and list: filtering, paging, completeness while records come and go, and termination.
import { describe, expect, it } from 'vitest';
import type { IdempotencyStore, ListOptions } from '@idem/core';
import type { Suite } from '../context.js';
import { expectLease } from '../testing.js';

/** Every page of a listing, keys only; fails if it does not end within maxPages. */
async function listAll(store: IdempotencyStore, options: ListOptions, maxPages: number, between?: (page: number) => Promise<void>, keys: string[] = []) {
  let cursor: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const got = await store.list({ ...options, ...(cursor !== undefined ? { cursor } : {}) });
    expect(got.records.length).toBeLessThanOrEqual(options.limit ?? 100);
    keys.push(...got.records.map((r) => r.key));
    cursor = got.cursor;
    if (cursor === undefined) return keys;
    await between?.(page);
  }
  throw new Error(`the listing did not end within ${maxPages} pages`);
}

export function listingTests(s: Suite): void {
  describe('get and list', () => {
    it('get returns nothing for an unknown key; list filters by status and pages with a cursor', async () => {
      const store = await s.open();
      expect(await store.get(s.key('unknown'))).toBeUndefined();
      const keys = Array.from({ length: 7 }, (_, i) => s.key(`list-${i}`));
      for (const [i, k] of keys.entries()) {
        const lease = expectLease(await store.claim(k));
        if (i % 3 === 1) await store.complete(lease);
        if (i % 3 === 2) await store.fail(lease, { error: 'x' });
      }
      // At least once: a scanning backend may repeat a record across pages.
      expect([...new Set(await listAll(store, { limit: 2 }, 20))].sort()).toEqual([...keys].sort());
      const failed = await store.list({ status: 'failed' });
      expect(failed.records.map((r) => r.key).sort()).toEqual(keys.filter((_, i) => i % 3 === 2).sort());
      const inFlight = await store.list({ status: 'in_flight' });
      expect(inFlight.records.every((r) => r.status === 'in_flight')).toBe(true);
      expect(inFlight.records).toHaveLength(3);
      expect((await store.list({ status: 'succeeded' })).records.map((r) => r.key).sort()).toEqual(keys.filter((_, i) => i % 3 === 1).sort());
    });

    it('a filtered listing in small pages finds every match, however few the matches per page', async () => {
      const store = await s.open();
      const keys = Array.from({ length: 12 }, (_, i) => s.key(`sparse-${i}`));
      for (const [i, k] of keys.entries()) {
        const lease = expectLease(await store.claim(k));
        if (i % 6 === 0) await store.fail(lease, { error: 'x' });
      }
      const failed = keys.filter((_, i) => i % 6 === 0);
      expect([...new Set(await listAll(store, { status: 'failed', limit: 1 }, 40))].sort()).toEqual(failed.sort());
    });

    it('every record present for the whole listing appears, while others come and go, and the listing ends', async () => {
      const store = await s.open();
      const stable = Array.from({ length: 15 }, (_, i) => s.key(`stable-${i}`));
      const churn = new Set(Array.from({ length: 10 }, (_, i) => s.key(`churn-${i}`)));
      for (const k of [...stable, ...churn]) await store.claim(k, { leaseMs: 60_000 });
      const seen: string[] = [];
      let added = 0;
      const listed = await listAll(
        store,
        { limit: 2 },
        60,
        async () => {
          // Between pages: records already listed go (shifting any offset), new ones come.
          for (const k of seen.filter((k) => churn.has(k)).slice(0, 2)) {
            churn.delete(k);
            await store.delete(k);
          }
          await store.claim(s.key(`added-${added++}`), { leaseMs: 60_000 });
        },
        seen,
      );
      expect(listed).toBe(seen);
      for (const k of stable) expect(seen).toContain(k);
    });

    it('records deleted behind the cursor do not make the listing skip any after it', async () => {
      // Deterministic, whatever order the backend lists in: what goes is exactly what was listed.
      const store = await s.open();
      const keys = Array.from({ length: 6 }, (_, i) => s.key(`behind-${i}`));
      for (const k of keys) await store.claim(k, { leaseMs: 60_000 });
      const seen: string[] = [];
      await listAll(
        store,
        { limit: 2 },
        20,
        async () => {
          for (const k of seen) await store.delete(k);
        },
        seen,
      );
      expect([...new Set(seen)].sort()).toEqual([...keys].sort());
    });

    it('two stores from createStore() are isolated', async () => {
      const [a, b] = [await s.open(), await s.open()];
      const k = s.key('isolated');
      expect((await a.claim(k)).outcome).toBe('acquired');
      expect((await b.claim(k)).outcome).toBe('acquired');
      expect((await a.list()).records.map((r) => r.key)).toEqual([k]);
    });
  });
}
