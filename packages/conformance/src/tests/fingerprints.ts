// Fingerprints: a key reused for another request is refused, except past retention and under force.
import { describe, expect, it } from 'vitest';
import type { IdemError } from '@idem/core';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

export function fingerprintTests(s: Suite): void {
  describe('fingerprints', () => {
    it('rejects a fingerprint mismatch with the conflicting record, and accepts the same fingerprint', async () => {
      const store = await s.open();
      const k = s.key('fp');
      const lease = expectLease(await store.claim(k, { fingerprint: 'sha256:aaa' }));
      const err = await expectCode(store.claim(k, { fingerprint: 'sha256:bbb' }), 'KEY_REUSE_MISMATCH');
      expect((err as IdemError & { record: { runId: string } }).record.runId).toBe(lease.runId);
      expect((await store.claim(k, { fingerprint: 'sha256:aaa' })).outcome).toBe('in_flight');
      expect((await store.claim(k)).outcome).toBe('in_flight'); // no fingerprint: nothing to compare
      await store.complete(lease, { result: 1 });
      await expectCode(store.claim(k, { fingerprint: 'sha256:bbb' }), 'KEY_REUSE_MISMATCH');
      expect((await store.claim(k, { fingerprint: 'sha256:aaa' })).outcome).toBe('completed');
      expect(await store.get(k)).toMatchObject({ fingerprint: 'sha256:aaa', result: 1 });
    });

    it('force takes the key with a different fingerprint, which then is the one compared', async () => {
      const store = await s.open();
      const k = s.key('fp-force');
      const old = expectLease(await store.claim(k, { fingerprint: 'sha256:old', leaseMs: 60_000 }));
      const forced = expectLease(await store.claim(k, { fingerprint: 'sha256:new', force: true, leaseMs: 60_000 }));
      expect(forced.fence).toBeGreaterThan(old.fence);
      expect(await store.get(k)).toMatchObject({ fingerprint: 'sha256:new', runId: forced.runId });
      await expectCode(store.claim(k, { fingerprint: 'sha256:old' }), 'KEY_REUSE_MISMATCH');
      expect((await store.claim(k, { fingerprint: 'sha256:new' })).outcome).toBe('in_flight');
      await store.complete(forced);
      const again = expectLease(await store.claim(k, { fingerprint: 'sha256:third', force: true }));
      expect(await store.get(k)).toMatchObject({ fingerprint: 'sha256:third', fence: again.fence, status: 'in_flight' });
    });

    it('a key past retention is claimed with a different fingerprint', async () => {
      const t = await s.timed({ retentionMs: 300 });
      const k = s.key('fp-retention');
      await t.store.complete(expectLease(await t.store.claim(k, { fingerprint: 'sha256:old' })));
      await t.pass(600);
      const got = await t.store.claim(k, { fingerprint: 'sha256:new' });
      expect(got.outcome).toBe('acquired');
      expect(await t.store.get(k)).toMatchObject({ fingerprint: 'sha256:new', status: 'in_flight', attempt: 1 });
    });
  });
}
