// The four claim outcomes, both dedup policies, force, and a claim repeated by its own run.
import { describe, expect, it } from 'vitest';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

export function claimTests(s: Suite): void {
  describe('claim outcomes', () => {
    it('acquires a free key, with a lease and an in_flight record', async () => {
      const store = await s.open();
      const k = s.key('free');
      const got = await store.claim(k, { runId: 'run-1', leaseMs: 60_000 });
      expect(got.outcome).toBe('acquired');
      const lease = expectLease(got);
      expect(lease).toMatchObject({ key: k, runId: 'run-1' });
      expect(lease.fence).toBeGreaterThan(0);
      const record = await store.get(k);
      expect(record).toMatchObject({ key: k, status: 'in_flight', runId: 'run-1', fence: lease.fence, attempt: 1 });
      expect(record!.leaseExpiresAt).toBeGreaterThan(Date.now() - 5_000);
    });

    it('answers in_flight with the owner while the lease is live', async () => {
      const store = await s.open();
      const k = s.key('live');
      await store.claim(k, { runId: 'owner', leaseMs: 60_000 });
      const dup = await store.claim(k, { runId: 'second' });
      expect(dup.outcome).toBe('in_flight');
      if (dup.outcome !== 'in_flight') return;
      expect(dup.record.runId).toBe('owner');
      expect(dup.record.leaseExpiresAt).toBeGreaterThan(Date.now());
    });

    it('answers completed with the stored result and prior runId after success', async () => {
      const store = await s.open();
      const k = s.key('done');
      const lease = expectLease(await store.claim(k, { runId: 'first' }));
      const done = await store.complete(lease, { result: { rows: 3, ok: true, list: [1, 'a', null] } });
      expect(done.status).toBe('succeeded');
      const dup = await store.claim(k, { runId: 'again' });
      expect(dup.outcome).toBe('completed');
      if (dup.outcome !== 'completed') return;
      expect(dup.record).toMatchObject({ status: 'succeeded', runId: 'first', result: { rows: 3, ok: true, list: [1, 'a', null] } });
      expect(dup.record.completedAt).toBeTypeOf('number');
    });

    it('stores falsy and empty results exactly, and no result as none', async () => {
      const store = await s.open();
      for (const result of [0, false, '', null, [], {}, 'x'] as const) {
        const k = s.key('falsy');
        const done = await store.complete(expectLease(await store.claim(k)), { result });
        expect(done.result).toEqual(result);
        const dup = await store.claim(k);
        expect(dup.outcome === 'completed' && dup.record.result).toEqual(result);
      }
      const k = s.key('no-result');
      await store.complete(expectLease(await store.claim(k)));
      expect(await store.get(k)).not.toHaveProperty('result');
    });

    it('dedupOn "success": a failed key is claimable again at once, with a larger fence', async () => {
      const store = await s.open();
      const k = s.key('retry');
      const first = expectLease(await store.claim(k, { runId: 'r1' }));
      const failed = await store.fail(first, { error: new Error('disk full') });
      expect(failed).toMatchObject({ status: 'failed', error: 'Error: disk full' });
      const again = await store.claim(k, { runId: 'r2' });
      expect(again.outcome).toBe('acquired');
      const lease = expectLease(again);
      expect(lease.fence).toBeGreaterThan(first.fence);
      expect((await store.get(k))?.attempt).toBe(2);
      if (again.outcome === 'acquired') expect(again.previous?.runId).toBe('r1');
    });

    it('dedupOn "any": a failed key answers completed with status failed', async () => {
      for (const store of [await s.open({ dedupOn: 'any' }), await s.open()]) {
        const k = s.key('final');
        const dedupOn = 'any' as const;
        const lease = expectLease(await store.claim(k, { dedupOn }));
        await store.fail(lease, { error: 'boom' });
        const dup = await store.claim(k, { dedupOn });
        expect(dup.outcome).toBe('completed');
        if (dup.outcome === 'completed') expect(dup.record).toMatchObject({ status: 'failed', error: 'boom', runId: lease.runId });
      }
    });

    it('adopts a dead lease with a larger fence and reports the previous run', async () => {
      const t = await s.timed();
      const k = s.key('dead');
      const first = expectLease(await t.store.claim(k, { runId: 'crashed', leaseMs: t.leaseMs }));
      await t.pass(t.leaseMs * 1.5);
      const got = await t.store.claim(k, { runId: 'rescuer', leaseMs: t.leaseMs });
      // A backend whose native expiry already removed the dead claim answers acquired (docs/semantics.md).
      expect(['adopted', 'acquired']).toContain(got.outcome);
      if (got.outcome === 'adopted') expect(got.previous.runId).toBe('crashed');
      if (!t.store.capabilities.nativeExpiry) expect(got.outcome).toBe('adopted');
      expect(expectLease(got).fence).toBeGreaterThan(first.fence);
    });

    it('force adopts a live key and fences the old owner out', async () => {
      const store = await s.open();
      const k = s.key('force');
      const old = expectLease(await store.claim(k, { runId: 'stuck', leaseMs: 60_000 }));
      const forced = await store.claim(k, { runId: 'operator', force: true });
      expect(forced.outcome).toBe('adopted');
      const lease = expectLease(forced);
      expect(lease.fence).toBeGreaterThan(old.fence);
      await expectCode(store.complete(old, { result: 'stale' }), 'LEASE_LOST');
      expect(await store.get(k)).toMatchObject({ runId: 'operator', status: 'in_flight', fence: lease.fence });
      // force also overrides a finished record
      await store.complete(lease);
      expect((await store.claim(k, { force: true })).outcome).toBe('adopted');
    });

    it('a claim repeated with its own runId while the lease lives gets that lease back (a retry after a lost reply)', async () => {
      const store = await s.open();
      const k = s.key('own');
      const first = expectLease(await store.claim(k, { runId: 'run-own', leaseMs: 60_000 }));
      const before = await store.get(k);
      const again = await store.claim(k, { runId: 'run-own', leaseMs: 30_000 });
      expect(again.outcome).toBe('acquired');
      expect(expectLease(again).fence).toBe(first.fence);
      expect(expectLease(again).leaseExpiresAt).toBe(first.leaseExpiresAt);
      expect(await store.get(k)).toEqual(before);
      expect(await store.claim(k, { runId: 'someone-else' })).toMatchObject({ outcome: 'in_flight', record: { runId: 'run-own' } });
      await store.complete(expectLease(again), { result: 1 });
      expect(await store.get(k)).toMatchObject({ status: 'succeeded', result: 1, fence: first.fence });
    });
  });
}
