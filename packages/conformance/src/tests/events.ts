// The events of docs/observability.md: what each operation publishes on its `idem:*` tracing
// channel, the same for every adapter since core publishes them, once, above the driver.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { idemChannels, runOnce, type IdemEvent, type IdemOperation } from '@idem/core';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

type Seen = { phase: 'start' | 'end' | 'asyncEnd' | 'error'; operation: IdemOperation; event: IdemEvent };

export function eventTests(s: Suite): void {
  describe('events', () => {
    let seen: Seen[] = [];
    const handlers = new Map<IdemOperation, Parameters<(typeof idemChannels)['claim']['subscribe']>[0]>();
    beforeEach(() => {
      seen = [];
      for (const [operation, ch] of Object.entries(idemChannels) as [IdemOperation, (typeof idemChannels)['claim']][]) {
        // A copy at each phase: the event object is one, filled in as the operation goes.
        const note = (phase: Seen['phase']) => (event: IdemEvent) => seen.push({ phase, operation, event: { ...event } });
        const h = { start: note('start'), end: note('end'), asyncStart: () => undefined, asyncEnd: note('asyncEnd'), error: note('error') };
        handlers.set(operation, h);
        ch.subscribe(h);
      }
    });
    afterEach(() => {
      for (const [operation, h] of handlers) idemChannels[operation].unsubscribe(h);
    });
    const done = (key: string) => seen.filter((x) => x.phase === 'asyncEnd' && x.event.key === key).map((x) => x.event);

    it('a first run and a duplicate: runOnce, claim and complete, with outcome, fence, attempt and the store kind', async () => {
      const store = await s.open();
      const k = s.key('events-run');
      await runOnce(store, k, () => ({ secret: 'never in an event' }), { runId: 'first', labels: { job: 'mail' }, program: 'worker' });
      await runOnce(store, k, () => 'unused', { runId: 'second' });
      const events = done(k);
      expect(events.map((e) => `${e.operation}:${e.outcome}`)).toEqual([
        'claim:acquired',
        'complete:succeeded',
        'runOnce:acquired',
        'claim:completed',
        'runOnce:completed',
      ]);
      for (const e of events) {
        expect(e.storeKind).toBe(store.kind);
        expect(e.storeKind).toMatch(/^[a-z][a-z0-9-]*$/);
        expect(e.durationMs).toBeGreaterThanOrEqual(0);
        expect(e).toMatchObject({ fence: events[0]!.fence, attempt: 1, labels: { job: 'mail' } });
        expect(JSON.stringify(e)).not.toContain('never in an event');
      }
      expect(events[0]).toMatchObject({ runId: 'first', holder: { program: 'worker', pid: process.pid } });
      expect(events[3]).toMatchObject({ runId: 'second' });
      // Start before end, and the claim inside the run that made it.
      const order = seen.filter((x) => x.event.key === k && x.event.runId === 'first').map((x) => `${x.operation}:${x.phase}`);
      expect(order.indexOf('runOnce:start')).toBeLessThan(order.indexOf('claim:start'));
      expect(order.indexOf('complete:asyncEnd')).toBeLessThan(order.indexOf('runOnce:asyncEnd'));
    });

    it('a failure, a takeover and a lost lease: fail, adopted and LEASE_LOST with their fences', async () => {
      const store = await s.open();
      const k = s.key('events-fail');
      await expect(runOnce(store, k, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
      const first = expectLease(await store.claim(k, { runId: 'owner', leaseMs: 60_000 }));
      const renewed = await store.renew(first);
      const taken = await store.claim(k, { runId: 'thief', force: true });
      await expectCode(store.complete(renewed), 'LEASE_LOST');
      await store.release(expectLease(taken));
      const events = done(k);
      // Fences only grow (some backends take them from a clock): named here by their order.
      const fences = [...new Set(events.map((e) => e.fence!))];
      expect([...fences].sort((a, b) => a - b)).toEqual(fences);
      expect(events.map((e) => `${e.operation}:${e.outcome}:f${fences.indexOf(e.fence!) + 1}`)).toEqual([
        'claim:acquired:f1',
        'fail:failed:f1',
        'runOnce:acquired:f1',
        'claim:acquired:f2',
        'renew:renewed:f2',
        'claim:adopted:f3',
        'complete:undefined:f2',
        'release:released:f3',
      ]);
      expect(events[2]).toMatchObject({ attempt: 1 });
      expect(events[2]).not.toHaveProperty('errorCode'); // the user's own error has no idem code
      expect(events[6]).toMatchObject({ errorCode: 'LEASE_LOST', runId: 'owner' });
      const errors = seen.filter((x) => x.phase === 'error' && x.event.key === k).map((x) => x.operation);
      expect(errors).toEqual(['runOnce', 'complete']);
    });

    it('list and sweep say how many records, and hashKeys or keysInEvents: false keep keys out', async () => {
      const hashed = await s.open({ hashKeys: true });
      const quiet = await s.open({ keysInEvents: false });
      expect([hashed.keysInEvents, quiet.keysInEvents]).toEqual([false, false]);
      for (const store of [hashed, quiet]) {
        const k = s.key('events-hidden');
        await runOnce(store, k, () => 1, { labels: { hidden: k } });
        await store.list({ labels: { hidden: k } });
        await store.sweep();
        const mine = seen.filter((x) => x.phase === 'asyncEnd' && x.event.labels?.hidden === k).map((x) => x.event);
        expect(mine.map((e) => e.operation)).toEqual(['claim', 'complete', 'runOnce', 'list']);
        expect(mine.find((e) => e.operation === 'list')).toMatchObject({ count: 1 });
        expect(JSON.stringify(seen.map((x) => ({ ...x.event, labels: undefined })))).not.toContain(k);
      }
      expect(seen.some((x) => x.phase === 'asyncEnd' && x.operation === 'sweep' && typeof x.event.expired === 'number')).toBe(true);
    });
  });
}
