// Time on client-clock stores, moved by the injected clock: the exact
// instant a lease dies, and clockSkewMs delaying every takeover.
import { describe, expect, it } from 'vitest';
import type { Suite } from '../context.js';
import { expectLease } from '../testing.js';

export function timeTests(s: Suite): void {
  describe('time (client-clock stores)', () => {
    it('a lease is live until its deadline and dead at it, judged by the injected clock', async (ctx) => {
      const t = await s.timed();
      if (!t.client) ctx.skip(); // a server clock cannot be stopped at an instant
      const k = s.key('deadline');
      const first = expectLease(await t.store.claim(k, { runId: 'owner', leaseMs: 10_000 }));
      t.clock.advance(9_999);
      expect((await t.store.claim(k, { runId: 'early' })).outcome).toBe('in_flight');
      t.clock.advance(1);
      const got = await t.store.claim(k, { runId: 'on-time' });
      expect(got.outcome).toBe('adopted');
      expect(expectLease(got).fence).toBeGreaterThan(first.fence);
    });

    it('clockSkewMs: a dead lease is taken over only at deadline + skew, never before', async (ctx) => {
      const t = await s.timed({ clockSkewMs: 5_000 });
      if (!t.client) ctx.skip();
      const k = s.key('skew');
      const first = expectLease(await t.store.claim(k, { runId: 'owner', leaseMs: 10_000 }));
      t.clock.advance(10_000);
      expect((await t.store.claim(k, { runId: 'at-deadline' })).outcome).toBe('in_flight');
      t.clock.advance(4_999);
      expect((await t.store.claim(k, { runId: 'within-skew' })).outcome).toBe('in_flight');
      expect(await t.store.get(k)).toMatchObject({ runId: 'owner', fence: first.fence });
      // The owner may still finish late: its record was never taken over.
      const renewed = await t.store.renew(first, 10_000);
      t.clock.advance(10_000 + 4_999);
      expect((await t.store.claim(k, { runId: 'still-within' })).outcome).toBe('in_flight');
      t.clock.advance(1);
      const got = await t.store.claim(k, { runId: 'after-skew' });
      expect(got.outcome).toBe('adopted');
      expect(expectLease(got).fence).toBeGreaterThan(renewed.fence);
    });

    it('retention ends exactly at completedAt + retentionMs', async (ctx) => {
      const t = await s.timed({ retentionMs: 10_000 });
      if (!t.client) ctx.skip();
      const k = s.key('retention-edge');
      await t.store.complete(expectLease(await t.store.claim(k)), { result: 'r' });
      t.clock.advance(9_999);
      expect((await t.store.claim(k)).outcome).toBe('completed');
      expect(await t.store.get(k)).toMatchObject({ result: 'r' });
      t.clock.advance(1);
      expect(await t.store.get(k)).toBeUndefined();
      expect((await t.store.claim(k)).outcome).toBe('acquired');
    });
  });
}
