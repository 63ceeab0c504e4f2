// The conformance suite: every row of SEMANTICS.md against a real store.
// Tests branch on the store's declared capabilities, never on its name.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  IdemError,
  storageName,
  runOnce,
  type ClaimOutcome,
  type IdempotencyStore,
  type JsonValue,
  type Lease,
  type StoreOptions,
} from '@idem/core';
import { BAD_DURATIONS, BAD_KEYS, BAD_RESULTS, GOOD_KEYS } from './bad-input.js';
import { TestClock } from './clock.js';

export interface ConformanceOptions {
  /** Shown in the test names. */
  name: string;
  /** A fresh store, isolated from every other call's (new directory, prefix or namespace). */
  createStore(options: StoreOptions): Promise<IdempotencyStore>;
  /**
   * For the multi-process race: `module` (a file URL) default-exports
   * `async (options) => IdempotencyStore`; `options()` describes a fresh
   * isolated store as JSON, handed to every worker process.
   */
  processes?: { module: string; options(): Promise<JsonValue> | JsonValue };
  /** false skips everything, e.g. when no server is configured outside CI. Default true. */
  enabled?: boolean;
  /** Lease used where real time must pass (server-clock stores). Default 400 ms. */
  realLeaseMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function leaseOf(outcome: ClaimOutcome): Lease {
  if (outcome.outcome !== 'acquired' && outcome.outcome !== 'adopted') throw new Error(`expected a lease, got ${outcome.outcome}`);
  return outcome.lease;
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<IdemError> {
  let error: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (e) {
    error = e;
  }
  expect(error, `expected an IdemError with code ${code}`).toBeInstanceOf(IdemError);
  expect((error as IdemError).code).toBe(code);
  return error as IdemError;
}

export function runConformance(opts: ConformanceOptions): void {
  const { name, enabled = true, realLeaseMs = 400 } = opts;
  const opened: IdempotencyStore[] = [];
  const open = async (options: StoreOptions = {}) => {
    const store = await opts.createStore(options);
    opened.push(store);
    return store;
  };
  let seq = 0;
  const key = (label: string) => `${label}/${process.pid}/${seq++}/${Math.random().toString(36).slice(2)}`;

  /**
   * A store with a way to make time pass: the injected clock where the
   * store judges time client-side, real sleeping where the server does.
   */
  async function timed(options: StoreOptions = {}) {
    const clock = new TestClock();
    const store = await open({ ...options, clock: clock.now });
    const client = store.capabilities.clock === 'client';
    return {
      store,
      leaseMs: client ? 60_000 : realLeaseMs,
      pass: async (ms: number) => (client ? clock.advance(ms) : sleep(ms)),
    };
  }

  describe.skipIf(!enabled)(`idem conformance: ${name}`, () => {
    afterAll(async () => {
      await Promise.all(opened.map((s) => s.close()));
    });

    describe('claim outcomes', () => {
      it('acquires a free key, with a lease and an in_flight record', async () => {
        const store = await open();
        const k = key('free');
        const got = await store.claim(k, { runId: 'run-1', leaseMs: 60_000 });
        expect(got.outcome).toBe('acquired');
        const lease = leaseOf(got);
        expect(lease).toMatchObject({ key: k, runId: 'run-1' });
        expect(lease.fence).toBeGreaterThan(0);
        const record = await store.get(k);
        expect(record).toMatchObject({ key: k, status: 'in_flight', runId: 'run-1', fence: lease.fence, attempt: 1 });
        expect(record!.leaseExpiresAt).toBeGreaterThan(Date.now() - 5_000);
      });

      it('answers in_flight with the owner while the lease is live', async () => {
        const store = await open();
        const k = key('live');
        await store.claim(k, { runId: 'owner', leaseMs: 60_000 });
        const dup = await store.claim(k, { runId: 'second' });
        expect(dup.outcome).toBe('in_flight');
        if (dup.outcome !== 'in_flight') return;
        expect(dup.record.runId).toBe('owner');
        expect(dup.record.leaseExpiresAt).toBeGreaterThan(Date.now());
      });

      it('answers completed with the stored result and prior runId after success', async () => {
        const store = await open();
        const k = key('done');
        const lease = leaseOf(await store.claim(k, { runId: 'first' }));
        const done = await store.complete(lease, { result: { rows: 3, ok: true, list: [1, 'a', null] } });
        expect(done.status).toBe('succeeded');
        const dup = await store.claim(k, { runId: 'again' });
        expect(dup.outcome).toBe('completed');
        if (dup.outcome !== 'completed') return;
        expect(dup.record).toMatchObject({ status: 'succeeded', runId: 'first', result: { rows: 3, ok: true, list: [1, 'a', null] } });
        expect(dup.record.completedAt).toBeTypeOf('number');
      });

      it('dedupOn "success": a failed key is claimable again at once, with a larger fence', async () => {
        const store = await open();
        const k = key('retry');
        const first = leaseOf(await store.claim(k, { runId: 'r1' }));
        const failed = await store.fail(first, { error: new Error('disk full') });
        expect(failed).toMatchObject({ status: 'failed', error: 'Error: disk full' });
        const again = await store.claim(k, { runId: 'r2' });
        expect(again.outcome).toBe('acquired');
        const lease = leaseOf(again);
        expect(lease.fence).toBeGreaterThan(first.fence);
        expect((await store.get(k))?.attempt).toBe(2);
        if (again.outcome === 'acquired') expect(again.previous?.runId).toBe('r1');
      });

      it('dedupOn "any": a failed key answers completed with status failed', async () => {
        for (const store of [await open({ dedupOn: 'any' }), await open()]) {
          const k = key('final');
          const dedupOn = 'any' as const;
          const lease = leaseOf(await store.claim(k, { dedupOn }));
          await store.fail(lease, { error: 'boom' });
          const dup = await store.claim(k, { dedupOn });
          expect(dup.outcome).toBe('completed');
          if (dup.outcome === 'completed') expect(dup.record).toMatchObject({ status: 'failed', error: 'boom', runId: lease.runId });
        }
      });

      it('adopts a dead lease with a larger fence and reports the previous run', async () => {
        const t = await timed();
        const k = key('dead');
        const first = leaseOf(await t.store.claim(k, { runId: 'crashed', leaseMs: t.leaseMs }));
        await t.pass(t.leaseMs * 1.5);
        const got = await t.store.claim(k, { runId: 'rescuer', leaseMs: t.leaseMs });
        // A backend whose native expiry already removed the dead claim answers acquired (SEMANTICS §2).
        expect(['adopted', 'acquired']).toContain(got.outcome);
        if (got.outcome === 'adopted') expect(got.previous.runId).toBe('crashed');
        if (!t.store.capabilities.nativeExpiry) expect(got.outcome).toBe('adopted');
        expect(leaseOf(got).fence).toBeGreaterThan(first.fence);
      });

      it('rejects a fingerprint mismatch with the conflicting record, and accepts the same fingerprint', async () => {
        const store = await open();
        const k = key('fp');
        const lease = leaseOf(await store.claim(k, { fingerprint: 'sha256:aaa' }));
        const err = await expectCode(store.claim(k, { fingerprint: 'sha256:bbb' }), 'KEY_REUSE_MISMATCH');
        expect((err as IdemError & { record: { runId: string } }).record.runId).toBe(lease.runId);
        expect((await store.claim(k, { fingerprint: 'sha256:aaa' })).outcome).toBe('in_flight');
        await store.complete(lease, { result: 1 });
        await expectCode(store.claim(k, { fingerprint: 'sha256:bbb' }), 'KEY_REUSE_MISMATCH');
        expect((await store.claim(k, { fingerprint: 'sha256:aaa' })).outcome).toBe('completed');
      });

      it('force adopts a live key and fences the old owner out', async () => {
        const store = await open();
        const k = key('force');
        const old = leaseOf(await store.claim(k, { runId: 'stuck', leaseMs: 60_000 }));
        const forced = await store.claim(k, { runId: 'operator', force: true });
        expect(forced.outcome).toBe('adopted');
        const lease = leaseOf(forced);
        expect(lease.fence).toBeGreaterThan(old.fence);
        await expectCode(store.complete(old, { result: 'stale' }), 'LEASE_LOST');
        expect(await store.get(k)).toMatchObject({ runId: 'operator', status: 'in_flight', fence: lease.fence });
        // force also overrides a finished record
        await store.complete(lease);
        expect((await store.claim(k, { force: true })).outcome).toBe('adopted');
      });

      it('a claim repeated with its own runId while the lease lives gets that lease back (a retry after a lost reply)', async () => {
        const store = await open();
        const k = key('own');
        const first = leaseOf(await store.claim(k, { runId: 'run-own', leaseMs: 60_000 }));
        const again = await store.claim(k, { runId: 'run-own', leaseMs: 60_000 });
        expect(again.outcome).toBe('acquired');
        expect(leaseOf(again).fence).toBe(first.fence);
        expect(await store.claim(k, { runId: 'someone-else' })).toMatchObject({ outcome: 'in_flight', record: { runId: 'run-own' } });
        await store.complete(leaseOf(again), { result: 1 });
        expect(await store.get(k)).toMatchObject({ status: 'succeeded', result: 1, fence: first.fence });
      });
    });

    describe('fencing and leases', () => {
      it("a zombie's complete, fail, renew and release after a takeover get LEASE_LOST and change nothing", async () => {
        const t = await timed();
        const k = key('zombie');
        const zombie = leaseOf(await t.store.claim(k, { runId: 'zombie', leaseMs: t.leaseMs }));
        await t.pass(t.leaseMs * 1.5);
        const owner = leaseOf(await t.store.claim(k, { runId: 'owner', leaseMs: 60_000 }));
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

      it('a late finish succeeds when nobody took over', async () => {
        const t = await timed();
        for (const finish of ['complete', 'fail', 'renew'] as const) {
          const k = key(`late-${finish}`);
          const lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
          // Past the deadline, but on a server-clock store still before native expiry (lease + grace).
          await t.pass(t.leaseMs + 50);
          if (finish === 'complete') expect((await t.store.complete(lease, { result: 'late' })).status).toBe('succeeded');
          if (finish === 'fail') expect((await t.store.fail(lease)).status).toBe('failed');
          if (finish === 'renew') expect((await t.store.renew(lease, 60_000)).leaseExpiresAt).toBeGreaterThan(Date.now() + 30_000);
        }
      });

      it('renew extends the lease: the key stays in_flight past the first deadline', async () => {
        const t = await timed();
        const k = key('renew');
        let lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        for (let i = 0; i < 3; i++) {
          await t.pass(t.leaseMs / 2);
          lease = await t.store.renew(lease, t.leaseMs);
        }
        expect((await t.store.claim(k)).outcome).toBe('in_flight');
        expect((await t.store.complete(lease)).status).toBe('succeeded');
      });

      it('release frees the key; the next claim is acquired with a larger fence', async () => {
        const store = await open();
        const k = key('release');
        const first = leaseOf(await store.claim(k));
        await store.release(first);
        expect(await store.get(k)).toBeUndefined();
        const next = await store.claim(k);
        expect(next.outcome).toBe('acquired');
        expect(leaseOf(next).fence).toBeGreaterThan(first.fence);
        await expectCode(store.complete(first), 'LEASE_LOST');
      });

      it('the fence strictly increases over every kind of reclaim', async () => {
        const t = await timed();
        const k = key('fence');
        const fences: number[] = [];
        let lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        fences.push(lease.fence);
        await t.store.fail(lease);
        lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        fences.push(lease.fence);
        lease = leaseOf(await t.store.claim(k, { force: true, leaseMs: t.leaseMs }));
        fences.push(lease.fence);
        await t.pass(t.leaseMs * 1.5);
        lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        fences.push(lease.fence);
        await t.store.release(lease);
        lease = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        fences.push(lease.fence);
        for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
      });
    });

    describe('retention, inspection and cleaning', () => {
      it('forgets a finished record after retention; the key is acquired again', async () => {
        const t = await timed({ retentionMs: 300 });
        const k = key('retention');
        const lease = leaseOf(await t.store.claim(k));
        await t.store.complete(lease, { result: 'old' });
        expect((await t.store.claim(k)).outcome).toBe('completed');
        await t.pass(600);
        expect(await t.store.get(k)).toBeUndefined();
        const again = await t.store.claim(k);
        expect(again.outcome).toBe('acquired');
        expect(leaseOf(again).fence).toBeGreaterThan(lease.fence);
      });

      it('sweep removes expired and dead in_flight records and keeps live ones', async () => {
        const t = await timed({ retentionMs: 300 });
        const [expired, dead, live, done] = [key('sw-expired'), key('sw-dead'), key('sw-live'), key('sw-done')];
        await t.store.complete(leaseOf(await t.store.claim(expired)));
        await t.store.claim(dead, { leaseMs: t.leaseMs });
        await t.pass(Math.max(600, t.leaseMs * 1.5));
        await t.store.claim(live, { leaseMs: 60_000 });
        await t.store.complete(leaseOf(await t.store.claim(done)));
        const counts = await t.store.sweep();
        if (t.store.capabilities.nativeExpiry) {
          expect(counts).toEqual({ expired: 0, deadLeases: 0 });
        } else {
          expect(counts.expired).toBeGreaterThanOrEqual(1);
          expect(counts.deadLeases).toBeGreaterThanOrEqual(1);
          expect(await t.store.driver.read(storageName(expired))).toBeUndefined();
          expect(await t.store.driver.read(storageName(dead))).toBeUndefined();
        }
        expect(await t.store.get(live)).toMatchObject({ status: 'in_flight' });
        expect(await t.store.get(done)).toMatchObject({ status: 'succeeded' });
        expect(await t.store.get(expired)).toBeUndefined();
      });

      it('get returns nothing for an unknown key; list filters by status and pages with a cursor', async () => {
        const store = await open();
        expect(await store.get(key('unknown'))).toBeUndefined();
        const keys = Array.from({ length: 7 }, (_, i) => key(`list-${i}`));
        for (const [i, k] of keys.entries()) {
          const lease = leaseOf(await store.claim(k));
          if (i % 3 === 1) await store.complete(lease);
          if (i % 3 === 2) await store.fail(lease, { error: 'x' });
        }
        const all: string[] = [];
        let cursor: string | undefined;
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.list({ limit: 2, ...(cursor !== undefined ? { cursor } : {}) });
          expect(page.records.length).toBeLessThanOrEqual(2);
          all.push(...page.records.map((r) => r.key));
          cursor = page.cursor;
          if (cursor === undefined) break;
        }
        // At least once: a scanning backend may repeat a record across pages.
        expect([...new Set(all)].sort()).toEqual([...keys].sort());
        const failed = await store.list({ status: 'failed' });
        expect(failed.records.map((r) => r.key).sort()).toEqual(keys.filter((_, i) => i % 3 === 2).sort());
        const inFlight = await store.list({ status: 'in_flight' });
        expect(inFlight.records.every((r) => r.status === 'in_flight')).toBe(true);
        expect(inFlight.records).toHaveLength(3);
      });

      it('delete removes a record whatever its state', async () => {
        const store = await open();
        const k = key('delete');
        await store.claim(k, { leaseMs: 60_000 });
        expect(await store.delete(k)).toBe(true);
        expect(await store.get(k)).toBeUndefined();
        expect(await store.delete(k)).toBe(false);
        expect((await store.claim(k)).outcome).toBe('acquired');
      });

      it('two stores from createStore() are isolated', async () => {
        const [a, b] = [await open(), await open()];
        const k = key('isolated');
        expect((await a.claim(k)).outcome).toBe('acquired');
        expect((await b.claim(k)).outcome).toBe('acquired');
      });

      it('stores keys verbatim, or only their digest with hashKeys', async () => {
        const store = await open();
        for (const [, k] of GOOD_KEYS) {
          const lease = leaseOf(await store.claim(k));
          expect(lease.key).toBe(k);
          expect((await store.get(k))?.key).toBe(k);
        }
        const hashed = await open({ hashKeys: true });
        const secret = `token=${key('secret')}`;
        await hashed.claim(secret);
        const record = await hashed.get(secret);
        expect(record?.key).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(JSON.stringify(record)).not.toContain(secret);
      });
    });

    describe('bad input is rejected before any I/O', () => {
      it('bad keys get INVALID_KEY on every method that takes a key', async () => {
        const store = await open();
        for (const [, bad] of BAD_KEYS) {
          await expectCode(store.claim(bad as string), 'INVALID_KEY');
          await expectCode(store.get(bad as string), 'INVALID_KEY');
          await expectCode(store.delete(bad as string), 'INVALID_KEY');
        }
        expect((await store.list()).records).toEqual([]);
      });

      it('bad durations and options get INVALID_ARGUMENT', async () => {
        const store = await open();
        const k = key('bad-args');
        for (const [, bad] of BAD_DURATIONS) {
          await expectCode(store.claim(k, { leaseMs: bad as number }), 'INVALID_ARGUMENT');
          await expectCode(() => opts.createStore({ retentionMs: bad as number }), 'INVALID_ARGUMENT');
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
        const store = await open();
        const k = key('bad-result');
        const lease = leaseOf(await store.claim(k));
        for (const [, bad] of BAD_RESULTS) await expectCode(store.complete(lease, { result: bad }), 'INVALID_ARGUMENT');
        await expectCode(store.complete(lease, { result: 'x'.repeat(70_000) }), 'INVALID_ARGUMENT');
        for (const bad of [null, {}, { ...lease, key: 'another key' }, { ...lease, fence: 'one' }]) {
          await expectCode(store.complete(bad as Lease), 'INVALID_ARGUMENT');
        }
        expect(await store.get(k)).toMatchObject({ status: 'in_flight', runId: lease.runId });
        expect((await store.complete(lease, { result: 'fine' })).result).toBe('fine');
      });
    });

    describe('corrupt records', () => {
      const corrupt: ReadonlyArray<readonly [string, string | Uint8Array]> = [
        ['not JSON', '{"v":1,"key":'],
        ['not UTF-8', new Uint8Array([0xff, 0xfe, 0x00, 0x81])],
        ['unknown schema version', JSON.stringify({ v: 99, key: 'k', status: 'succeeded', runId: 'r', fence: 1, attempt: 1, claimedAt: 1 })],
        ['wrong field types', JSON.stringify({ v: 1, key: 'k', status: 'done', runId: 1, fence: '1' })],
      ];
      it('raise CORRUPT_RECORD naming the record and are never overwritten', async (ctx) => {
        const store = await open();
        if (!store.driver.writeRaw) ctx.skip(); // the driver declares no raw-write hook
        for (const [, bytes] of corrupt) {
          const k = key('corrupt');
          await store.driver.writeRaw!(storageName(k), bytes);
          const err = await expectCode(store.claim(k, { force: true }), 'CORRUPT_RECORD');
          expect(err.message).toContain(storageName(k));
          await expectCode(store.get(k), 'CORRUPT_RECORD');
          await expectCode(store.claim(k), 'CORRUPT_RECORD');
          await store.sweep();
          await expectCode(store.get(k), 'CORRUPT_RECORD');
        }
      });
    });

    describe('races', () => {
      it('64 concurrent claimers of a free key: exactly one acquired, and the work runs once', async () => {
        const store = await open();
        const k = key('race');
        const outcomes = await Promise.all(Array.from({ length: 64 }, (_, i) => store.claim(k, { runId: `r${i}`, leaseMs: 60_000 })));
        expect(outcomes.filter((o) => o.outcome === 'acquired')).toHaveLength(1);
        expect(outcomes.filter((o) => o.outcome === 'in_flight')).toHaveLength(63);
        let executions = 0;
        const k2 = key('race-run');
        const runs = await Promise.all(
          Array.from({ length: 64 }, () =>
            runOnce(store, k2, async () => {
              executions++;
              await sleep(20);
              return 'once';
            }),
          ),
        );
        expect(executions).toBe(1);
        expect(runs.filter((r) => r.status === 'executed')).toHaveLength(1);
      });

      it('64 concurrent claimers of a dead lease: exactly one takes it over', async () => {
        const t = await timed();
        const k = key('race-dead');
        const first = leaseOf(await t.store.claim(k, { leaseMs: t.leaseMs }));
        await t.pass(t.leaseMs * 1.5);
        const outcomes = await Promise.all(Array.from({ length: 64 }, () => t.store.claim(k, { leaseMs: 60_000 })));
        const winners = outcomes.filter((o) => o.outcome === 'adopted' || o.outcome === 'acquired');
        expect(winners).toHaveLength(1);
        expect(leaseOf(winners[0]!).fence).toBeGreaterThan(first.fence);
      });

      it.skipIf(!opts.processes)('4 OS processes racing over 200 keys: exactly one execution per key', async () => {
        const { module, options } = opts.processes!;
        const shared = await options();
        const worker = fileURLToPath(new URL('./worker.js', import.meta.url));
        const keys = 200;
        const startAt = Date.now() + 1500;
        const results = await Promise.all(
          Array.from({ length: 4 }, (_, i) => runWorker(worker, { module, options: shared, keys, startAt, worker: i })),
        );
        const executed = new Map<number, number>();
        for (const r of results) for (const k of r.executed) executed.set(k, (executed.get(k) ?? 0) + 1);
        expect(executed.size).toBe(keys);
        expect([...executed.values()].every((n) => n === 1)).toBe(true);
        // Every process really took part: each saw the others' claims.
        expect(results.every((r) => r.inFlight + r.completed + r.executed.length === keys)).toBe(true);
      }, 120_000);
    });

    describe('runOnce', () => {
      it('executes once, then hands the stored result to duplicates', async () => {
        const store = await open();
        const k = key('run');
        const first = await runOnce(store, k, () => ({ sent: 1 }), { runId: 'first' });
        expect(first).toMatchObject({ status: 'executed', value: { sent: 1 }, outcome: 'acquired' });
        const again = await runOnce(store, k, () => {
          throw new Error('must not run');
        });
        expect(again).toMatchObject({ status: 'completed', result: { sent: 1 }, record: { runId: 'first' } });
      });

      it('records a throw as a failure, rethrows it, and retries next time', async () => {
        const store = await open();
        const k = key('run-fail');
        await expect(runOnce(store, k, () => Promise.reject(new Error('flaky')))).rejects.toThrow('flaky');
        expect(await store.get(k)).toMatchObject({ status: 'failed', error: 'Error: flaky' });
        expect(await runOnce(store, k, () => 'ok')).toMatchObject({ status: 'executed', value: 'ok' });
      });

      it('releases the claim when aborted', async () => {
        const store = await open();
        const k = key('run-abort');
        const ac = new AbortController();
        const run = runOnce(store, k, (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))), { signal: ac.signal });
        await sleep(50);
        ac.abort(new Error('cancelled'));
        await expect(run).rejects.toThrow('cancelled');
        expect(await store.get(k)).toBeUndefined();
        expect((await store.claim(k)).outcome).toBe('acquired');
      });

      it('an abort that lands while the claim is under way releases the key and never runs fn', async () => {
        const store = await open();
        const k = key('run-abort-early');
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
        const store = await open();
        const k = key('run-renew');
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
        const store = await open();
        const k = key('run-wait');
        const owner = runOnce(store, k, async () => {
          await sleep(300);
          return 'from-owner';
        });
        await sleep(50);
        await expectCode(runOnce(store, k, () => 'x', { onInFlight: 'throw' }), 'IN_FLIGHT');
        const skipped = await runOnce(store, k, () => 'x');
        expect(skipped.status).toBe('in_flight');
        const waited = await runOnce(store, k, () => 'must not run', { onInFlight: 'wait' });
        expect(waited).toMatchObject({ status: 'completed', result: 'from-owner' });
        await owner;
      });
    });
  });
}

interface WorkerResult {
  executed: number[];
  inFlight: number;
  completed: number;
}

function runWorker(script: string, args: object): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`worker exited with ${code}`));
      try {
        resolve(JSON.parse(out) as WorkerResult);
      } catch (error) {
        reject(new Error(`worker printed no result: ${out.slice(0, 200)}`, { cause: error }));
      }
    });
  });
}
