// runOnce over the store: execute once, record failures, release on abort, renew, wait.
import { describe, expect, it } from 'vitest';
import { runOnce, type ClaimOutcome } from '@idem/core';
import type { Suite } from '../context.js';
import { expectCode, sleep } from '../testing.js';

export function runOnceTests(s: Suite): void {
  describe('runOnce', () => {
    it('executes once, then hands the stored result to duplicates', async () => {
      const store = await s.open();
      const k = s.key('run');
      const first = await runOnce(store, k, () => ({ sent: 1 }), { runId: 'first' });
      expect(first).toMatchObject({ status: 'executed', value: { sent: 1 }, outcome: 'acquired' });
      const again = await runOnce(store, k, () => {
        throw new Error('must not run');
      });
      expect(again).toMatchObject({ status: 'completed', result: { sent: 1 }, record: { runId: 'first' } });
    });

    it('records a throw as a failure, rethrows it, and retries next time', async () => {
      const store = await s.open();
      const k = s.key('run-fail');
      await expect(runOnce(store, k, () => Promise.reject(new Error('flaky')))).rejects.toThrow('flaky');
      expect(await store.get(k)).toMatchObject({ status: 'failed', error: 'Error: flaky' });
      expect(await runOnce(store, k, () => 'ok')).toMatchObject({ status: 'executed', value: 'ok' });
    });

    it('releases the claim when aborted', async () => {
      const store = await s.open();
      const k = s.key('run-abort');
      const ac = new AbortController();
      const run = runOnce(store, k, (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))), {
        signal: ac.signal,
      });
      await sleep(50);
      ac.abort(new Error('cancelled'));
      await expect(run).rejects.toThrow('cancelled');
      expect(await store.get(k)).toBeUndefined();
      expect((await store.claim(k)).outcome).toBe('acquired');
    });

    it('an abort that lands while the claim is under way releases the key and never runs fn', async () => {
      const store = await s.open();
      const k = s.key('run-abort-early');
      const ac = new AbortController();
      let ran = false;
      const run = runOnce(store, k, () => (ran = true), { signal: ac.signal });
      ac.abort(new Error('cancelled early')); // runOnce is now awaiting its claim
      await expect(run).rejects.toThrow('cancelled early');
      expect(ran).toBe(false);
      expect(await store.get(k)).toBeUndefined();
      expect((await store.claim(k)).outcome).toBe('acquired');
    });

    it('renews the lease while the work runs longer than one lease', async () => {
      const store = await s.open();
      const k = s.key('run-renew');
      const leaseMs = 300;
      let seen: ClaimOutcome['outcome'] | undefined;
      await runOnce(
        store,
        k,
        async () => {
          await sleep(leaseMs * 3);
          seen = (await store.claim(k)).outcome;
        },
        { leaseMs },
      );
      expect(seen).toBe('in_flight');
    });

    it('onInFlight "wait" waits for the owner and reuses its result; "throw" raises IN_FLIGHT', async () => {
      const store = await s.open();
      const k = s.key('run-wait');
      // The owner finishes when the test says so, not after a sleep a loaded machine could outlast.
      let finish!: () => void;
      const gate = new Promise<void>((resolve) => (finish = resolve));
      const owner = runOnce(store, k, async () => {
        await gate;
        return 'from-owner';
      });
      while ((await store.get(k)) === undefined) await sleep(10);
      await expectCode(
        runOnce(store, k, () => 'x', { onInFlight: 'throw' }),
        'IN_FLIGHT',
      );
      const skipped = await runOnce(store, k, () => 'x');
      expect(skipped.status).toBe('in_flight');
      const waiting = runOnce(store, k, () => 'must not run', { onInFlight: 'wait' });
      await sleep(50);
      finish();
      expect(await waiting).toMatchObject({ status: 'completed', result: 'from-owner' });
      await owner;
    });
  });
}
