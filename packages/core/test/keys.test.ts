import { describe, expect, it } from 'vitest';
import { canonicalJson, deriveKey, fingerprint, parseDuration, parseRecord, storageName, validateKey, IdemError } from '../src/adapter.js';

describe('canonical JSON and derived keys', () => {
  it('ignores key order and normalises -0', () => {
    expect(canonicalJson({ b: 1, a: [2, { d: -0, e: 'x' }] })).toBe('{"a":[2,{"d":0,"e":"x"}],"b":1}');
    expect(canonicalJson({ z: 1, a: 2 })).toBe(canonicalJson({ a: 2, z: 1 }));
  });

  it('rejects undefined members: {a: undefined} and {} must not give the same key', () => {
    expect(() => deriveKey('ns', 'task', { a: undefined })).toThrow(IdemError);
    expect(() => canonicalJson({ b: 1, c: [{ d: undefined }] })).toThrow(/\$\.c\[0\]\.d is undefined/);
  });

  it('rejects values with no single JSON form', () => {
    for (const bad of [Number.NaN, Infinity, 1n, () => 1, new Map(), Symbol('s')]) {
      expect(() => canonicalJson({ v: bad })).toThrow(IdemError);
    }
  });

  it('derives the same key for the same task, a different one otherwise', () => {
    const a = deriveKey('billing', 'send-invoice', { customer: 'c1', month: '2026-11' });
    expect(deriveKey('billing', 'send-invoice', { month: '2026-11', customer: 'c1' })).toBe(a);
    expect(deriveKey('billing', 'send-invoice', { month: '2026-12', customer: 'c1' })).not.toBe(a);
    expect(deriveKey('billing', 'refund', { customer: 'c1', month: '2026-11' })).not.toBe(a);
    expect(a).toMatch(/^billing:send-invoice:[0-9a-f]{64}$/);
    expect(() => validateKey(a)).not.toThrow();
  });

  it('limits a key to 1024 bytes of UTF-8, whatever the width of its characters', () => {
    // 1, 2, 3 and 4 bytes a character (the last as a surrogate pair): exactly at the limit, then one over.
    for (const [ch, n] of [
      ['a', 1024],
      ['\u00e9', 512],
      ['\u20ac', 341],
      ['\u{1F600}', 256],
    ] as const) {
      expect(() => validateKey(ch.repeat(n))).not.toThrow();
      expect(() => validateKey(ch.repeat(n + 1))).toThrow(/bytes of UTF-8; the limit is 1024/);
    }
    expect(() => validateKey(`${'\u20ac'.repeat(341)}a`)).not.toThrow(); // 1024 bytes in 342 units
    expect(() => validateKey(`${'\u20ac'.repeat(341)}ab`)).toThrow(/1025 bytes/);
  });

  it('fingerprints parameters and names storage by sha256', () => {
    expect(fingerprint({ a: 1, b: [1] })).toBe(fingerprint({ b: [1], a: 1 }));
    expect(fingerprint({ a: 1 })).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(storageName('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('durations and records', () => {
  it('parses human durations and rejects the rest', () => {
    expect(parseDuration('lease', '500ms')).toBe(500);
    expect(parseDuration('lease', '5m')).toBe(300_000);
    expect(parseDuration('lease', '30d')).toBe(30 * 86_400_000);
    expect(parseDuration('lease', '250')).toBe(250);
    for (const bad of ['', '5 minutes', '-1s', '1.5s', '0s', '99999d']) expect(() => parseDuration('lease', bad)).toThrow(IdemError);
  });

  it('refuses records it does not understand', () => {
    const good = { v: 1, key: 'k', status: 'succeeded', runId: 'r', fence: 1, attempt: 1, claimedAt: 1 };
    expect(parseRecord('n', JSON.stringify(good))).toEqual(good);
    for (const bad of [
      '',
      '[]',
      'null',
      JSON.stringify({ ...good, v: 2 }),
      JSON.stringify({ ...good, status: 'in_flight' }),
      JSON.stringify({ ...good, fence: 1.5 }),
    ]) {
      expect(() => parseRecord('n', bad)).toThrow(expect.objectContaining({ code: 'CORRUPT_RECORD' }));
    }
  });
});
