// The decisions as tables: pure functions of (stored record, request, now), no backend involved.
import { describe, expect, it } from 'vitest';
import { decideClaim, decideFinish, IdemError, isSweepable, leaseOf, RECORD_VERSION, type ClaimInput, type FinishOp, type IdemRecord } from '../src/adapter.js';

const NOW = 1_000_000;
const input = (over: Partial<ClaimInput> = {}): ClaimInput => ({
  key: 'k',
  recordKey: 'k',
  name: 'n',
  runId: 'me',
  leaseMs: 1_000,
  force: false,
  dedupOn: 'success',
  ...over,
});
const rec = (over: Partial<IdemRecord> = {}): IdemRecord => ({
  v: RECORD_VERSION,
  key: 'k',
  status: 'in_flight',
  runId: 'owner',
  fence: 5,
  attempt: 2,
  claimedAt: NOW - 100,
  leaseExpiresAt: NOW + 500,
  ...over,
});
const done = (over: Partial<IdemRecord> = {}) =>
  rec({ status: 'succeeded', leaseExpiresAt: undefined, completedAt: NOW - 50, expiresAt: NOW + 5_000, result: 'r', ...over });
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    if (error instanceof IdemError) return error.code;
    throw error;
  }
  return undefined;
};

describe('decideClaim', () => {
  const rows: Array<[string, IdemRecord | undefined, Partial<ClaimInput>, number, string, Partial<IdemRecord> | undefined]> = [
    // label, stored, request, skew, outcome, written record (undefined: nothing written)
    ['free key', undefined, {}, 0, 'acquired', { fence: 1, attempt: 1, runId: 'me', claimedAt: NOW, leaseExpiresAt: NOW + 1_000 }],
    ['live lease of another run', rec(), {}, 0, 'in_flight', undefined],
    ['own live lease asked again', rec({ runId: 'me' }), {}, 0, 'acquired', undefined],
    ['lease dead exactly at its deadline', rec({ leaseExpiresAt: NOW }), {}, 0, 'adopted', { fence: 6, attempt: 3 }],
    ['dead lease, before deadline + skew', rec({ leaseExpiresAt: NOW - 100 }), {}, 101, 'in_flight', undefined],
    ['dead lease, at deadline + skew', rec({ leaseExpiresAt: NOW - 100 }), {}, 100, 'adopted', { fence: 6, attempt: 3 }],
    ['succeeded', done(), {}, 0, 'completed', undefined],
    ['failed, dedupOn success', done({ status: 'failed' }), {}, 0, 'acquired', { fence: 6, attempt: 3 }],
    ['failed, dedupOn any', done({ status: 'failed' }), { dedupOn: 'any' }, 0, 'completed', undefined],
    ['past retention: fence continues, attempt restarts', done({ expiresAt: NOW }), {}, 0, 'acquired', { fence: 6, attempt: 1 }],
    ['force on a live lease', rec(), { force: true }, 0, 'adopted', { fence: 6, attempt: 3, runId: 'me' }],
    ['force on a finished record', done(), { force: true }, 0, 'adopted', { fence: 6, status: 'in_flight' }],
    ['fingerprint stored', undefined, { fingerprint: 'f' }, 0, 'acquired', { fingerprint: 'f' }],
  ];
  it.each(rows)('%s', (_label, stored, request, skew, outcome, written) => {
    const step = decideClaim(stored, input(request), NOW, skew);
    expect(step.value.outcome).toBe(outcome);
    if (written === undefined) expect(step.write).toBeUndefined();
    else expect(step.write).toMatchObject({ v: RECORD_VERSION, key: 'k', status: 'in_flight', ...written });
    if (step.value.outcome === 'acquired' || step.value.outcome === 'adopted') {
      // The lease names what is now stored: the written record, or the stored one when nothing was written.
      const holds = step.write ?? stored!;
      expect(step.value.lease).toEqual(leaseOf('k', 'n', holds));
    }
    if (step.value.outcome === 'adopted') expect(step.value.previous).toBe(stored);
  });

  it('a different fingerprint is KEY_REUSE_MISMATCH on a live or finished record, not past retention, not under force', () => {
    expect(codeOf(() => decideClaim(rec({ fingerprint: 'a' }), input({ fingerprint: 'b' }), NOW))).toBe('KEY_REUSE_MISMATCH');
    expect(codeOf(() => decideClaim(done({ fingerprint: 'a' }), input({ fingerprint: 'b' }), NOW))).toBe('KEY_REUSE_MISMATCH');
    expect(decideClaim(done({ fingerprint: 'a', expiresAt: NOW }), input({ fingerprint: 'b' }), NOW).value.outcome).toBe('acquired');
    expect(decideClaim(rec({ fingerprint: 'a' }), input({ fingerprint: 'b', force: true }), NOW).write?.fingerprint).toBe('b');
    // Either side without a fingerprint is no mismatch.
    expect(decideClaim(rec(), input({ fingerprint: 'b' }), NOW).value.outcome).toBe('in_flight');
    expect(decideClaim(rec({ fingerprint: 'a' }), input(), NOW).value.outcome).toBe('in_flight');
  });
});

describe('decideFinish', () => {
  const lease = leaseOf('k', 'n', rec());
  const rows: Array<[string, IdemRecord | undefined, FinishOp, string | Partial<IdemRecord> | 'none']> = [
    // label, stored, op, error code | written record | 'none' (nothing written, no error)
    ['complete', rec(), { op: 'complete', retentionMs: 10_000, result: 0 }, { status: 'succeeded', result: 0, completedAt: NOW, expiresAt: NOW + 10_000 }],
    ['fail', rec(), { op: 'fail', retentionMs: 10_000, error: 'e' }, { status: 'failed', error: 'e', completedAt: NOW, expiresAt: NOW + 10_000 }],
    ['renew: from now, not from the old deadline', rec(), { op: 'renew', leaseMs: 2_000 }, { status: 'in_flight', leaseExpiresAt: NOW + 2_000 }],
    ['release keeps the fence in a record past retention', rec(), { op: 'release' }, { status: 'in_flight', expiresAt: NOW, fence: 5 }],
    ['late complete, nobody took over', rec({ leaseExpiresAt: NOW - 1 }), { op: 'complete', retentionMs: 10_000 }, { status: 'succeeded' }],
    ['taken over (higher fence)', rec({ fence: 6, runId: 'other' }), { op: 'complete', retentionMs: 10_000 }, 'LEASE_LOST'],
    ['same fence, other run', rec({ runId: 'other' }), { op: 'complete', retentionMs: 10_000 }, 'LEASE_LOST'],
    ['same run, other fence', rec({ fence: 6 }), { op: 'complete', retentionMs: 10_000 }, 'LEASE_LOST'],
    ['gone', undefined, { op: 'complete', retentionMs: 10_000 }, 'LEASE_LOST'],
    ['release of a gone record', undefined, { op: 'release' }, 'none'],
    ['repeated complete', done({ runId: 'owner' }), { op: 'complete', retentionMs: 10_000, result: 'other' }, 'none'],
    ['repeated fail', done({ status: 'failed' }), { op: 'fail', retentionMs: 10_000 }, 'none'],
    ['complete after own fail', done({ status: 'failed' }), { op: 'complete', retentionMs: 10_000 }, 'LEASE_LOST'],
    ['renew of own finished record', done(), { op: 'renew', leaseMs: 1 }, 'LEASE_LOST'],
    ['release of own finished record', done(), { op: 'release' }, 'LEASE_LOST'],
  ];
  it.each(rows)('%s', (_label, stored, op, expected) => {
    if (typeof expected === 'string' && expected !== 'none') {
      expect(codeOf(() => decideFinish(stored, lease, op, NOW))).toBe(expected);
      return;
    }
    const step = decideFinish(stored, lease, op, NOW);
    if (expected === 'none') {
      expect(step.write).toBeUndefined();
      if (stored !== undefined) expect(step.value.record).toBe(stored);
      return;
    }
    expect(step.write).toMatchObject({ fence: 5, runId: 'owner', attempt: 2, ...expected });
    if (step.write!.status !== 'in_flight') expect(step.write).not.toHaveProperty('leaseExpiresAt');
    if (op.op === 'renew') expect(step.value.lease).toEqual(leaseOf('k', 'n', step.write!));
  });
});

describe('isSweepable', () => {
  it.each([
    ['live lease', rec(), false],
    ['dead lease', rec({ leaseExpiresAt: NOW }), true],
    ['finished, kept', done(), false],
    ['finished, past retention', done({ expiresAt: NOW }), true],
  ] as const)('%s', (_label, record, expected) => expect(isSweepable(record, NOW)).toBe(expected));
});
