// Store behaviour checked on each scanning backend (LMDB, S3, GCS) by its own
// tests, until the conformance suite carries them: listing around corrupt
// records, and the fence ceiling. Typed structurally: fixtures do not depend on core.
import { createHash } from 'node:crypto';
import { expect } from 'vitest';

interface Store {
  claim(key: string, options?: { force?: boolean }): Promise<{ outcome: string; lease?: unknown }>;
  complete(lease: never, options?: { result?: unknown }): Promise<unknown>;
  get(key: string): Promise<unknown>;
  list(options?: { limit?: number; cursor?: string }): Promise<{ records: { key: string }[]; corrupt?: { name: string; reason: string }[]; cursor?: string }>;
  readonly driver: { writeRaw?(name: string, bytes: string | Uint8Array): Promise<void> };
}

const nameOf = (key: string) => createHash('sha256').update(key).digest('hex');

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}

/** A fresh store (nothing else in it) with 3 records and 2 corrupt ones: every page lists the others and names the corrupt. */
export async function expectListNamesCorrupt(store: Store): Promise<void> {
  for (const k of ['a', 'b', 'c']) {
    const got = await store.claim(k);
    await store.complete(got.lease as never, { result: k });
  }
  await store.driver.writeRaw!(nameOf('bad-json'), '{"v":1,"key":');
  await store.driver.writeRaw!(nameOf('bad-version'), JSON.stringify({ v: 99, key: 'k' }));
  const all = await store.list();
  expect(all.records.map((r) => r.key).sort()).toEqual(['a', 'b', 'c']);
  expect(all.corrupt?.map((c) => c.name).sort()).toEqual([nameOf('bad-json'), nameOf('bad-version')].sort());
  const keys: string[] = [];
  const named: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: 1, ...(cursor !== undefined ? { cursor } : {}) });
    keys.push(...page.records.map((r) => r.key));
    named.push(...(page.corrupt ?? []).map((c) => c.name));
    cursor = page.cursor;
  } while (cursor !== undefined);
  expect(keys.sort()).toEqual(['a', 'b', 'c']);
  expect(named.sort()).toEqual([nameOf('bad-json'), nameOf('bad-version')].sort());
}

/** A record at fence 2^53-1: the next claim is refused (CORRUPT_RECORD) before anything runs, and the record stays. */
export async function expectFenceCeilingRefused(store: Store): Promise<void> {
  const record = {
    v: 1,
    key: 'top',
    status: 'failed',
    runId: 'r',
    fence: Number.MAX_SAFE_INTEGER,
    attempt: 2,
    claimedAt: 1,
    completedAt: 2,
    expiresAt: Date.now() + 3_600_000,
  };
  await store.driver.writeRaw!(nameOf('top'), JSON.stringify(record));
  expect(await codeOf(store.claim('top'))).toBe('CORRUPT_RECORD');
  expect(await codeOf(store.claim('top', { force: true }))).toBe('CORRUPT_RECORD');
  expect(await store.get('top')).toEqual(record);
}
