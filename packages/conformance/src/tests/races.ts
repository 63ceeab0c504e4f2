// Races: 64 claimers in one process, several handles on one store, 4 OS processes over 200 keys.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { IdemError, runOnce } from '@idem/core';
import type { Suite } from '../context.js';
import { expectLease, sleep, TestClock } from '../testing.js';

export function raceTests(s: Suite): void {
  describe('races', () => {
    it('64 concurrent claimers of a free key: exactly one acquired, and the work runs once', async () => {
      const store = await s.open();
      const k = s.key('race');
      const outcomes = await Promise.all(Array.from({ length: 64 }, (_, i) => store.claim(k, { runId: `r${i}`, leaseMs: 60_000 })));
      expect(outcomes.filter((o) => o.outcome === 'acquired')).toHaveLength(1);
      expect(outcomes.filter((o) => o.outcome === 'in_flight')).toHaveLength(63);
      let executions = 0;
      const k2 = s.key('race-run');
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
      const t = await s.timed();
      const k = s.key('race-dead');
      const first = expectLease(await t.store.claim(k, { leaseMs: t.leaseMs }));
      await t.pass(t.leaseMs * 1.5);
      const outcomes = await Promise.all(Array.from({ length: 64 }, () => t.store.claim(k, { leaseMs: 60_000 })));
      const winners = outcomes.filter((o) => o.outcome === 'adopted' || o.outcome === 'acquired');
      expect(winners).toHaveLength(1);
      expect(expectLease(winners[0]!).fence).toBeGreaterThan(first.fence);
    });

    it('a finish racing a takeover: the finish lands first or is refused, never both', async () => {
      const t = await s.timed();
      const keys = Array.from({ length: 16 }, (_, i) => s.key(`finish-race-${i}`));
      const leases = await Promise.all(keys.map(async (k) => expectLease(await t.store.claim(k, { runId: 'old', leaseMs: t.leaseMs }))));
      await t.pass(t.leaseMs * 1.5);
      await Promise.all(
        keys.map(async (k, i) => {
          const [finished, taken] = await Promise.all([
            t.store.complete(leases[i]!, { result: 'old' }).then(
              () => 'completed',
              (error: unknown) => (error instanceof IdemError ? error.code : Promise.reject(error)),
            ),
            t.store.claim(k, { runId: 'new', leaseMs: 60_000 }),
          ]);
          const stored = await t.store.get(k);
          if (taken.outcome === 'adopted' || taken.outcome === 'acquired') {
            expect(finished, k).toBe('LEASE_LOST');
            expect(stored).toMatchObject({ runId: 'new', status: 'in_flight', fence: taken.lease.fence });
          } else {
            expect(taken.outcome, k).toBe('completed');
            expect(finished, k).toBe('completed');
            expect(stored).toMatchObject({ runId: 'old', status: 'succeeded', result: 'old' });
          }
        }),
      );
    });

    it('4 handles on one store, 16 claimers each, over free and dead keys: one winner per key', async (ctx) => {
      if (!s.openShared) ctx.skip(); // the adapter offers no createSharedStores
      const clock = new TestClock();
      const handles = await s.openShared!({ clock: clock.now }, 4);
      const client = handles[0]!.capabilities.clock === 'client';
      const leaseMs = client ? 60_000 : (s.opts.realLeaseMs ?? 400);
      const keys = Array.from({ length: 8 }, (_, i) => s.key(`shared-${i}`));
      for (const k of keys.slice(4)) await handles[0]!.claim(k, { leaseMs });
      if (client) clock.advance(leaseMs * 1.5);
      else await sleep(leaseMs * 1.5);
      const outcomes = await Promise.all(
        keys.flatMap((k) => handles.flatMap((h, hi) => Array.from({ length: 16 }, (_, i) => h.claim(k, { runId: `h${hi}-${i}`, leaseMs: 60_000 })))),
      );
      for (const [ki, k] of keys.entries()) {
        const mine = outcomes.slice(ki * 64, ki * 64 + 64);
        const winners = mine.filter((o) => o.outcome === 'acquired' || o.outcome === 'adopted');
        expect(winners, k).toHaveLength(1);
        expect(await handles[3]!.get(k)).toMatchObject({ runId: expectLease(winners[0]!).runId });
      }
    });

    it('4 OS processes racing over 200 keys: exactly one execution per key', async (ctx) => {
      if (!s.opts.processes) ctx.skip(); // no module to open the store in another process
      const probe = await s.open();
      if (!probe.capabilities.sharedAcrossProcesses) ctx.skip(); // declared: the store lives in one process
      const { module, options } = s.opts.processes!;
      const shared = await options();
      // From dist/ the compiled worker; from src/ (the suite's own tests) the source, run by Node's type stripping.
      const worker = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../worker.ts' : '../worker.js', import.meta.url));
      const keys = 200;
      const startAt = Date.now() + 1500;
      const results = await Promise.all(Array.from({ length: 4 }, (_, i) => runWorker(worker, { module, options: shared, keys, startAt, worker: i })));
      const executed = new Map<number, number>();
      for (const r of results) for (const k of r.executed) executed.set(k, (executed.get(k) ?? 0) + 1);
      // A failure names the keys and the workers that ran each of them.
      const ranBy = (k: number) => results.flatMap((r, i) => (r.executed.includes(k) ? [`worker ${i}`] : []));
      const twice = [...executed].filter(([, n]) => n > 1).map(([k]) => `key ${k} ran ${executed.get(k)} times (${ranBy(k).join(', ')})`);
      expect(twice, 'keys executed more than once').toEqual([]);
      const never = Array.from({ length: keys }, (_, k) => k).filter((k) => !executed.has(k));
      expect(never, 'keys no worker executed').toEqual([]);
      // Every process really took part: each saw the others' claims.
      expect(
        results.map((r) => r.inFlight + r.completed + r.executed.length),
        'keys each worker saw (executed, in flight or completed)',
      ).toEqual(results.map(() => keys));
    }, 900_000);
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
