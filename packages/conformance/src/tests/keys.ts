// Key identity: keys are byte-exact and stored verbatim (or as a digest under hashKeys).
import { describe, expect, it } from 'vitest';
import { GOOD_KEYS } from '../bad-input.js';
import type { Suite } from '../context.js';
import { expectLease } from '../testing.js';

/** Keys that a careless backend (case-folding collation, trimming, Unicode normalisation, truncation) would merge. */
export const LOOKALIKE_KEYS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['case', ['Key', 'key', 'KEY']],
  ['surrounding whitespace', ['pad', ' pad', 'pad ', '\tpad', 'pad\n']],
  ['inner whitespace', ['a b', 'a  b', 'a\u00a0b', 'ab']],
  ['NFC vs NFD', ['caf\u00e9', 'cafe\u0301']],
  ['NFKC', ['\ufb01le', 'file']],
  ['long common prefix', [`${'x'.repeat(1000)}a`, `${'x'.repeat(1000)}b`, 'x'.repeat(1000)]],
];

export function keyTests(s: Suite): void {
  describe('keys', () => {
    it('stores keys verbatim, or only their digest with hashKeys', async () => {
      const store = await s.open();
      for (const [, k] of GOOD_KEYS) {
        const lease = expectLease(await store.claim(k));
        expect(lease.key).toBe(k);
        expect((await store.get(k))?.key).toBe(k);
      }
      const hashed = await s.open({ hashKeys: true });
      const secret = `token=${s.key('secret')}`;
      await hashed.claim(secret);
      const record = await hashed.get(secret);
      expect(record?.key).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(JSON.stringify(record)).not.toContain(secret);
    });

    it('keys differing only in case, whitespace, Unicode normalisation form or a late character are distinct', async () => {
      const store = await s.open();
      for (const [, group] of LOOKALIKE_KEYS) {
        const leases = [];
        for (const k of group) {
          const got = await store.claim(k, { runId: `run-${leases.length}` });
          expect(got.outcome, JSON.stringify(k)).toBe('acquired');
          leases.push(expectLease(got));
        }
        for (const [i, k] of group.entries()) await store.complete(leases[i]!, { result: k });
        for (const k of group) expect(await store.get(k)).toMatchObject({ key: k, result: k });
        expect(await store.delete(group[0]!)).toBe(true);
        for (const k of group.slice(1)) expect((await store.get(k))?.key).toBe(k);
      }
    });
  });
}
