// One record layout: every record the Valkey store writes (the claim's SET NX, a take, renew,
// both finish paths, release, delete) is byte for byte what core's serializeRecord writes for
// the record it parses to, and what the store returned is that record. A change to any writer
// alone (the Lua encoder, the claim's template, the finish's byte surgery) fails here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { expectLease as leaseOf } from '@idem/conformance/testing';
import { parseRecord, serializeRecord, storageName, type IdempotencyStore, type IdemRecord, type Lease } from '@idem/core/adapter';
import { createValkeyStore } from '../src/index.js';
import { haveRedisServer, PrivateServer } from './private-server.js';
import { freshPrefix } from './server.js';

// Slashes, quotes, backslashes, control characters and non-ASCII: where JSON encoders differ.
const KEYS = ['plain', 'a/b/c', 'quote"back\\slash/', 'tab\tnl\ncr\r', 'ünï cödé ✓ 😀', 'del\u007f\u2028'];
const RESULT = { list: [], n: 12345678901234, s: 'x/y "z"', nested: { u: 'é', f: 1.5 } };

describe.skipIf(!haveRedisServer())('valkey record layout against core serializeRecord', () => {
  let server: PrivateServer;
  let admin: Redis;
  let store: IdempotencyStore;
  let prefix: string;

  beforeAll(async () => {
    server = await PrivateServer.start();
    admin = server.admin();
    prefix = freshPrefix();
    store = await createValkeyStore({ url: server.url, prefix, timeoutMs: 2000 });
  });
  afterAll(async () => {
    await store?.close();
    admin?.disconnect();
    await server?.stop();
  });

  /** The stored bytes, checked to be the canonical serialization of the record they hold. */
  async function stored(key: string): Promise<{ raw: string; record: IdemRecord }> {
    const raw = await admin.get(`${prefix}{${storageName(key)}}`);
    expect(raw, key).toBeTypeOf('string');
    const record = parseRecord(storageName(key), raw!);
    expect(serializeRecord(record), key).toBe(raw);
    return { raw: raw!, record };
  }

  /** A lease the store did not issue, without the bytes that enable the finish fast path. */
  const byHand = (lease: Lease): Lease => {
    const { version: _bytes, ...plain } = lease;
    return plain;
  };

  it.each(KEYS)('every writer, key %j', async (key) => {
    // Claim of a key with no trace: the script's SET NX, and the bytes the client says it sent.
    const first = leaseOf(await store.claim(key, { fingerprint: 'sha256:f/p' }));
    let now = await stored(key);
    expect(first.version).toBe(now.raw);
    expect(first.record).toEqual(now.record);

    // Renew: the full path's encoder.
    const renewed = await store.renew(first, 60_000);
    now = await stored(key);
    expect(renewed.record).toEqual(now.record);
    expect(renewed.version).toBe(now.raw);

    // Complete through the fast path (the lease holds the stored bytes): returned = stored.
    const done = await store.complete(renewed, { result: RESULT });
    now = await stored(key);
    expect(done).toEqual(now.record);
    expect(now.record.result).toEqual(RESULT);

    // A forced claim takes the finished record over: the take's template.
    const forced = leaseOf(await store.claim(key, { force: true, fingerprint: 'sha256:f/p' }));
    now = await stored(key);
    expect(forced.record).toEqual(now.record);

    // Fail through the full path (a lease made by hand carries no bytes).
    const failed = await store.fail(byHand(forced), { error: 'boom/"x"\n' });
    now = await stored(key);
    expect(failed).toEqual(now.record);

    // A failed record is claimed again (the take), completed without a result, claimed, released.
    const again = leaseOf(await store.claim(key, { fingerprint: 'sha256:f/p' }));
    now = await stored(key);
    expect(again.record).toEqual(now.record);
    await store.complete(byHand(again));
    await stored(key);
    const last = leaseOf(await store.claim(key, { force: true }));
    await store.release(last);
    await stored(key);

    // Delete ends a live record by writing it past retention: the remove script's encoder.
    leaseOf(await store.claim(key));
    expect(await store.delete(key)).toBe(true);
    await stored(key);
  });
});
