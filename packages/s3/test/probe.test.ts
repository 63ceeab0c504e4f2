// Compatibility: the open-time probe on each real S3 server, and servers with
// a quirk of their own (README "Compatibility"), played by the fault handler
// in front of the real one: a mock only for what no server here does.
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { expectIdemError as failure, expectLease as leaseOf, TestClock } from '@idem/conformance/testing';
import { UnsafeBackendError } from '@idem/core';
import { createS3Store, type S3StoreOptions } from '../src/index.js';
import { defaultHandler, FaultHandler, type Quirk } from './fault-handler.js';
import { findS3Servers, freshPrefix, testClient } from './server.js';

const PROBE = ['HEAD', 'PUT If-None-Match', 'PUT If-None-Match', 'PUT If-Match', 'PUT If-Match', 'DELETE If-Match', 'GET', 'DELETE'];
/**
 * The probe on a server that compares If-Match with its unquoted ETag: the first If-Match is
 * refused, the object is checked (HEAD) and the PUT resent in the other form: 10 requests.
 * Which form a real server takes is its own business; the test accepts either sequence.
 */
const PROBE_TOGGLED = [...PROBE.slice(0, 4), 'HEAD', ...PROBE.slice(3)];

for (const server of await findS3Servers()) {
  const env = server.env;
  describe.skipIf(!env)(`s3 compatibility (${server.name})`, () => {
    const bucket = env?.IDEM_TEST_S3_BUCKET ?? '';

    /** A client whose traffic goes through a fault handler playing `quirks`; SDK retries off. */
    function via(...quirks: Quirk[]) {
      const faults = new FaultHandler(defaultHandler());
      for (const q of quirks) faults.quirks.add(q);
      const client = testClient(env!, { requestHandler: faults as never, maxAttempts: 1 });
      faults.install(client);
      const open = (options: Partial<S3StoreOptions> = {}) => createS3Store({ client, bucket, prefix: freshPrefix(), ...options });
      return { faults, client, open };
    }

    it(`the probe measures this server once per endpoint, bucket and prefix (8 requests, 10 where If-Match wants the other ETag form); deletes are ${server.deleteIfMatch ? '' : 'not '}conditional`, async () => {
      const { faults, open } = via();
      const prefix = freshPrefix();
      const store = await open({ prefix });
      const probe = [...faults.seen];
      expect([PROBE, PROBE_TOGGLED], `the probe's requests: ${probe.join(', ')}`).toContainEqual(probe);
      await open({ prefix });
      await open({ prefix: freshPrefix(), probe: false });
      expect(faults.seen, 'no request for an endpoint, bucket and prefix probed already').toHaveLength(probe.length);
      if (server.deleteIfMatch) {
        expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
      } else {
        const refused = await failure(store.sweep());
        expect(refused).toBeInstanceOf(UnsafeBackendError);
        expect(refused).toMatchObject({ code: 'UNSAFE_BACKEND', retryable: false, guarantee: 'delete-if-match' });
        expect(refused.message).toContain('lifecycle rule');
        expect(await (await open({ prefix, unconditionalSweep: true })).sweep()).toEqual({ expired: 0, deadLeases: 0 });
      }
    });

    it('a missing bucket is refused at open, not retryable, and no PUT could create it', async () => {
      const { faults, client } = via();
      const err = await failure(createS3Store({ client, bucket: 'idem-no-such-bucket', prefix: freshPrefix() }));
      expect(err).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
      expect(err.message).toContain('does not exist');
      expect(faults.seen).toEqual(['HEAD']);
      await expect(testClient(env!).send(new HeadBucketCommand({ Bucket: 'idem-no-such-bucket' }))).rejects.toMatchObject({
        $metadata: { httpStatusCode: 404 },
      });
    });

    describe('a server that ignores If-None-Match', () => {
      it('is refused at open, naming create-if-absent', async () => {
        const err = await failure(via('no-if-none-match').open());
        expect(err).toBeInstanceOf(UnsafeBackendError);
        expect(err).toMatchObject({ code: 'UNSAFE_BACKEND', retryable: false, guarantee: 'create-if-absent' });
      });

      it('without the probe, the double win is caught at the first finish, loudly', async () => {
        const { open } = via('no-if-none-match');
        const prefix = freshPrefix();
        const [a, b] = [await open({ prefix, probe: false }), await open({ prefix, probe: false })];
        const first = leaseOf(await a.claim('k', { runId: 'a' }));
        const second = leaseOf(await b.claim('k', { runId: 'b' }));
        expect([first.fence, second.fence]).toEqual([1, 1]); // what the server let happen
        const err = await failure(a.complete(first));
        // LEASE_LOST (a record deleted by hand looks the same), with the suspicion said loudly.
        expect(err).toMatchObject({ code: 'LEASE_LOST', suspectedBrokenGuarantee: 'create-if-absent' });
        expect(err.message).toContain('precondition should have failed');
      });
    });

    it('a server that ignores If-Match on PUT is refused at open, naming replace-if-match', async () => {
      const err = await failure(via('no-if-match').open());
      expect(err).toBeInstanceOf(UnsafeBackendError);
      expect(err).toMatchObject({ guarantee: 'replace-if-match', retryable: false });
    });

    it('a server that ignores If-Match on DELETE opens, but sweep refuses unless unconditionalSweep', async () => {
      const clock = new TestClock();
      const { open } = via('no-delete-if-match');
      const prefix = freshPrefix();
      const store = await open({ prefix, clock: clock.now, retentionMs: 1_000 });
      await store.complete(leaseOf(await store.claim('old')));
      clock.advance(2_000);
      expect(await failure(store.sweep())).toMatchObject({ guarantee: 'delete-if-match' });
      const allowed = await open({ prefix, clock: clock.now, unconditionalSweep: true });
      expect(await allowed.sweep()).toEqual({ expired: 1, deadLeases: 0 });
    });

    describe('a server that compares If-Match with its unquoted ETag', () => {
      it('without the probe: the first refused If-Match is recognised, resent unquoted once, and the form kept', async () => {
        const clock = new TestClock();
        const { faults, open } = via('unquoted-etags');
        const store = await open({ probe: false, clock: clock.now });
        const lease = leaseOf(await store.claim('k', { runId: 'me', leaseMs: 1_000 }));
        faults.seen.length = 0;
        const renewed = await store.renew(lease, 1_000);
        expect(faults.seen).toEqual(['PUT If-Match', 'HEAD', 'PUT If-Match']);
        clock.advance(5_000);
        const taken = await store.claim('k', { runId: 'next' });
        expect(taken).toMatchObject({ outcome: 'adopted', lease: { fence: 2 } });
        expect(await failure(store.complete(renewed))).toMatchObject({ code: 'LEASE_LOST' });
        faults.seen.length = 0;
        expect(await store.complete(leaseOf(taken))).toMatchObject({ status: 'succeeded', runId: 'next' });
        expect(faults.seen).toEqual(['PUT If-Match']);
      });

      it('with the probe: it opens (the probe finds the form), and sweep refuses since it ignores If-Match on DELETE', async () => {
        const { faults, open } = via('unquoted-etags');
        const store = await open();
        // As PROBE_TOGGLED, but this server's DELETE arrives without its If-Match (the quirk drops it).
        expect(faults.seen).toEqual(PROBE_TOGGLED.map((r) => (r === 'DELETE If-Match' ? 'DELETE' : r)));
        const lease = leaseOf(await store.claim('k'));
        faults.seen.length = 0;
        await store.complete(lease);
        expect(faults.seen).toEqual(['PUT If-Match']);
        expect(await failure(store.sweep())).toMatchObject({ guarantee: 'delete-if-match' });
      });
    });

    it('a server that refuses its own ETag in every form fails at once, naming replace-if-match (never 32 rounds)', async () => {
      const { faults, open } = via('refuse-if-match');
      expect(await failure(open())).toMatchObject({ guarantee: 'replace-if-match' });
      const store = await open({ probe: false });
      const lease = leaseOf(await store.claim('k'));
      faults.seen.length = 0;
      const err = await failure(store.complete(lease));
      expect(err).toBeInstanceOf(UnsafeBackendError);
      expect(err).toMatchObject({ guarantee: 'replace-if-match', retryable: false });
      expect(faults.seen).toEqual(['PUT If-Match', 'HEAD', 'PUT If-Match', 'HEAD']);
    });
  });
}
