// The exact record after every transition, not just the outcome. Times are
// checked exactly against the injected clock on client-clock stores, and as
// differences (lease and retention lengths) on server-clock stores.
import { describe, expect, it } from 'vitest';
import { PROCESS_HOLDER, RECORD_VERSION, type IdemRecord, type Lease } from '@idem/core/adapter';
import type { Suite, Timed } from '../context.js';
import { expectLease } from '../testing.js';

export function recordTests(s: Suite): void {
  /** Asserts `lease` describes `record`, and that `record` is what the store holds. */
  async function held(t: Timed, k: string, lease: Lease, record: IdemRecord | undefined) {
    expect(record).toBeDefined();
    expect(lease).toMatchObject({ key: k, runId: record!.runId, fence: record!.fence, leaseExpiresAt: record!.leaseExpiresAt });
    expect(lease.record).toEqual(record);
    expect(await t.store.get(k)).toEqual(record);
  }
  /** Exact on a client clock; on a server clock only that it is a plausible epoch-ms time. */
  const at = (t: Timed, value: number | undefined) => {
    expect(value).toBeTypeOf('number');
    if (t.client) expect(value).toBe(t.clock.now());
  };

  describe('the exact record after each transition', () => {
    it("claim, duplicate claim, renew, adopt, force, complete: fence, attempt, runId, times and each caller's own lease", async () => {
      const retentionMs = 3_600_000;
      const t = await s.timed({ retentionMs });
      const k = s.key('exact');
      // Four different leases, so that a lease taken from the wrong caller shows; the
      // owner's is long enough on a server clock to outlive a loaded machine's pauses.
      const [ownerMs, claimantMs, renewMs, forceMs] = [t.leaseMs * 5, t.leaseMs * 3, t.leaseMs, t.leaseMs * 4];

      // Labels and the holder's program round-trip exactly (names come back sorted).
      const labels = { team: 'data', 'run/date': '2026-12-07 é' };
      const owner = expectLease(await t.store.claim(k, { runId: 'owner', leaseMs: ownerMs, labels, program: 'owner-prog' }));
      const claimed = await t.store.get(k);
      expect(claimed).toEqual({
        v: RECORD_VERSION,
        key: k,
        status: 'in_flight',
        runId: 'owner',
        fence: owner.fence,
        attempt: 1,
        claimedAt: claimed!.claimedAt,
        leaseExpiresAt: claimed!.claimedAt + ownerMs,
        holder: { ...PROCESS_HOLDER, program: 'owner-prog' },
        labels: { 'run/date': '2026-12-07 é', team: 'data' },
      });
      at(t, claimed!.claimedAt);
      await held(t, k, owner, claimed);

      // A claimant asking for a longer lease changes nothing while the owner's lives.
      const dup = await t.store.claim(k, { runId: 'claimant', leaseMs: claimantMs });
      expect(dup).toEqual({ outcome: 'in_flight', record: claimed });
      expect(await t.store.get(k)).toEqual(claimed);

      // Renew: a new deadline from now, by the renewer's lease; nothing else moves.
      await t.pass(ownerMs / 4);
      const renewed = await t.store.renew(owner, renewMs);
      const afterRenew = await t.store.get(k);
      expect(afterRenew).toEqual({ ...claimed, leaseExpiresAt: afterRenew!.leaseExpiresAt });
      // From the renewal's instant (a quarter of the owner's lease after the claim), by the renewer's lease.
      if (t.client) expect(afterRenew!.leaseExpiresAt).toBe(t.clock.now() + renewMs);
      else expect(afterRenew!.leaseExpiresAt).toBeGreaterThanOrEqual(claimed!.claimedAt + ownerMs / 4 + renewMs);
      await held(t, k, renewed, afterRenew);

      // Adopt after the renewed lease died: by the claimant's lease, one more fence and attempt.
      await t.pass(renewMs * 1.5);
      const adopted = await t.store.claim(k, { runId: 'claimant', leaseMs: claimantMs });
      const rescuer = expectLease(adopted);
      const afterAdopt = await t.store.get(k);
      if (adopted.outcome === 'adopted') {
        expect(adopted.previous).toEqual(afterRenew);
        expect(afterAdopt).toMatchObject({ attempt: 2 });
        expect(afterAdopt!.fence).toBeGreaterThan(owner.fence); // only growth is specified (Valkey's fences follow its clock)
      } else {
        // Only where native expiry removed the dead claim first; the fence still grows.
        expect(t.store.capabilities.nativeExpiry).toBe(true);
        expect(afterAdopt!.fence).toBeGreaterThan(owner.fence);
      }
      expect(afterAdopt).toMatchObject({ status: 'in_flight', runId: 'claimant', key: k });
      // The new claimant is the holder; it gave no labels, so a takeover keeps the record's.
      expect(afterAdopt!.holder).toEqual(PROCESS_HOLDER);
      if (adopted.outcome === 'adopted') expect(afterAdopt!.labels).toEqual(claimed!.labels);
      expect(afterAdopt!.leaseExpiresAt! - afterAdopt!.claimedAt).toBe(claimantMs);
      at(t, afterAdopt!.claimedAt);
      await held(t, k, rescuer, afterAdopt);

      // Force over a live lease: by the operator's lease.
      await t.pass(10);
      const forced = expectLease(await t.store.claim(k, { runId: 'operator', force: true, leaseMs: forceMs, labels: { team: 'ops' } }));
      const afterForce = await t.store.get(k);
      // A claimant's own labels replace the record's.
      expect(afterForce).toMatchObject({ status: 'in_flight', runId: 'operator', attempt: afterAdopt!.attempt + 1, labels: { team: 'ops' } });
      expect(afterForce!.fence).toBeGreaterThan(afterAdopt!.fence);
      expect(afterForce!.leaseExpiresAt! - afterForce!.claimedAt).toBe(forceMs);
      at(t, afterForce!.claimedAt);
      await held(t, k, forced, afterForce);

      // Complete: no lease deadline any more; completedAt now, expiresAt after retention.
      await t.pass(10);
      const done = await t.store.complete(forced, { result: { n: 1 } });
      expect(done).toEqual({
        v: RECORD_VERSION,
        key: k,
        status: 'succeeded',
        runId: 'operator',
        fence: afterForce!.fence,
        attempt: afterForce!.attempt,
        claimedAt: afterForce!.claimedAt,
        completedAt: done.completedAt,
        expiresAt: done.completedAt! + retentionMs,
        holder: PROCESS_HOLDER,
        labels: { team: 'ops' },
        result: { n: 1 },
      });
      at(t, done.completedAt);
      expect(await t.store.get(k)).toEqual(done);
    });

    it('fail, then reclaim: the failure is stored exactly, the reclaim counts on from it', async () => {
      const retentionMs = 3_600_000;
      const t = await s.timed({ retentionMs });
      const k = s.key('exact-fail');
      const first = expectLease(await t.store.claim(k, { runId: 'r1', leaseMs: t.leaseMs, labels: { step: 'load' } }));
      const claimed = await t.store.get(k);
      await t.pass(10);
      const failed = await t.store.fail(first, { error: 'boom' });
      const { leaseExpiresAt: _gone, ...base } = claimed!;
      expect(failed).toEqual({ ...base, status: 'failed', error: 'boom', completedAt: failed.completedAt, expiresAt: failed.completedAt! + retentionMs });
      at(t, failed.completedAt);
      expect(await t.store.get(k)).toEqual(failed);
      await t.pass(10);
      const again = await t.store.claim(k, { runId: 'r2', leaseMs: t.leaseMs * 2 });
      expect(again.outcome === 'acquired' && again.previous).toEqual(failed);
      const lease = expectLease(again);
      const reclaimed = await t.store.get(k);
      expect(reclaimed).toEqual({
        v: RECORD_VERSION,
        key: k,
        status: 'in_flight',
        runId: 'r2',
        fence: reclaimed!.fence,
        attempt: 2,
        claimedAt: reclaimed!.claimedAt,
        leaseExpiresAt: reclaimed!.claimedAt + t.leaseMs * 2,
        holder: PROCESS_HOLDER,
        // Kept from the failed record it takes over.
        labels: { step: 'load' },
      });
      expect(reclaimed!.fence).toBeGreaterThan(first.fence);
      at(t, reclaimed!.claimedAt);
      await held(t, k, lease, reclaimed);
    });

    it('past retention the attempt count starts again, the fence does not', async () => {
      const t = await s.timed({ retentionMs: 300 });
      const k = s.key('exact-retention');
      const first = expectLease(await t.store.claim(k));
      await t.store.complete(first);
      await t.pass(600);
      const again = expectLease(await t.store.claim(k));
      expect(again.fence).toBeGreaterThan(first.fence);
      expect(await t.store.get(k)).toMatchObject({ attempt: 1, status: 'in_flight', fence: again.fence });
    });
  });
}
