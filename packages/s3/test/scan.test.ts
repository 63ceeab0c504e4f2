import { expectFenceCeilingRefused, expectListNamesCorrupt } from '@idem/test-fixtures';
import { BackendRefusedError } from '@idem/core';
import { describe, expect, it } from 'vitest';
import { createS3Store } from '../src/index.js';
import { findS3, freshPrefix, testClient } from './server.js';

const env = await findS3();
const client = env && testClient(env);
const open = () => createS3Store({ client: client!, bucket: env!.IDEM_TEST_S3_BUCKET, prefix: freshPrefix() });

describe.skipIf(env === undefined)('@idem/s3: list, sweep and fences through core', () => {
  it('one corrupt record hides no other in list', async () => expectListNamesCorrupt(await open()));
  it('a missing bucket is BackendRefusedError (BACKEND_REFUSED, not retryable)', async () => {
    // The open-time probe finds it (HEAD bucket); without the probe, the first claim does.
    const error = await createS3Store({ client: client!, bucket: 'idem-no-such-bucket', prefix: freshPrefix() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BackendRefusedError);
    const unprobed = await createS3Store({ client: client!, bucket: 'idem-no-such-bucket', prefix: freshPrefix(), probe: false });
    const late = await unprobed.claim('k').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(late).toBeInstanceOf(BackendRefusedError);
    expect(error).toBeInstanceOf(BackendRefusedError);
    expect(error).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
  });
  it('a requestTimeoutMs Node cannot time (over 2^31-1 ms) is refused, not turned into instant aborts', async () => {
    const error = await createS3Store({ client: client!, bucket: env!.IDEM_TEST_S3_BUCKET, requestTimeoutMs: 2 ** 31 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
  it('a record at fence 2^53-1 refuses the next claim', async () => expectFenceCeilingRefused(await open()));
});
