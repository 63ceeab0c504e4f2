// Check-then-act windows, forced: each rival operation runs inside the window
// (see ../interpose.ts) instead of racing it, so a write that ignores what
// changed since its read fails here on every run, synchronous backends included.
import { describe, expect, it, type TestContext } from 'vitest';
import { IdemError, type ClaimOutcome, type Lease } from '@idem/core';
import type { Suite, Timed } from '../context.js';
import { interpose, type Interposed } from '../interpose.js';
import { expectLease } from '../testing.js';

type Finish = 'complete' | 'fail' | 'renew' | 'release';

const finish = (store: Timed['store'], lease: Lease, op: Finish): Promise<unknown> =>
  op === 'renew' ? store.renew(lease, 60_000) : op === 'release' ? store.release(lease) : store[op](lease);

const codeOf = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (error: unknown) => (error instanceof IdemError ? error.code : Promise.reject(error)),
  );

export function interleavingTests(s: Suite): void {
  /** A client-clock-or-not store and its twin with pausing writes; skips when the adapter gave core no parts. */
  const setup = async (ctx: TestContext, retentionMs?: number): Promise<{ t: Timed; i: Interposed }> => {
    const t = await s.timed(retentionMs === undefined ? {} : { retentionMs });
    const i = interpose(t.store);
    // A full Driver (no parts): its atomic steps are the backend's own (a server script), beyond core's reach.
    if (i === undefined) ctx.skip();
    return { t, i: i! };
  };

  describe('check-then-act windows, forced', () => {
    describe('between sweep reading a record and deleting it', () => {
      const sweepable = (ctx: TestContext, t: Timed) => {
        // Nothing to sweep where the backend forgets records; declared unconditional sweeps are an opt-in.
        if (t.store.capabilities.nativeExpiry || t.store.capabilities.conditionalSweep === false) ctx.skip();
      };

      it('a takeover of the dead lease: the new owner keeps its record', async (ctx) => {
        const { t, i } = await setup(ctx);
        sweepable(ctx, t);
        const k = s.key('window-sweep-takeover');
        await t.store.claim(k, { runId: 'crashed', leaseMs: t.leaseMs });
        await t.pass(t.leaseMs * 1.5);
        let taken: ClaimOutcome | undefined;
        i.arm('delete', async () => (taken = await t.store.claim(k, { runId: 'rescuer', leaseMs: 60_000 })));
        const counts = await i.store.sweep();
        expect(i.unreached(), 'the sweep reached its delete').toEqual([]);
        const lease = expectLease(taken!);
        expect(await t.store.get(k), "sweep deleted the new owner's record").toMatchObject({ runId: 'rescuer', fence: lease.fence, status: 'in_flight' });
        expect(counts).toEqual({ expired: 0, deadLeases: 0 });
        await t.store.complete(lease, { result: 'rescued' });
      });

      it('a renewal of the dead lease by its owner: the renewed record stays', async (ctx) => {
        const { t, i } = await setup(ctx);
        sweepable(ctx, t);
        const k = s.key('window-sweep-renew');
        const lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
        await t.pass(t.leaseMs * 1.5);
        let renewed: Lease | undefined;
        i.arm('delete', async () => (renewed = await t.store.renew(lease, 60_000)));
        await i.store.sweep();
        expect(i.unreached(), 'the sweep reached its delete').toEqual([]);
        expect(await t.store.get(k), 'sweep deleted a renewed lease').toMatchObject({ fence: lease.fence, leaseExpiresAt: renewed!.leaseExpiresAt });
        await t.store.complete(renewed!);
      });

      it('a completion by the late owner: the result stays', async (ctx) => {
        const { t, i } = await setup(ctx);
        sweepable(ctx, t);
        const k = s.key('window-sweep-complete');
        const lease = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
        await t.pass(t.leaseMs * 1.5);
        i.arm('delete', () => t.store.complete(lease, { result: 'late' }));
        await i.store.sweep();
        expect(i.unreached(), 'the sweep reached its delete').toEqual([]);
        expect(await t.store.get(k), 'sweep deleted a completed record').toMatchObject({ status: 'succeeded', result: 'late' });
        expect((await t.store.claim(k)).outcome).toBe('completed');
      });

      it('a new claim of an expired record: the new claim stays', async (ctx) => {
        const { t, i } = await setup(ctx, 300);
        sweepable(ctx, t);
        const k = s.key('window-sweep-reclaim');
        await t.store.complete(expectLease(await t.store.claim(k)));
        await t.pass(600);
        let again: ClaimOutcome | undefined;
        i.arm('delete', async () => (again = await t.store.claim(k, { runId: 'again', leaseMs: 60_000 })));
        await i.store.sweep();
        expect(i.unreached(), 'the sweep reached its delete').toEqual([]);
        expect(await t.store.get(k), 'sweep deleted a new claim').toMatchObject({ runId: 'again', fence: expectLease(again!).fence, status: 'in_flight' });
      });
    });

    // Object stores only: there core reads, decides, then writes conditioned on the version read.
    // A transactional update is one step of the adapter's own, with no window core can reach.
    describe("between an object store's read and its conditional write", () => {
      const cas = async (ctx: TestContext) => {
        const { t, i } = await setup(ctx);
        if (i.kind !== 'cas') ctx.skip();
        return { t, i };
      };

      for (const op of ['complete', 'fail', 'renew', 'release'] as const) {
        it(`${op} on the version its lease wrote, overtaken by a takeover: LEASE_LOST, the new owner stays`, async (ctx) => {
          const { t, i } = await cas(ctx);
          const k = s.key(`window-${op}`);
          const old = expectLease(await t.store.claim(k, { runId: 'old', leaseMs: t.leaseMs }));
          await t.pass(t.leaseMs * 1.5);
          let taken: ClaimOutcome | undefined;
          i.arm('replace', async () => (taken = await t.store.claim(k, { runId: 'new', leaseMs: 60_000 })));
          const code = await codeOf(finish(i.store, old, op));
          expect(i.unreached(), `the ${op} reached its write`).toEqual([]);
          const lease = expectLease(taken!);
          expect(code, `${op} overwrote a takeover`).toBe('LEASE_LOST');
          expect(await t.store.get(k)).toMatchObject({ runId: 'new', fence: lease.fence, status: 'in_flight' });
        });
      }

      it('a claim of a free key, overtaken by a rival claim before its create: one owner', async (ctx) => {
        const { t, i } = await cas(ctx);
        const k = s.key('window-create');
        let rival: ClaimOutcome | undefined;
        i.arm('create', async () => (rival = await t.store.claim(k, { runId: 'rival', leaseMs: 60_000 })));
        const mine = await i.store.claim(k, { runId: 'mine', leaseMs: 60_000 });
        expect(i.unreached(), 'the claim reached its create').toEqual([]);
        expect(rival!.outcome).toBe('acquired');
        expect(mine.outcome, 'two claimers of a free key both acquired it').toBe('in_flight');
        expect(await t.store.get(k)).toMatchObject({ runId: 'rival', fence: expectLease(rival!).fence });
      });

      it('a takeover overtaken by a rival takeover before its replace: one owner', async (ctx) => {
        const { t, i } = await cas(ctx);
        const k = s.key('window-takeover');
        await t.store.claim(k, { runId: 'crashed', leaseMs: t.leaseMs });
        await t.pass(t.leaseMs * 1.5);
        let rival: ClaimOutcome | undefined;
        i.arm('replace', async () => (rival = await t.store.claim(k, { runId: 'rival', leaseMs: 60_000 })));
        const mine = await i.store.claim(k, { runId: 'mine', leaseMs: 60_000 });
        expect(i.unreached(), 'the takeover reached its replace').toEqual([]);
        expect(rival!.outcome).toBe('adopted');
        expect(mine.outcome, 'two takeovers of one dead lease both won').toBe('in_flight');
        expect(await t.store.get(k)).toMatchObject({ runId: 'rival', fence: expectLease(rival!).fence });
      });
    });
  });
}
