// The capability probe and the in-band same-fence check, on an in-memory
// object store that keeps or ignores each precondition: the real servers
// (and their quirks) are exercised in packages/s3/test/probe.test.ts.
import { describe, expect, it } from 'vitest';
import {
  CONFLICT,
  decideClaim,
  decideFinish,
  LeaseLostError,
  probeCas,
  probeOnce,
  type ClaimInput,
  type Guarantee,
  type ProbePrimitives,
} from '../src/adapter.js';

/** A versioned map; `ignores` lists the preconditions it drops. */
function memoryStore(ignores: Guarantee[] = []): ProbePrimitives & { objects: Map<string, { body: string; version: string }> } {
  const objects = new Map<string, { body: string; version: string }>();
  let seq = 0;
  const put = (name: string, body: string) => {
    const version = `v${++seq}`;
    objects.set(name, { body, version });
    return version;
  };
  return {
    objects,
    read: async (name) => {
      const o = objects.get(name);
      return o && { record: JSON.parse(o.body), version: o.version };
    },
    create: async (name, body) => (objects.has(name) && !ignores.includes('create-if-absent') ? CONFLICT : put(name, body)),
    replace: async (name, body, version) => (objects.get(name)?.version !== version && !ignores.includes('replace-if-match') ? CONFLICT : put(name, body)),
    removeIf: async (name, version) => {
      if (objects.get(name)?.version !== version && !ignores.includes('delete-if-match')) return CONFLICT;
      objects.delete(name);
    },
    remove: async (name) => void objects.delete(name),
  };
}

describe('probeCas', () => {
  it('a store keeping every precondition passes, and nothing is left behind', async () => {
    const store = memoryStore();
    expect(await probeCas(store, '.probe')).toEqual({ createIfAbsent: true, replaceIfMatch: true, deleteIfMatch: true });
    expect(store.objects.size).toBe(0);
  });

  it.each([
    ['create-if-absent', { createIfAbsent: false, replaceIfMatch: true, deleteIfMatch: true }],
    ['replace-if-match', { createIfAbsent: true, replaceIfMatch: false, deleteIfMatch: true }],
    ['delete-if-match', { createIfAbsent: true, replaceIfMatch: true, deleteIfMatch: false }],
  ] as const)('a store ignoring %s is caught', async (ignored, expected) => {
    const store = memoryStore([ignored]);
    expect(await probeCas(store, '.probe')).toEqual(expected);
    expect(store.objects.size).toBe(0);
  });
});

describe('probeOnce', () => {
  it('runs a probe once per target, and forgets a failed one', async () => {
    let runs = 0;
    const ok = async () => (runs++, { createIfAbsent: true, replaceIfMatch: true, deleteIfMatch: true });
    const target = `t-${Math.random()}`;
    await Promise.all([probeOnce(target, ok), probeOnce(target, ok)]);
    expect(runs).toBe(1);
    const failing = `f-${Math.random()}`;
    await expect(probeOnce(failing, async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    await probeOnce(failing, ok);
    expect(runs).toBe(2);
  });
});

describe('decideFinish: another run at the same fence', () => {
  const input = (runId: string): ClaimInput => ({ key: 'k', recordKey: 'k', name: 'n', runId, leaseMs: 1_000, force: false, dedupOn: 'success' });
  const won = (runId: string, now: number) => {
    const step = decideClaim(undefined, input(runId), now);
    if (step.value.outcome !== 'acquired') throw new Error('expected acquired');
    return { lease: step.value.lease, record: step.write! };
  };

  it('claimed during the lease: a broken precondition, said loudly', () => {
    const a = won('a', 1_000);
    const b = won('b', 1_100); // what a server ignoring If-None-Match lets happen
    const err = (() => {
      try {
        decideFinish(b.record, a.lease, { op: 'complete', retentionMs: 10_000 }, 1_200);
      } catch (e) {
        return e;
      }
    })();
    // Still LEASE_LOST (a record deleted by hand looks the same), with the suspicion said loudly.
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err).toMatchObject({ suspectedBrokenGuarantee: 'create-if-absent', code: 'LEASE_LOST' });
    expect((err as Error).message).toMatch(/WARNING: .*not safe for idem/);
  });

  it('claimed after the lease ended (swept and created afresh): plain LEASE_LOST', () => {
    const a = won('a', 1_000);
    const b = won('b', 5_000);
    expect(() => decideFinish(b.record, a.lease, { op: 'complete', retentionMs: 10_000 }, 5_100)).toThrow(LeaseLostError);
    expect(() => decideFinish(b.record, a.lease, { op: 'complete', retentionMs: 10_000 }, 5_100)).toThrow(
      expect.objectContaining({ code: 'LEASE_LOST', suspectedBrokenGuarantee: undefined }),
    );
  });
});
