// The finish fast path (complete/fail compare the stored bytes instead of decoding them), the claim's
// duplicate fast path (answers read by patterns, no decode), and the writes that let WAIT count a
// script that changed nothing, and the one record layout of every writer, against a private
// server the tests own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { codeOf, expectLease as leaseOf } from '@idem/conformance/testing';
import {
  PROCESS_HOLDER,
  parseRecord,
  serializeRecord,
  sortedObject,
  storageName,
  type ClaimOutcome,
  type IdempotencyStore,
  type IdemRecord,
  type Lease,
} from '@idem/core/adapter';
import { createValkeyStore } from '../src/index.js';
import { CLAIM_LUA } from '../src/lua.js';
import { calls, haveRedisServer, PrivateServer } from './private-server.js';
import { freshPrefix } from './server.js';

// Slashes, quotes, backslashes, control characters and non-ASCII: where JSON encoders differ.
const KEYS = ['plain', 'a/b/c', 'quote"back\\slash/', 'tab\tnl\ncr\r', 'ünï cödé ✓ 😀', 'del\u007f\u2028'];
const RESULT = { list: [], n: 12345678901234, s: 'x/y "z"', nested: { u: 'é', f: 1.5 } };

describe.skipIf(!haveRedisServer())('valkey finish fast path and WAIT-able no-op scripts', () => {
  let server: PrivateServer;
  let admin: Redis;
  let store: IdempotencyStore;
  let prefix: string;
  const rk = (key: string) => `${prefix}{${storageName(key)}}`;

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

  it('complete and fail write the record a full decode would write, and return what they stored', async () => {
    // '/' and non-ASCII: cjson and JSON.stringify escape them differently, which the bytes compared must survive.
    const key = 'a/b é "q"';
    const lease = leaseOf(await store.claim(key, { fingerprint: 'sha256:fp' }));
    const renewed = await store.renew(lease, 60_000);
    const done = await store.complete(renewed, { result: { n: [1, 'x'], e: [] } });
    const raw = (await admin.get(rk(key)))!;
    expect(JSON.parse(raw)).toEqual(done);
    expect(await store.get(key)).toEqual(done);
    expect(done).toMatchObject({ status: 'succeeded', fence: lease.fence, runId: lease.runId, fingerprint: 'sha256:fp', result: { n: [1, 'x'], e: [] } });
    expect(done.leaseExpiresAt).toBeUndefined();
    expect(done.expiresAt! - done.completedAt!).toBe(store.retentionMs);
    // The layout every writer of this store uses: fields in one order, times last.
    expect(Object.keys(JSON.parse(raw))).toEqual([
      'v',
      'key',
      'status',
      'runId',
      'fence',
      'attempt',
      'fingerprint',
      'claimedAt',
      'completedAt',
      'expiresAt',
      'holder',
      'result',
    ]);

    const failed = await store.fail(leaseOf(await store.claim('fails')), { error: new Error('boom') });
    expect(JSON.parse((await admin.get(rk('fails')))!)).toEqual(failed);
    expect(failed).toMatchObject({ status: 'failed', error: expect.stringContaining('boom') });
    // A repeated complete (a retry after a lost reply) is answered from the record, not redone.
    expect(await store.complete(renewed, { result: { n: [1, 'x'], e: [] } })).toEqual(done);
  });

  it('a record stored in another layout (an older writer) is completed through the full decode', async () => {
    const lease = leaseOf(await store.claim('old-layout'));
    const r = lease.record;
    // Same fields, another order: the bytes differ from the lease's, the record is the same.
    const older = JSON.stringify({
      leaseExpiresAt: r.leaseExpiresAt,
      claimedAt: r.claimedAt,
      attempt: r.attempt,
      fence: r.fence,
      runId: r.runId,
      status: r.status,
      key: r.key,
      v: r.v,
    });
    await admin.set(rk('old-layout'), older, 'KEEPTTL');
    const done = await store.complete(lease, { result: 7 });
    expect(done).toMatchObject({ status: 'succeeded', fence: r.fence, result: 7 });
    expect(JSON.parse((await admin.get(rk('old-layout')))!)).toEqual(done);
  });

  it('a lease without its bytes (made by hand, or from an older release) still completes', async () => {
    const lease = leaseOf(await store.claim('by-hand'));
    const { version: _bytes, ...bare } = lease;
    expect((await store.complete(bare, { result: 'ok' })).result).toBe('ok');
  });

  it('a zombie whose bytes no longer match gets LEASE_LOST, and a corrupt record is never overwritten', async () => {
    const zombie = leaseOf(await store.claim('taken'));
    const winner = leaseOf(await store.claim('taken', { force: true }));
    expect(await codeOf(store.complete(zombie, { result: 'late' }))).toBe('LEASE_LOST');
    expect(await codeOf(store.fail(zombie))).toBe('LEASE_LOST');
    expect((await store.get('taken'))?.runId).toBe(winner.runId);

    const lease = leaseOf(await store.claim('junk'));
    // Truncated bytes: the stored record is not the lease's, and not readable either.
    const truncated = (await admin.get(rk('junk')))!.slice(0, -10);
    await admin.set(rk('junk'), truncated, 'KEEPTTL');
    expect(await codeOf(store.complete(lease, { result: 1 }))).toBe('CORRUPT_RECORD');
    expect(await admin.get(rk('junk'))).toBe(truncated);
  });

  it('a release or delete that finds nothing live still writes, so that a WAIT after it counts every earlier write', async () => {
    const writes = async () => (await calls(admin, 'set')) + (await calls(admin, 'del'));
    const lease = leaseOf(await store.claim('gone'));
    await store.release(lease);
    let before = await writes();
    await store.release(lease); // a retry whose first attempt landed: the record lingers, past retention
    expect(await writes()).toBeGreaterThan(before);
    before = await writes();
    expect(await store.delete('gone')).toBe(false); // nothing live: the lingering record is written again as it is
    expect(await writes()).toBeGreaterThan(before);
    const lingering = await admin.get(rk('gone'));
    expect(JSON.parse(lingering!)).toMatchObject({ status: 'in_flight', runId: lease.runId });
    before = await writes();
    expect(await store.delete('never-there')).toBe(false); // no key: a SET and a DEL that leave none
    expect(await writes()).toBeGreaterThan(before);
    expect(await admin.exists(rk('never-there'))).toBe(0);
  });

  describe('duplicate claim fast path', () => {
    const LEASE_MS = 30_000;
    const LINGER_MS = 60_000;
    type Claim = { runId: string; fingerprint?: string; force?: boolean; dedupOn: 'success' | 'any' };
    type Row = { name: string; record: (now: number) => IdemRecord; fast?: (c: Claim) => boolean };

    // A record in the store's own layout: core's one writer, which encode() in lua.ts and the claim's SET NX follow.
    const canonical = serializeRecord;
    // The same record, fields in reverse order: never the store's layout, so always the full path.
    const reversed = (r: IdemRecord): string => JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(canonical(r))).reverse()));

    const base = (now: number, over: Partial<IdemRecord>): IdemRecord => ({
      v: 1,
      key: 'k',
      status: 'succeeded',
      runId: 'other',
      fence: now - 5000,
      attempt: 2,
      claimedAt: now - 5000,
      ...over,
    });
    const done = (now: number, over: Partial<IdemRecord> = {}) => base(now, { completedAt: now - 4000, expiresAt: now + 600_000, ...over });
    const flight = (now: number, over: Partial<IdemRecord> = {}) => base(now, { status: 'in_flight', leaseExpiresAt: now + 600_000, ...over });
    // Which claims the fast path answers for a record in the store's layout (the rest write, or read an escape).
    const live = (c: Claim) => !c.force && c.runId !== 'other';
    const final = (c: Claim) => !c.force;
    const failedFinal = (c: Claim) => !c.force && (c.dedupOn === 'any' || (c.fingerprint !== undefined && c.fingerprint !== 'sha256:a'));
    const never = () => false;

    const rows: Row[] = [
      {
        name: 'succeeded with a result holding expiresAt text',
        record: (n) => done(n, { fingerprint: 'sha256:a', result: { expiresAt: 1, t: '"expiresAt":5,"status":"in_flight"' } }),
        fast: final,
      },
      { name: 'succeeded, no result, no fingerprint', record: (n) => done(n), fast: final },
      {
        name: 'succeeded with holder, labels and a result',
        record: (n) => done(n, { holder: { host: 'h', pid: 7, version: '0.1.0', program: 'sh' }, labels: { team: 'a/b' }, result: 1 }),
        fast: final,
      },
      {
        name: 'in_flight with holder and labels',
        record: (n) => flight(n, { holder: { host: 'h', pid: 7, version: '0.1.0' }, labels: { team: 'x' } }),
        fast: live,
      },
      { name: 'succeeded, result an empty array', record: (n) => done(n, { result: [] }), fast: final },
      {
        name: 'failed with an error',
        record: (n) => done(n, { status: 'failed', fingerprint: 'sha256:a', error: 'Error: "boom" \\ at x' }),
        fast: failedFinal,
      },
      { name: 'failed, no fingerprint', record: (n) => done(n, { status: 'failed' }), fast: (c) => !c.force && c.dedupOn === 'any' },
      { name: 'in_flight, live lease of another runId', record: (n) => flight(n), fast: live },
      {
        name: 'in_flight, live lease, fingerprint',
        record: (n) => flight(n, { fingerprint: 'sha256:a' }),
        fast: (c) => live(c) || (!c.force && c.fingerprint !== undefined && c.fingerprint !== 'sha256:a'),
      },
      {
        name: 'in_flight, lease ended',
        record: (n) => flight(n, { fingerprint: 'sha256:a', leaseExpiresAt: n - 1 }),
        fast: (c) => !c.force && c.fingerprint !== undefined && c.fingerprint !== 'sha256:a',
      },
      { name: 'succeeded, retention ended, lingering', record: (n) => done(n, { fingerprint: 'sha256:a', expiresAt: n - 1 }), fast: never },
      { name: 'released (lease and retention ended), lingering', record: (n) => flight(n, { leaseExpiresAt: n - 1, expiresAt: n - 1 }), fast: never },
      { name: 'in_flight with completedAt and a live retention', record: (n) => flight(n, { completedAt: n - 10, expiresAt: n + 600_000 }), fast: live },
      { name: 'non-ASCII key and runId', record: (n) => done(n, { key: 'é/ü ✓ 鍵', runId: 'run-ß' }), fast: final },
      { name: 'key with quotes', record: (n) => done(n, { key: 'a"b' }), fast: never },
      { name: 'key with a backslash', record: (n) => flight(n, { key: 'a\\b' }), fast: never },
      { name: 'runId with a quote (in flight)', record: (n) => flight(n, { runId: 'ot"her' }), fast: never },
      { name: 'fingerprint with a backslash', record: (n) => done(n, { fingerprint: 'sha256:\\a' }), fast: never },
      { name: 'key with a newline (escaped)', record: (n) => done(n, { key: 'a\nb' }), fast: never },
    ];
    const claims: Claim[] = [];
    for (const runId of ['me', 'other'])
      for (const fingerprint of [undefined, 'sha256:a', 'sha256:b'])
        for (const force of [false, true]) for (const dedupOn of ['success', 'any'] as const) claims.push({ runId, fingerprint, force, dedupOn });

    const serverNow = async () => {
      const [s, us] = await admin.time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    };
    // The script, called as the store calls it (index.ts claim), with the test-only mode.
    const script = (key: string, c: Claim, mode: 'fast' | 'full') =>
      admin.eval(
        CLAIM_LUA,
        1,
        rk(key),
        `{"v":1,"key":${JSON.stringify(key)},"status":"in_flight","runId":${JSON.stringify(c.runId)},"fence":`,
        c.fingerprint !== undefined ? `,"fingerprint":${JSON.stringify(c.fingerprint)}` : '',
        c.fingerprint ?? '',
        c.runId,
        LEASE_MS,
        LINGER_MS,
        c.force ? '1' : '0',
        c.dedupOn,
        mode,
        `,"holder":${sortedObject(PROCESS_HOLDER)}`,
        '',
      ) as Promise<unknown>;
    // An outcome without the times a take stamps, so two takes a moment apart compare equal.
    const settle = async (p: Promise<ClaimOutcome>) => {
      try {
        const o = await p;
        if (o.outcome === 'acquired' || o.outcome === 'adopted') {
          const { fence: _f, claimedAt: _c, leaseExpiresAt: _l, ...rest } = o.lease.record;
          return { outcome: o.outcome, record: rest, previous: 'previous' in o ? o.previous : undefined };
        }
        return o;
      } catch (error) {
        return { code: (error as { code?: string }).code, record: (error as { record?: unknown }).record };
      }
    };

    it('answers exactly as the full path, and only where the record is in the store layout and nothing is written', async () => {
      let fastAnswers = 0;
      for (const row of rows) {
        const key = `dup:${row.name}`;
        for (const c of claims) {
          const now = await serverNow();
          const record = row.record(now);
          // The stored key field: this test's key, with the row's own characters when it has some.
          if (record.key !== 'k') record.key = `${key} ${record.key}`;
          else record.key = key;
          const raw = canonical(record);
          const label = `${row.name} / ${JSON.stringify(c)}`;

          await admin.set(rk(key), raw, 'PX', LINGER_MS);
          const fast = (await script(key, c, 'fast')) as unknown[];
          expect(fast[0] === 'slow', label).toBe(!(row.fast ?? never)(c));
          if (fast[0] !== 'slow') {
            fastAnswers++;
            // The fast path never writes: the bytes are the same, and the full path from them answers the same.
            expect(await admin.get(rk(key)), label).toBe(raw);
            expect(await script(key, c, 'full'), label).toEqual(fast);
          }
          // The store's answer (the client parses strictly) with the store's layout and with another
          // field order, which always takes the full path.
          await admin.set(rk(key), raw, 'PX', LINGER_MS);
          const viaFast = await settle(store.claim(key, c));
          await admin.set(rk(key), reversed(record), 'PX', LINGER_MS);
          const viaFull = await settle(store.claim(key, c));
          expect(viaFast, label).toEqual(viaFull);
        }
      }
      // Not vacuous: most of the table is answered by the fast path.
      expect(fastAnswers).toBeGreaterThan(50);
    });

    it('bytes in the store layout that do not parse are CORRUPT_RECORD and never overwritten, as by the full path', async () => {
      const now = await serverNow();
      const good = canonical(done(now, { key: 'dup:corrupt', result: 1 }));
      const bad = [
        good.replace(',"result":1}', ',"result":}'), // the tail the patterns do not read
        good.replace(',"result":1}', ',"result":1'), // truncated
        good.replace(/"attempt":2/, '"attempt":99999999999999999999'), // not a safe integer
        good.replace(/"completedAt":\d+/, '"completedAt":"x"'), // outside the fast path's pattern: full path
        good.replace(',"result":1}', ',"error":"e","error2":}'),
        canonical(flight(now, { key: 'dup:corrupt' })).replace(/,"leaseExpiresAt":\d+/, ''), // in_flight without a lease
      ];
      for (const raw of bad) {
        for (const c of [
          { runId: 'me', dedupOn: 'any' as const },
          { runId: 'me', fingerprint: 'sha256:b', dedupOn: 'success' as const },
        ]) {
          await admin.set(rk('dup:corrupt'), raw, 'PX', LINGER_MS);
          expect(await codeOf(store.claim('dup:corrupt', c)), raw).toBe('CORRUPT_RECORD');
          expect(await admin.get(rk('dup:corrupt'))).toBe(raw);
        }
      }
    });

    it('a result nested deeper than cjson decodes: CORRUPT_RECORD on the full path, answered on the fast path', async () => {
      // The one known difference, documented in the README: Redis's cjson stops at 1000 levels, JSON.parse does not.
      let deep: unknown = 1;
      for (let i = 0; i < 1001; i++) deep = [deep];
      const now = await serverNow();
      const record = done(now, { key: 'dup:deep', result: deep as IdemRecord['result'] });
      await admin.set(rk('dup:deep'), canonical(record), 'PX', LINGER_MS);
      const c: Claim = { runId: 'me', dedupOn: 'success' };
      expect(((await script('dup:deep', c, 'full')) as unknown[])[0]).toBe('corrupt');
      expect(((await script('dup:deep', c, 'fast')) as unknown[])[0]).toBe('completed');
      expect(await store.claim('dup:deep', c)).toEqual({ outcome: 'completed', record });
    });

    it('the duplicates the store makes itself take the fast path: a finished key, a live claim of another run', async () => {
      const lease = leaseOf(await store.claim('dup:own', { fingerprint: 'sha256:x' }));
      const args = (c: Claim) => script('dup:own', c, 'fast');
      expect(((await args({ runId: 'someone', fingerprint: 'sha256:x', dedupOn: 'success' })) as unknown[])[0]).toBe('in_flight');
      expect(((await args({ runId: 'someone', fingerprint: 'sha256:y', dedupOn: 'success' })) as unknown[])[0]).toBe('reuse');
      expect(((await args({ runId: lease.runId, fingerprint: 'sha256:x', dedupOn: 'success' })) as unknown[])[0]).toBe('slow'); // own: written again
      const renewed = await store.renew(lease, 60_000); // written by encode(), the full path's writer
      expect(((await args({ runId: 'someone', dedupOn: 'success' })) as unknown[])[0]).toBe('in_flight');
      const finished = await store.complete(renewed, { result: { a: ['"x"'] } });
      const reply = (await args({ runId: 'someone', fingerprint: 'sha256:x', dedupOn: 'success' })) as unknown[];
      expect(reply[0]).toBe('completed');
      expect(JSON.parse(reply[1] as string)).toEqual(finished);
      expect(await store.claim('dup:own', { fingerprint: 'sha256:x' })).toEqual({ outcome: 'completed', record: finished });
    });
  });

  // One record layout: every record the store writes (the claim's SET NX, a take, renew, both
  // finish paths, release, delete) is byte for byte what core's serializeRecord writes for the
  // record it parses to, and what the store returned is that record. A change to any writer alone
  // (the Lua encoder, the claim's template, the finish's byte surgery) fails here.
  describe('record layout against core serializeRecord', () => {
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
});
