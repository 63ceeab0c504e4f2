// Fencing: only the record a lease created may be changed by it; and what a lease holder may do.
import { describe, expect, it } from 'vitest';
import type { IdemError } from '@idem/core';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

export function fencingTests(s: Suite): void {
  describe('fencing and leases', () => {
    it("a zombie's complete, fail, renew and release after a takeover get LEASE_LOST and change nothing", async () => {
      const t = await s.timed();
      const k = s.key('zombie');
      const zombie = expectLease(await t.store.claim(k, { runId: 'zombie', leaseMs: t.leaseMs }));
      await t.pass(t.leaseMs * 1.5);
      const owner = expectLease(await t.store.claim(k, { runId: 'owner', leaseMs: 60_000 }));
      const before = await t.store.get(k);
      expect(before).toMatchObject({ runId: 'owner', fence: owner.fence });
      for (const act of [
        () => t.store.complete(zombie, { result: 'zombie' }),
        () => t.store.fail(zombie, { error: 'zombie' }),
        () => t.store.renew(zombie, 60_000),
        () => t.store.release(zombie),
      ]) {
        const err = await expectCode(act, 'LEASE_LOST');
        expect((err as IdemError & { record?: { runId: string } }).record?.runId).toBe('owner');
        expect(await t.store.get(k)).toEqual(before);
      }
      await t.store.complete(owner, { result: 'owner' });
      await expectCode(t.store.complete(zombie, { result: 'zombie' }), 'LEASE_LOST');
      expect((await t.store.get(k))?.result).toBe('owner');
    });

    it('a lease from an earlier claim by the same runId is fenced out by the fence, not only the runId', async () => {
      const store = await s.open();
      const k = s.key('same-run');
      const first = expectLease(await store.claim(k, { runId: 'reused' }));
      await store.fail(first);
      const second = expectLease(await store.claim(k, { runId: 'reused' }));
      expect(second.fence).toBeGreaterThan(first.fence);
      const before = await store.get(k);
      await expectCode(store.complete(first, { result: 'stale' }), 'LEASE_LOST');
      await expectCode(store.renew(first, 60_000), 'LEASE_LOST');
      expect(await store.get(k)).toEqual(before);
      expect((await store.complete(second, { result: 'fresh' })).result).toBe('fresh');
    });

    it('after delete, a lease from before is fenced out by its runId even if the fence starts over', async () => {
      const store = await s.open();
      const k = s.key('deleted');
      const before = expectLease(await store.claim(k, { runId: 'before' }));
      expect(await store.delete(k)).toBe(true);
      const after = expectLease(await store.claim(k, { runId: 'after' }));
      const stored = await store.get(k);
      for (const act of [() => store.complete(before, { result: 'stale' }), () => store.fail(before), () => store.renew(before, 60_000)]) {
        await expectCode(act, 'LEASE_LOST');
        expect(await store.get(k)).toEqual(stored);
      }
      expect((await store.complete(after, { result: 'fresh' })).result).toBe('fresh');
    });

    it('a late finish succeeds when nobody took over', async () => {
      const t = await s.timed();
      for (const finish of ['complete', 'fail', 'renew'] as const) {
        const k = s.key(`late-${finish}`);
        const lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
        // Past the deadline, but on a server-clock store still before native expiry (lease + grace).
        await t.pass(t.leaseMs + 50);
        if (finish === 'complete') expect((await t.store.complete(lease, { result: 'late' })).status).toBe('succeeded');
        if (finish === 'fail') expect((await t.store.fail(lease)).status).toBe('failed');
        if (finish === 'renew') expect((await t.store.renew(lease, 60_000)).leaseExpiresAt).toBeGreaterThan(Date.now() + 30_000);
      }
    });

    it('renew extends the lease: the key stays in_flight past the first deadline', async () => {
      const t = await s.timed();
      const k = s.key('renew');
      let lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      for (let i = 0; i < 3; i++) {
        await t.pass(t.leaseMs / 2);
        lease = await t.store.renew(lease, t.leaseMs);
      }
      expect((await t.store.claim(k)).outcome).toBe('in_flight');
      expect((await t.store.complete(lease)).status).toBe('succeeded');
    });

    it('release frees the key; the next claim is acquired with a larger fence', async () => {
      const store = await s.open();
      const k = s.key('release');
      const first = expectLease(await store.claim(k));
      await store.release(first);
      expect(await store.get(k)).toBeUndefined();
      const next = await store.claim(k);
      expect(next.outcome).toBe('acquired');
      expect(expectLease(next).fence).toBeGreaterThan(first.fence);
      await expectCode(store.complete(first), 'LEASE_LOST');
      await expectCode(store.release(first), 'LEASE_LOST');
      expect(await store.get(k)).toMatchObject({ fence: expectLease(next).fence, status: 'in_flight' });
    });

    it('the fence strictly increases over every kind of reclaim', async () => {
      const t = await s.timed();
      const k = s.key('fence');
      const fences: number[] = [];
      let lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      fences.push(lease.fence);
      await t.store.fail(lease);
      lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      fences.push(lease.fence);
      lease = expectLease(await t.store.claim(k, { force: true, leaseMs: t.leaseMs }));
      fences.push(lease.fence);
      await t.pass(t.leaseMs * 1.5);
      lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      fences.push(lease.fence);
      await t.store.release(lease);
      lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      fences.push(lease.fence);
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
    });
  });

  describe('retries after a lost reply', () => {
    it('complete or fail repeated with the same lease answers the finished record and rewrites nothing', async () => {
      const t = await s.timed();
      for (const op of ['complete', 'fail'] as const) {
        const k = s.key(`repeat-${op}`);
        const lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
        const first = op === 'complete' ? await t.store.complete(lease, { result: 'first' }) : await t.store.fail(lease, { error: 'first' });
        await t.pass(50);
        const again = op === 'complete' ? await t.store.complete(lease, { result: 'second' }) : await t.store.fail(lease, { error: 'second' });
        expect(again).toEqual(first);
        expect(await t.store.get(k)).toEqual(first);
      }
    });

    it('a finish of the other kind, renew and release on its own finished record raise LEASE_LOST and keep the result', async () => {
      const store = await s.open();
      for (const status of ['succeeded', 'failed'] as const) {
        const k = s.key(`own-finished-${status}`);
        const lease = expectLease(await store.claim(k));
        const done = status === 'succeeded' ? await store.complete(lease, { result: 'kept' }) : await store.fail(lease, { error: 'kept' });
        const other = status === 'succeeded' ? () => store.fail(lease, { error: 'other' }) : () => store.complete(lease, { result: 'other' });
        for (const act of [other, () => store.renew(lease, 60_000), () => store.release(lease)]) {
          await expectCode(act, 'LEASE_LOST');
          expect(await store.get(k)).toEqual(done);
        }
      }
    });
  });
}
