// Retention, sweep (also racing takeovers and renewals), and delete.
import { describe, expect, it } from 'vitest';
import { storageName } from '@idem/core';
import type { Suite } from '../context.js';
import { expectLease } from '../testing.js';

export function retentionTests(s: Suite): void {
  describe('retention, sweep and delete', () => {
    it('forgets a finished record after retention; the key is acquired again', async () => {
      const t = await s.timed({ retentionMs: 300 });
      const k = s.key('retention');
      const lease = expectLease(await t.store.claim(k));
      await t.store.complete(lease, { result: 'old' });
      expect((await t.store.claim(k)).outcome).toBe('completed');
      await t.pass(600);
      expect(await t.store.get(k)).toBeUndefined();
      const again = await t.store.claim(k);
      expect(again.outcome).toBe('acquired');
      expect(expectLease(again).fence).toBeGreaterThan(lease.fence);
    });

    it('sweep removes expired and dead in_flight records, counts each kind exactly, and keeps live ones', async () => {
      const t = await s.timed({ retentionMs: 300 });
      const [expired, failed, dead, live, done] = [s.key('sw-expired'), s.key('sw-failed'), s.key('sw-dead'), s.key('sw-live'), s.key('sw-done')];
      await t.store.complete(expectLease(await t.store.claim(expired)));
      await t.store.fail(expectLease(await t.store.claim(failed)));
      await t.store.claim(dead, { leaseMs: t.leaseMs });
      await t.pass(Math.max(600, t.leaseMs * 1.5));
      await t.store.claim(live, { leaseMs: 60_000 });
      await t.store.complete(expectLease(await t.store.claim(done)));
      const counts = await t.store.sweep();
      if (t.store.capabilities.nativeExpiry) {
        expect(counts).toEqual({ expired: 0, deadLeases: 0 });
      } else {
        expect(counts).toEqual({ expired: 2, deadLeases: 1 });
        for (const k of [expired, failed, dead]) expect(await t.store.driver.read(storageName(k))).toBeUndefined();
        expect(await t.store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
      }
      expect(await t.store.get(live)).toMatchObject({ status: 'in_flight' });
      expect(await t.store.get(done)).toMatchObject({ status: 'succeeded' });
      expect(await t.store.get(expired)).toBeUndefined();
    });

    it("sweep racing takeovers and renewals never deletes the new owner's record", async (ctx) => {
      const t = await s.timed();
      // Declared by the store: its sweep deletes unconditionally (an opted-in backend without conditional deletes).
      if (t.store.capabilities.conditionalSweep === false) return ctx.skip();
      const keys = Array.from({ length: 12 }, (_, i) => s.key(`sw-race-${i}`));
      const renewing = await Promise.all(keys.slice(0, 4).map(async (k) => expectLease(await t.store.claim(k, { leaseMs: t.leaseMs * 2 }))));
      for (const k of keys.slice(4)) await t.store.claim(k, { runId: 'crashed', leaseMs: t.leaseMs });
      await t.pass(t.leaseMs * 1.5); // the last 8 are dead, the first 4 live until renewed
      const [, adopted, renewed] = await Promise.all([
        t.store.sweep(),
        Promise.all(keys.slice(4).map((k) => t.store.claim(k, { runId: `rescuer-${k}`, leaseMs: 60_000 }))),
        Promise.all(renewing.map((lease) => t.store.renew(lease, 60_000))),
      ]);
      for (const [i, k] of keys.slice(4).entries()) {
        const lease = expectLease(adopted[i]!);
        expect(await t.store.get(k)).toMatchObject({ runId: `rescuer-${k}`, fence: lease.fence, status: 'in_flight' });
      }
      for (const [i, k] of keys.slice(0, 4).entries()) expect(await t.store.get(k)).toMatchObject({ fence: renewed[i]!.fence, status: 'in_flight' });
      // A second sweep, with nothing dead any more, takes nothing either.
      await t.store.sweep();
      for (const k of keys) expect((await t.store.get(k))?.status).toBe('in_flight');
    });

    it('delete removes a record whatever its state', async () => {
      const store = await s.open();
      const k = s.key('delete');
      await store.claim(k, { leaseMs: 60_000 });
      expect(await store.delete(k)).toBe(true);
      expect(await store.get(k)).toBeUndefined();
      expect(await store.delete(k)).toBe(false);
      expect((await store.claim(k)).outcome).toBe('acquired');
    });
  });
}
