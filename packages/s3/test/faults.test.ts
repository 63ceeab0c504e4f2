// S3-specific faults against each real S3 server (MinIO, versitygw): ambiguous writes (lost reply,
// forced timeout, SDK resend), the status-code mapping, naming and options.
// Network faults are injected by an HTTP handler around the SDK's own.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { expectIdemError as failure, expectLease as leaseOf, TestClock } from '@idem/conformance/testing';
import { sha256Hex, type IdempotencyStore, type StoreOptions } from '@idem/core';
import { createS3Store } from '../src/index.js';
import { defaultHandler, FaultHandler } from './fault-handler.js';
import { findS3Servers, freshPrefix, testClient } from './server.js';

describe.each(await findS3Servers())('s3 faults ($name)', (server) => {
  const env = server.env;
  // A server not running was reported loudly by findS3Servers (and fails it under CI=true).
  if (env === undefined) return void it.skip('needs the server', () => {});
  const bucket = env?.IDEM_TEST_S3_BUCKET ?? '';

  /** A store whose HTTP traffic goes through a fault handler; SDK retries off unless asked for. */
  async function faulty(opts: { maxAttempts?: number; requestTimeoutMs?: number; prefix?: string; serverClock?: boolean } & StoreOptions = {}) {
    const { maxAttempts = 1, requestTimeoutMs = 10_000, prefix = freshPrefix(), ...storeOptions } = opts;
    const faults = new FaultHandler(defaultHandler());
    const client = testClient(env!, { requestHandler: faults as never, maxAttempts });
    const store = await createS3Store({ client, bucket, prefix, requestTimeoutMs, ...server.storeOptions, ...storeOptions });
    faults.seen.length = 0; // the open-time probe's requests (probe.test.ts counts them)
    return { faults, client, store, prefix };
  }
  const plain = (prefix: string, options: StoreOptions = {}): Promise<IdempotencyStore> =>
    createS3Store({ client: testClient(env!), bucket, prefix, ...server.storeOptions, ...options });

  describe('ambiguous writes are resolved by reading back', () => {
    it('a create whose reply is lost after it landed is acquired, not in_flight', async () => {
      const { faults, store } = await faulty();
      faults.arm('PUT If-None-Match', { kind: 'lose-reply' });
      const got = await store.claim('lost-reply', { runId: 'me' });
      expect(got.outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET']);
      expect(await store.get('lost-reply')).toMatchObject({ runId: 'me', status: 'in_flight', fence: 1 });
      expect((await store.claim('lost-reply', { runId: 'other' })).outcome).toBe('in_flight');
    });

    it('forced timeout: the reply comes after requestTimeoutMs, the claim is still ours', async () => {
      const { faults, store } = await faulty({ requestTimeoutMs: 400 });
      faults.arm('PUT If-None-Match', { kind: 'slow' });
      const started = Date.now();
      const got = await store.claim('slow', { runId: 'me' });
      expect(got.outcome).toBe('acquired');
      expect(Date.now() - started).toBeGreaterThanOrEqual(350);
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET']);
      expect(await store.get('slow')).toMatchObject({ runId: 'me' });
    });

    it('an SDK resend that trips over its own landed create (412) is still acquired', async () => {
      const { faults, store } = await faulty({ maxAttempts: 3 });
      faults.arm('PUT If-None-Match', { kind: 'lose-reply' });
      const got = await store.claim('resent', { runId: 'me' });
      expect(got.outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'PUT If-None-Match', 'GET']);
    });

    it('a create that never arrived stores nothing; the claim is retried and acquired once', async () => {
      const { faults, store } = await faulty();
      faults.arm('PUT If-None-Match', { kind: 'drop' });
      const got = await store.claim('dropped', { runId: 'me' });
      expect(got.outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET', 'PUT If-None-Match']);
      expect(leaseOf(got).fence).toBe(1);
    });

    it('an ambiguous claim on a key another run holds is never a false acquired', async () => {
      const { faults, store, prefix } = await faulty();
      const rival = await plain(prefix);
      await rival.claim('held', { runId: 'rival', leaseMs: 60_000 });
      faults.arm('PUT If-None-Match', { kind: 'lose-reply' }); // the server answered 412, we never saw it
      const lost = await store.claim('held', { runId: 'me' });
      expect(lost).toMatchObject({ outcome: 'in_flight', record: { runId: 'rival' } });
      faults.arm('PUT If-None-Match', { kind: 'drop' });
      expect(await store.claim('held', { runId: 'me' })).toMatchObject({ outcome: 'in_flight', record: { runId: 'rival' } });
    });

    it('a takeover whose reply is lost is still adopted', async () => {
      const clock = new TestClock();
      const { faults, store, prefix } = await faulty({ clock: clock.now });
      const crashed = await plain(prefix, { clock: clock.now });
      await crashed.claim('dead', { runId: 'crashed', leaseMs: 1_000 });
      clock.advance(5_000);
      faults.arm('PUT If-Match', { kind: 'lose-reply' });
      const got = await store.claim('dead', { runId: 'me' });
      expect(got).toMatchObject({ outcome: 'adopted', previous: { runId: 'crashed' }, lease: { fence: 2 } });
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET', 'PUT If-Match', 'GET']);
    });

    it('a complete whose reply is lost is recognised as done; the lease moves to the new ETag', async () => {
      const { faults, store } = await faulty();
      const lease = leaseOf(await store.claim('finish', { runId: 'me' }));
      const renewed = await store.renew(lease, 60_000);
      expect(renewed.version).not.toBe(lease.version);
      faults.arm('PUT If-Match', { kind: 'lose-reply' });
      const done = await store.complete(renewed, { result: { ok: true } });
      expect(done).toMatchObject({ status: 'succeeded', result: { ok: true } });
      expect(faults.seen.slice(-2)).toEqual(['PUT If-Match', 'GET']);
      expect((await store.claim('finish')).outcome).toBe('completed');
    });
  });

  describe('status codes map to typed errors', () => {
    it('409 ConditionalRequestConflict is a conflict: read again and decide', async () => {
      const { faults, store } = await faulty();
      faults.arm('PUT If-None-Match', { kind: 'status', status: 409, code: 'ConditionalRequestConflict' });
      expect((await store.claim('conflict', { runId: 'me' })).outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET', 'PUT If-None-Match']);
    });

    it('412 on a finish (someone took over) is LEASE_LOST carrying the new owner', async () => {
      const store = await plain(freshPrefix());
      const zombie = leaseOf(await store.claim('taken', { runId: 'zombie' }));
      await store.claim('taken', { runId: 'new', force: true });
      const err = await failure(store.complete(zombie));
      expect(err.code).toBe('LEASE_LOST');
      expect(err).toMatchObject({ record: { runId: 'new' } });
    });

    it('404 on a finish (the record was deleted) is LEASE_LOST with no record', async () => {
      const { faults, store } = await faulty();
      const lease = leaseOf(await store.claim('deleted'));
      await store.delete('deleted');
      const err = await failure(store.complete(lease));
      expect(err.code).toBe('LEASE_LOST');
      expect(err).toMatchObject({ record: undefined });
      expect(faults.seen.slice(-2)).toEqual(['PUT If-Match', 'GET']);
    });

    it('throttling (503 SlowDown) and 5xx are BACKEND_UNAVAILABLE and retryable', async () => {
      const { faults, store } = await faulty();
      faults.arm('GET', { kind: 'status', status: 503, code: 'SlowDown' });
      const slow = await failure(store.get('throttled'));
      expect(slow).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
      expect(slow.message).toContain('throttled');
      faults.arm('GET', { kind: 'status', status: 500, code: 'InternalError' });
      expect(await failure(store.get('x'))).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
    });

    it('a 5xx on a create may have landed: read back, then claim', async () => {
      const { faults, store } = await faulty();
      faults.arm('PUT If-None-Match', { kind: 'status', status: 503, code: 'SlowDown' });
      expect((await store.claim('5xx', { runId: 'me' })).outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'GET', 'PUT If-None-Match']);
    });

    it("the SDK's own retries absorb a single throttle", async () => {
      const { faults, store } = await faulty({ maxAttempts: 3 });
      faults.arm('PUT If-None-Match', { kind: 'status', status: 503, code: 'SlowDown' });
      expect((await store.claim('absorbed')).outcome).toBe('acquired');
      expect(faults.seen).toEqual(['PUT If-None-Match', 'PUT If-None-Match']);
    });

    it('an unreachable server is BACKEND_UNAVAILABLE, retryable, never acquired', async () => {
      const client = testClient({ ...env!, IDEM_TEST_S3_ENDPOINT: 'http://127.0.0.1:9' }, { maxAttempts: 1 });
      // The open-time probe meets it first; without the probe, the claim does.
      expect(await failure(createS3Store({ client, bucket, prefix: freshPrefix() }))).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
      const store = await createS3Store({ client, bucket, prefix: freshPrefix(), probe: false });
      expect(await failure(store.claim('nowhere'))).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retryable: true });
    });

    it('wrong credentials and a missing bucket are BACKEND_REFUSED, not retryable', async () => {
      const badKey = testClient({ ...env!, IDEM_TEST_S3_SECRET_KEY: 'not-the-secret-key' }, { maxAttempts: 1 });
      expect(await failure(createS3Store({ client: badKey, bucket, prefix: freshPrefix() }))).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
      const denied = await createS3Store({ client: badKey, bucket, prefix: freshPrefix(), probe: false });
      expect(await failure(denied.claim('denied'))).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
      // probe.test.ts: a missing bucket is refused at open; without the probe, by every call.
      const noBucket = await createS3Store({ client: testClient(env!), bucket: 'idem-no-such-bucket', prefix: freshPrefix(), probe: false });
      expect(await failure(noBucket.get('k'))).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
      expect(await failure(noBucket.claim('k'))).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
    });

    it('a body that does not parse is CORRUPT_RECORD and is left alone', async () => {
      const prefix = freshPrefix();
      const client = testClient(env!);
      const store = await plain(prefix);
      const Key = prefix + sha256Hex('garbage');
      await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'not json' }));
      expect(await failure(store.claim('garbage', { force: true }))).toMatchObject({ code: 'CORRUPT_RECORD' });
      const body = await (await client.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body!.transformToString();
      expect(body).toBe('not json');
    });
  });

  describe('objects, options, sweep and clock', () => {
    it('names objects prefix + sha256(key); the body holds the key verbatim, or only its digest with hashKeys', async () => {
      const client = testClient(env!);
      const key = 'customer 42 / invoice #7 ✓';
      for (const hashKeys of [false, true]) {
        const prefix = freshPrefix();
        const store = await plain(prefix, { hashKeys });
        await store.claim(key);
        const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
        expect(listed.Contents?.map((o) => o.Key)).toEqual([prefix + sha256Hex(key)]);
        const body = await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + sha256Hex(key) }))).Body!.transformToString();
        expect(body.includes(key)).toBe(!hashKeys);
        if (hashKeys) expect(body).toContain(`sha256:${sha256Hex(key)}`);
      }
    });

    it('bad options are INVALID_ARGUMENT before any request', async () => {
      let sent = 0;
      const client = { send: async () => void sent++ } as never;
      for (const bad of [
        { client: undefined as never, bucket },
        { client, bucket: 'Not_A_Bucket' },
        { client, bucket, prefix: '/abs' },
        { client, bucket: 'bucket..x' },
        { client, bucket, prefix: 'a\nb/' },
        { client, bucket, prefix: '€'.repeat(171) }, // 513 bytes: the URL's limit, the same function
        { client, bucket, requestTimeoutMs: 0 },
        { client, bucket, leaseMs: -1 },
      ]) {
        expect(await failure(createS3Store(bad))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      }
      expect(sent).toBe(0);
    });

    it('sweep skips objects that are not records and records it cannot parse', async () => {
      const clock = new TestClock();
      const prefix = freshPrefix();
      const client = testClient(env!);
      const store = await plain(prefix, { clock: clock.now, retentionMs: 1_000 });
      await store.complete(leaseOf(await store.claim('old')));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}README.txt`, Body: 'not a record' }));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + sha256Hex('corrupt'), Body: '{' }));
      clock.advance(2_000);
      expect(await store.sweep()).toEqual({ expired: 1, deadLeases: 0 });
      const left = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      expect(left.Contents?.map((o) => o.Key).sort()).toEqual([prefix + sha256Hex('corrupt'), `${prefix}README.txt`].sort());
    });

    it("serverClock: leases follow the server's Date header, not this machine's clock", async () => {
      const prefix = freshPrefix();
      await (await plain(prefix)).claim('shifted', { runId: 'owner', leaseMs: 60_000 });
      // Same request path, this machine's clock: the owner's lease is live.
      const local = await faulty({ prefix });
      local.faults.dateShiftMs = 120_000;
      expect((await local.store.claim('shifted')).outcome).toBe('in_flight');
      // The server's clock says two minutes later (under the SDK's own 5-minute skew correction): the lease is dead.
      const { faults, store } = await faulty({ prefix, serverClock: true, clockSkewMs: 1_000 });
      faults.dateShiftMs = 120_000;
      const got = await store.claim('shifted', { runId: 'successor' });
      expect(got).toMatchObject({ outcome: 'adopted', previous: { runId: 'owner' } });
      await expect(createS3Store({ client: testClient(env!), bucket, serverClock: true, clock: Date.now })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(createS3Store({ client: testClient(env!), bucket, serverClock: 'yes' as unknown as boolean })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
    });

    it('an uncontended claim is 1 request, a duplicate 2, a complete 1', async () => {
      const { faults, store } = await faulty();
      const lease = leaseOf(await store.claim('count'));
      expect(faults.seen).toEqual(['PUT If-None-Match']);
      await store.claim('count');
      expect(faults.seen.slice(1)).toEqual(['PUT If-None-Match', 'GET']);
      await store.complete(lease);
      expect(faults.seen.slice(3)).toEqual(['PUT If-Match']);
    });
  });
});
