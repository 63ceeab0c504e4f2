// Corrupt records: reported with their storage name, never overwritten, never swept.
import { describe, expect, it } from 'vitest';
import { storageName } from '@idem/core';
import type { Suite } from '../context.js';
import { expectCode, expectLease } from '../testing.js';

const CORRUPT: ReadonlyArray<readonly [string, string | Uint8Array]> = [
  ['not JSON', '{"v":1,"key":'],
  ['not UTF-8', new Uint8Array([0xff, 0xfe, 0x00, 0x81])],
  ['unknown schema version', JSON.stringify({ v: 99, key: 'k', status: 'succeeded', runId: 'r', fence: 1, attempt: 1, claimedAt: 1 })],
  ['wrong field types', JSON.stringify({ v: 1, key: 'k', status: 'done', runId: 1, fence: '1' })],
  ['in_flight without a deadline', JSON.stringify({ v: 1, key: 'k', status: 'in_flight', runId: 'r', fence: 1, attempt: 1, claimedAt: 1 })],
];

export function corruptTests(s: Suite): void {
  describe('corrupt records', () => {
    it('raise CORRUPT_RECORD naming the record and are never overwritten', async (ctx) => {
      const store = await s.open();
      if (!store.driver.writeRaw) ctx.skip(); // the driver declares no raw-write hook
      for (const [, bytes] of CORRUPT) {
        const k = s.key('corrupt');
        await store.driver.writeRaw!(storageName(k), bytes);
        const err = await expectCode(store.claim(k, { force: true }), 'CORRUPT_RECORD');
        expect(err.message).toContain(storageName(k));
        await expectCode(store.get(k), 'CORRUPT_RECORD');
        await expectCode(store.claim(k), 'CORRUPT_RECORD');
        await store.sweep();
        await expectCode(store.get(k), 'CORRUPT_RECORD');
      }
    });

    it('a lease whose record was replaced by corrupt bytes cannot finish over them', async (ctx) => {
      const store = await s.open();
      if (!store.driver.writeRaw) ctx.skip();
      const k = s.key('corrupt-finish');
      const lease = expectLease(await store.claim(k));
      await store.driver.writeRaw!(storageName(k), '{"v":1,"key":');
      await expectCode(store.complete(lease, { result: 'over corrupt' }), 'CORRUPT_RECORD');
      await expectCode(store.get(k), 'CORRUPT_RECORD');
    });
  });
}
